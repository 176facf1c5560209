"""Schedules of what is not the learning rate: the batch size (`BatchWarmup`) and the masking rate
(`MaskRateSchedule`). Both are pure functions of counts a checkpoint restores exactly (micro-batches consumed,
optimizer steps taken), so a resumed run follows them as an uninterrupted one does."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass
class BatchWarmup:
    """The global batch ramps from `start` micro-batches per optimizer step to `full` (`train.grad_accum`) as the
    run's data grows to `tokens`, then stays full (ModernBERT warmed its batch size this way).

    The data is counted as full micro-batches, `units` each (every process together), so the size of step k depends
    only on k. A step's micro-batches are accumulated, so the ramp changes no micro-batch and drops no data.
    """

    start: int
    full: int
    tokens: float
    units: float
    """What one micro-batch on every process together holds, in the objective's unit."""
    _firsts: list[int] = field(default_factory=lambda: [0], init=False, repr=False)
    """_firsts[k]: the micro-batches taken before step k, as far as the ramp lasts."""

    def __post_init__(self):
        # The micro-batches at which the ramp is over: every step from there on is full.
        self._ramp_end = math.ceil(self.tokens / self.units)

    def _size_after(self, micro_batches: int) -> int:
        grown = (self.full - self.start) * micro_batches * self.units / self.tokens
        return min(self.full, self.start + math.floor(grown))

    def _extend(self, step: int) -> None:
        while len(self._firsts) <= step and self._firsts[-1] < self._ramp_end:
            self._firsts.append(self._firsts[-1] + self._size_after(self._firsts[-1]))

    def micro_batches(self, step: int) -> int:
        """Micro-batches accumulated in optimizer step `step` (0-based)."""
        self._extend(step)
        if step < len(self._firsts):
            return self._size_after(self._firsts[step])
        return self.full

    def step_of(self, micro_batch: int) -> int:
        """The optimizer step that micro-batch `micro_batch` (0-based) trains in."""
        while self._firsts[-1] <= micro_batch and self._firsts[-1] < self._ramp_end:
            self._extend(len(self._firsts))
        if micro_batch < self._firsts[-1]:
            return bisect.bisect_right(self._firsts, micro_batch) - 1
        return len(self._firsts) - 1 + (micro_batch - self._firsts[-1]) // self.full


@dataclass
class MaskRateSchedule:
    """The masking rate over training: `rates[i]` from `milestones[i - 1]` of the run's optimizer steps on (`step`),
    or reached there on a straight line from the previous rate (`linear`), the last rate held to the end.

    Called with a micro-batch's index (the masking collator's count of batches), it gives that batch's rate; which
    step a micro-batch trains in is `accumulation`'s business (a fixed `train.grad_accum`, or a `BatchWarmup`).
    """

    rates: list[float]
    milestones: list[float]
    shape: str
    total_steps: int
    accumulation: int | BatchWarmup = 1

    def rate(self, progress: float) -> float:
        """The rate `progress` (a fraction of the optimizer steps) into the run."""
        points = [0.0, *self.milestones]
        i = bisect.bisect_right(points, progress) - 1
        if self.shape == "step" or i == len(points) - 1:
            return self.rates[i]
        share = (progress - points[i]) / (points[i + 1] - points[i])
        return self.rates[i] + share * (self.rates[i + 1] - self.rates[i])

    def __call__(self, micro_batch: int) -> float:
        if isinstance(self.accumulation, BatchWarmup):
            step = self.accumulation.step_of(micro_batch)
        else:
            step = micro_batch // self.accumulation
        return self.rate(step / self.total_steps)
