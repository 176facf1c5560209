"""`train.schedule: wsd`: warmup, a stable stretch, then the decay shape over the last `train.decay_fraction` of the
steps, step by step; and the settings it refuses."""

import math

import pytest
import torch

from hfssl.config import TrainArgs
from hfssl.errors import UsageError
from hfssl.pretrain import make_schedule

DECAY = {
    "linear": lambda p: 1 - p,
    "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1 - math.sqrt(p),
}


def rates(t: TrainArgs, warmup: int, total: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = make_schedule(t, optimizer, warmup, total)
    out = []
    for _ in range(total + 1):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


@pytest.mark.parametrize("shape", list(DECAY))
def test_wsd_warms_up_holds_then_decays_in_its_shape(shape):
    lr = rates(TrainArgs(schedule="wsd", decay_fraction=0.3, decay_shape=shape), warmup=10, total=100)
    for step, value in enumerate(lr):
        if step < 10:
            expected = step / 10
        elif step < 70:
            expected = 1.0
        else:
            expected = DECAY[shape]((step - 70) / 30)
        assert value == pytest.approx(expected, abs=1e-6), (shape, step)
    assert lr[-1] == pytest.approx(0.0, abs=1e-6)


def test_the_default_linear_schedule_is_unchanged():
    lr = rates(TrainArgs(schedule="linear"), warmup=10, total=100)
    assert lr[5] == pytest.approx(0.5) and lr[55] == pytest.approx(0.5) and lr[100] == pytest.approx(0.0)


def test_a_decay_that_does_not_fit_is_one_line():
    with pytest.raises(UsageError, match="train.decay_fraction: 60 warmup and 50 decay steps do not fit in 100"):
        rates(TrainArgs(schedule="wsd", decay_fraction=0.5), warmup=60, total=100)
    with pytest.raises(UsageError, match="train.decay_fraction: must be in"):
        TrainArgs(schedule="wsd", decay_fraction=0.0)
