"""Accelerate and the processes of a run: the Accelerator, launch checks, FSDP units, weights gathered from shards,
and evaluation summed across processes."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, ProjectConfiguration, get_int_from_env

from hfssl import malloc
from hfssl.checkpoint import load_weights
from hfssl.config import TrainArgs
from hfssl.errors import UsageError
from hfssl.trackers import pretraining_trackers

logger = logging.getLogger(__name__)


def synced_clock(accelerator: Accelerator) -> float:
    """The time once the device has finished the work queued so far."""
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize(accelerator.device)
    return time.perf_counter()


def resolve_mixed_precision(choice: str) -> str:
    """`train.mixed_precision` as Accelerate takes it; fp16 without a GPU is refused (a CPU has no fp16 autocast:
    the run would record fp16 and train in fp32)."""
    if choice == "fp16" and not torch.cuda.is_available():
        raise UsageError("train.mixed_precision: fp16 needs a GPU; on a CPU use bf16 or no (auto chooses)")
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def launched_processes() -> int:
    """How many processes the launcher started: torchrun and `accelerate launch --multi_gpu` say so in WORLD_SIZE,
    mpirun in its own variable."""
    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


def on_cpus(launched: int) -> bool:
    """Whether several launched processes must share the work on CPUs (gloo). Accelerate joins processes into one
    run only over a GPU-like device or when told to use the CPU; without one it lets each process train alone."""
    if launched < 2:
        return False
    return not torch.accelerator.is_available() or torch.accelerator.current_accelerator().type == "mps"


def single_process_warning(num_processes: int, launched: int) -> str | None:
    """One line when a launch meant for several processes trains in one. `accelerate launch --cpu --num_processes N`
    (or `--num_processes N` without a GPU) starts a single process; it sets the rendezvous address meant for the
    others, but no WORLD_SIZE."""
    if num_processes > 1:
        return None
    if launched > 1:
        return f"{launched} processes were launched but each trains alone; the run is not distributed"
    if "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ:
        return (
            "accelerate launch was asked for several processes but started one, as it does with --cpu or without "
            "several GPUs; on CPUs run torchrun --nproc_per_node N -m hfssl ... or accelerate launch --multi_gpu "
            "--num_processes N -m hfssl ..."
        )
    return None


SEPARATE_STORES = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"
"""torchrun's switch for a new store in each rendezvous round instead of the agent's, which outlives restarts."""


def join_restarted_group(launched: int) -> None:
    """Joins the processes of a group that `torchrun --max-restarts` started again, under keys of their own.

    torchrun's processes meet in its agent's store, which outlives a restart; the group it replaced left its
    addresses there under the same keys, and a new process that reads one first connects to a process that is gone
    (gloo: "Connection refused"). On one node, the restart count torchrun passes to every process keeps the
    attempts apart. Across nodes it cannot: a node whose processes were healthy restarts them without counting, so
    its count differs from the failed node's; there, torchrun's own `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1` gives
    each round a new store, and its absence is warned about once. The first attempt, and any other launcher, is left
    to Accelerate."""
    if launched < 2 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if nodes > 1:
        if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and os.environ.get("RANK") == "0":
            logger.warning(
                "torchrun restarts across %d nodes: set %s=1 in torchrun's environment on every node, or a restarted "
                "group may connect to the processes it replaces and fail",
                nodes,
                SEPARATE_STORES,
            )
        return
    if restart == 0 or torch.distributed.is_initialized():
        return
    agent = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    torch.distributed.init_process_group(
        backend="gloo" if on_cpus(launched) else None,  # None: each device's own (cuda: nccl, cpu: gloo)
        store=torch.distributed.PrefixStore(f"hfssl/restart-{restart}", agent),
        rank=int(os.environ["RANK"]),
        world_size=launched,
    )
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def make_accelerator(t: TrainArgs, run_dir: Path, track: bool = True) -> Accelerator:
    """The run's Accelerator: several launched processes train as one, on GPUs or (gloo) on CPUs; with `track`, it
    logs to the trackers of `train.report_to`."""
    trackers = pretraining_trackers(t.report_to) if track else []
    launched = launched_processes()
    join_restarted_group(launched)
    accelerator = Accelerator(
        cpu=on_cpus(launched),
        gradient_accumulation_steps=t.grad_accum,
        mixed_precision=resolve_mixed_precision(t.mixed_precision),
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        # Shuffles with seed + epoch, so a resumed run sees the same order, and every process the same permutation
        # (each takes its share of it), whatever the global seed is when the loader is prepared.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
        # The loop steps the schedule once per optimizer step, so warmup and length count optimizer steps for any
        # number of processes (a prepared scheduler otherwise steps once per process on each call).
        step_scheduler_with_optimizer=False,
    )
    warning = single_process_warning(accelerator.num_processes, launched)
    if warning is not None:
        logger.warning(warning)
    if t.cpu_heap and accelerator.device.type == "cpu":
        malloc.keep_heap()
    return accelerator


def shards_weights(accelerator: Accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed ZeRO-3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin.zero_stage == 3


def transformer_layers(model: torch.nn.Module) -> list[str]:
    """Class names of the model's transformer layers: the elements of module lists whose members hold attention."""
    names = set()
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            if any("attn" in name or "attention" in name for name, _ in module[0].named_children()):
                names.add(type(module[0]).__name__)
    return sorted(names)


def check_fsdp_units(accelerator: Accelerator, objective: torch.nn.Module) -> None:
    """FSDP shards each transformer layer as its own unit. The layer classes an accelerate config names must be
    the model's; where it names none, hfssl names the model's own, so one config serves every architecture."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return
    plugin = accelerator.state.fsdp_plugin
    if getattr(plugin.auto_wrap_policy, "__name__", None) != "transformer_auto_wrap_policy":
        return
    layers = transformer_layers(objective)
    if not plugin.transformer_cls_names_to_wrap:
        plugin.transformer_cls_names_to_wrap = layers
        return
    present = {type(m).__name__ for m in objective.modules()}
    absent = [name for name in plugin.transformer_cls_names_to_wrap if name not in present]
    if absent:
        raise UsageError(
            f"fsdp_transformer_layer_cls_to_wrap: {', '.join(absent)} is not a module of this model, whose "
            f"transformer layers are {', '.join(layers)}; leave the option out and hfssl names them"
        )


class WholeWeights:
    """The trained objective with every weight in place, on the main process (None on the others), for the probe
    and the export.

    Under DDP or ZeRO-1/2 every process holds all the weights, and this is the trained module itself. Under FSDP or
    ZeRO-3 each holds a shard: every process must call this, as it gathers the full state dict (a collective),
    which the main process loads into a copy built once by `rebuild` (the objective, freshly initialised from the
    model's config), on its device."""

    def __init__(self, accelerator: Accelerator, objective: torch.nn.Module, rebuild: Callable[[], torch.nn.Module]):
        self.accelerator = accelerator
        self.objective = objective
        self.rebuild = rebuild
        self.copy: torch.nn.Module | None = None

    def __call__(self) -> torch.nn.Module | None:
        accelerator = self.accelerator
        if not shards_weights(accelerator):
            return accelerator.unwrap_model(self.objective) if accelerator.is_main_process else None
        weights = accelerator.get_state_dict(self.objective)
        if not accelerator.is_main_process:
            return None
        if self.copy is None:
            with torch.random.fork_rng(devices=[]):  # its random init must not move the run's random stream
                self.copy = self.rebuild().to(accelerator.device)
        load_weights(self.copy, weights, "the weights gathered from the processes' shards")
        return self.copy


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every process's rows of `x` in rank order, and where this process's rows start. The gradient of a loss on the
    result reaches each row's own process (the backward pass sums it there), so in-batch negatives from every
    process train the encoder as one large batch would. Processes may hold different numbers of rows. With one
    process (or none started), `x` itself."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x, 0
    world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    if world == 1:
        return x, 0
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    torch.distributed.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(s) for s in sizes]
    padded = torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1) + (0, max(sizes) - x.shape[0]))
    parts = _GatherWithGrad.apply(padded).chunk(world)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]), sum(sizes[:rank])


class _GatherWithGrad(torch.autograd.Function):
    """All processes' equal-shaped tensors, concatenated; backward sums every process's gradient for this process's
    rows (each process's loss saw them) and returns it to their own process."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad.chunk(torch.distributed.get_world_size())[torch.distributed.get_rank()]
