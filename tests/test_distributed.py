"""Several processes: the tiny text recipe in 2 CPU processes (torchrun, gloo), the launchers' traps, and the
accelerate configs in recipes/accelerate."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import ComputeEnvironment, DistributedType
from helpers import stop_after
from safetensors.torch import load_file
from transformers import get_scheduler

from hfssl.distributed import shards_weights

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "text" / "mlm-tiny.yaml")
STEPS, ACCUM, BATCH, SEQ_LEN, WARMUP = 8, 2, 8, 64, 3
TINY = {
    "model.hidden_size": "64",
    "model.num_heads": "2",
    "data.synthetic_documents": "1500",
    "data.seq_len": str(SEQ_LEN),
    "tokenizer.vocab_size": "1000",
    "train.batch_size": str(BATCH),
    "train.grad_accum": str(ACCUM),
    "train.max_steps": str(STEPS),
    "train.warmup_steps": str(WARMUP),
    "train.log_every": "1",
    "train.eval_every": "4",
    "train.save_every": "4",
    "train.keep_last": "5",
    "train.eval_batches": "4",
    "train.probe_every": "null",
    "model.dropout": "0.1",  # so that a run's random stream matters to its result
}
OPTIONS = [item for key, value in TINY.items() for item in (f"--{key}", value)]
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yml"))


def env() -> dict:
    """The test's environment, without any launcher's variables it may itself be running under."""
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    clean = {k: v for k, v in os.environ.items() if k not in launcher and not k.startswith("ACCELERATE_")}
    return dict(clean, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def run(command: list, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env(), timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def torchrun(*args) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args])


def accelerate_launch(*args, check: bool = True) -> subprocess.CompletedProcess:
    quiet = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return run([sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", *quiet, *args], check=check)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("torchrun") / "mlm"
    done = torchrun("-m", "hfssl", "pretrain", RECIPE, *OPTIONS, "--train.output_dir", out)
    return out, done


def test_two_processes_train_as_one(two_process_run):
    out, _ = two_process_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["steps"] == STEPS
    # Every optimizer step sees batch_size x grad_accum sequences in each of the 2 processes: twice what one process
    # would see (one block of the packed corpus, its last, may be shorter than seq_len).
    global_tokens = STEPS * ACCUM * BATCH * 2 * SEQ_LEN
    assert global_tokens - SEQ_LEN < metrics["tokens_seen"] <= global_tokens


def test_loss_is_finite_and_falls(two_process_run):
    out, _ = two_process_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["step"] for e in metrics["evals"]] == [0, 4, 8]
    assert all(math.isfinite(e["loss"]) for e in metrics["evals"])
    assert math.isfinite(metrics["train_loss"])
    assert metrics["eval_loss"] < metrics["initial_eval_loss"] - 0.2


def test_one_set_of_outputs(two_process_run):
    out, done = two_process_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000004", "step-0000008"]
    for checkpoint in (out / "checkpoints").iterdir():
        # One model, optimizer and schedule; a random state per process.
        names = sorted(p.name for p in checkpoint.iterdir())
        assert [n for n in names if n.startswith("random_states")] == ["random_states_0.pkl", "random_states_1.pkl"]
        assert names.count("model.safetensors") == 1
    assert not list(out.rglob("*.tmp"))
    from safetensors.torch import load_file

    assert load_file(str(out / "final" / "model.safetensors"))
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == STEPS
    # Event files are named ...tfevents.<time>.<host>.<pid>.<n>: all from one process.
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events and len({p.name.split(".")[-2] for p in events}) == 1
    # The main process speaks for the run: one summary line, one line per evaluation.
    assert done.stdout.count("after 8 steps") == 1
    assert done.stderr.count("step 0: eval loss") == 1


def test_learning_rate_counts_optimizer_steps(two_process_run):
    """With 2 processes and 2 micro-batches per step, the rate at optimizer step k is the schedule's value at k."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = two_process_run
    events = EventAccumulator(str(out / "logs" / "pretrain"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/lr")}

    peak = yaml.safe_load(Path(RECIPE).read_text())["train"]["lr"]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=WARMUP, num_training_steps=STEPS)
    expected = {}
    for step in range(1, STEPS + 1):
        optimizer.step()
        schedule.step()
        expected[step] = schedule.get_last_lr()[0]
    assert sorted(logged) == list(range(1, STEPS + 1))
    assert [logged[s] for s in sorted(logged)] == pytest.approx([expected[s] for s in sorted(expected)], abs=1e-9)
    assert logged[WARMUP] == pytest.approx(peak) and logged[STEPS] == 0.0


def test_resume_in_two_processes_continues_exactly(two_process_run, tmp_path):
    """A run stopped after its step-4 checkpoint, resumed in 2 processes (through accelerate launch --multi_gpu,
    which on a machine without GPUs runs the processes on the CPU), ends where the uninterrupted run ended."""
    out, _ = two_process_run
    stopped = tmp_path / "mlm"
    shutil.copytree(out, stopped)
    stop_after(stopped, 4)

    done = accelerate_launch(
        "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
        "-m", "hfssl", "pretrain", RECIPE, *OPTIONS, "--train.output_dir", stopped, "--resume",
    )  # fmt: skip
    assert "resumed from" in done.stderr and "step-0000004" in done.stderr
    full = json.loads((out / "metrics.json").read_text())
    resumed = json.loads((stopped / "metrics.json").read_text())
    assert resumed["num_processes"] == 2
    assert resumed["steps"] == STEPS
    assert [e["step"] for e in resumed["evals"]] == [0, 4, 8]
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["tokens_seen"] == full["tokens_seen"]


def test_resume_with_another_number_of_processes_is_refused(two_process_run, tmp_path):
    out, _ = two_process_run
    stopped = tmp_path / "mlm"
    shutil.copytree(out, stopped)
    done = run([sys.executable, "-m", "hfssl", "pretrain", RECIPE, *OPTIONS, "--train.output_dir", stopped,
                "--resume"], check=False)  # fmt: skip
    assert done.returncode == 2
    assert "written by 2 processes and this run has 1" in done.stderr.strip().splitlines()[-1]


SHARDS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import torch
    from hfssl import config as config_lib
    from hfssl.objectives import load_pretrain
    from hfssl.distributed import make_accelerator
    from hfssl.objectives import mlm

    out = Path(sys.argv[1])
    cfg = load_pretrain(sys.argv[2], {**json.loads(sys.argv[3]), "train.output_dir": str(out)})
    accelerator = make_accelerator(cfg.train, out)
    setup = mlm.setup(cfg, accelerator, out, resuming=False)
    def name(row):  # a packed block, by its tokens before any masking
        return hash(tuple(torch.as_tensor(row["input_ids"]).tolist()))

    setup.train_loader.collate_fn = lambda rows: torch.tensor([name(row) for row in rows])
    loader = accelerator.prepare(setup.train_loader)
    epochs = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        epochs.append([batch.tolist() for batch in loader])
    blocks = [name(row) for row in setup.train_loader.dataset]
    result = {"world": accelerator.num_processes, "epochs": epochs, "blocks": blocks}
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(result))
    """
)


def test_processes_share_out_each_epoch(tmp_path):
    """The training loader as the loop prepares it, in 2 processes: each epoch, every block goes to one process, and
    only the few that Accelerate repeats to fill the last global batch are seen twice."""
    script = tmp_path / "shards.py"
    script.write_text(SHARDS)
    torchrun(script, tmp_path, RECIPE, json.dumps(TINY))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    blocks = Counter(ranks[0]["blocks"])
    orders = []
    for epoch in range(2):
        mine = [r["epochs"][epoch] for r in ranks]
        assert len(mine[0]) == len(mine[1]) == math.ceil(blocks.total() / (2 * BATCH))
        assert all(len(batch) == BATCH for batches in mine for batch in batches)
        seen = Counter(b for batches in mine for batch in batches for b in batch)
        assert not blocks - seen, "a block was left out of the epoch"
        assert (seen - blocks).total() < 2 * BATCH
        before_last = Counter(b for batches in mine for batch in batches[:-1] for b in batch)
        assert not before_last - blocks, "a block was seen twice before the last batch"
        orders.append([b for batches in mine for batch in batches for b in batch])
    assert orders[0] != orders[1], "the second epoch did not reshuffle"


def test_streamed_corpus_in_two_processes_resumes_exactly(tmp_path):
    """A streamed corpus in 2 processes with 2 DataLoader workers each (4 parts of the stream), resumed at step 3 of
    6: every process goes on from its own saved position, and the run ends where the uninterrupted one did."""
    streamed = [
        *OPTIONS, "--data.streaming", "true", "--data.validation_documents", "100", "--train.num_workers", "2",
        "--train.grad_accum", "1", "--train.max_steps", "6", "--train.save_every", "3", "--train.eval_every", "3",
    ]  # fmt: skip
    run = tmp_path / "mlm"
    torchrun("-m", "hfssl", "pretrain", RECIPE, *streamed, "--train.output_dir", run)
    state = json.loads((run / "checkpoints" / "step-0000003" / "trainer_state.json").read_text())
    assert [len(position["roles"]) for position in state["streams"]] == [2, 2]
    assert [position["next"] for position in state["streams"]] == [1, 1], "3 batches in, each second worker is due"
    full = stop_after(run, 3)
    done = torchrun("-m", "hfssl", "pretrain", RECIPE, *streamed, "--train.output_dir", run, "--resume")
    assert "resumed from" in done.stderr and "step-0000003" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["num_processes"] == 2 and resumed["steps"] == full["steps"] == 6
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["tokens_seen"] == full["tokens_seen"]


def test_accelerate_cpu_launch_warns_that_it_runs_one_process(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts one process; hfssl says so in one line."""
    out = tmp_path / "mlm"
    short = [*OPTIONS, "--train.max_steps", "2", "--train.warmup_steps", "0"]
    done = accelerate_launch(
        "--cpu", "--num_processes", "2", "-m", "hfssl", "pretrain", RECIPE, *short, "--train.output_dir", out
    )
    warnings = [line for line in done.stderr.splitlines() if "started one" in line]
    assert len(warnings) == 1 and "WARNING hfssl" in warnings[0] and "torchrun --nproc_per_node" in warnings[0]
    assert json.loads((out / "metrics.json").read_text())["num_processes"] == 1


def test_which_configurations_shard_weights():
    """FSDP and ZeRO-3 leave each process a shard of the weights; DDP and ZeRO-2 keep them whole in every process."""

    def accelerator(kind, zero_stage=None):
        plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage else None
        return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin))

    assert shards_weights(accelerator(DistributedType.FSDP))
    assert shards_weights(accelerator(DistributedType.DEEPSPEED, zero_stage=3))
    assert not shards_weights(accelerator(DistributedType.DEEPSPEED, zero_stage=2))
    assert not shards_weights(accelerator(DistributedType.MULTI_GPU))
    assert not shards_weights(accelerator(DistributedType.MULTI_CPU))


# --------------------------------------------------------------------------- FSDP (FSDP2 on CPU processes)

FSDP = ROOT / "recipes" / "accelerate" / "fsdp.yml"
FSDP_ON_CPU = ROOT / "tests" / "fsdp_cpu.py"


def fsdp_launch(out: Path, *extra, check: bool = True) -> subprocess.CompletedProcess:
    """The tiny text recipe under recipes/accelerate/fsdp.yml in 2 CPU processes, probing every 4 steps."""
    return accelerate_launch(
        "--config_file", FSDP, "--num_processes", "2", "--main_process_port", "0", FSDP_ON_CPU,
        "pretrain", RECIPE, *OPTIONS, "--train.probe_every", "4", "--train.output_dir", out, *extra, check=check,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp") / "mlm"
    fsdp_launch(out)
    return out


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by up to {worst}"


def test_fsdp_trains_as_ddp_does(fsdp_run, two_process_run):
    """Sharded, the run evaluates in lockstep, probes and exports from the gathered weights, and ends with the
    weights DDP ends with (its probes do not move the random stream that dropout draws from)."""
    ddp, _ = two_process_run
    sharded = json.loads((fsdp_run / "metrics.json").read_text())
    whole = json.loads((ddp / "metrics.json").read_text())
    assert sharded["num_processes"] == 2
    checkpoint = fsdp_run / "checkpoints" / "step-0000008"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and not (checkpoint / "model.safetensors").exists()
    assert [p["step"] for p in sharded["probes"]] == [4, 8] and whole["probes"] == []
    assert all(0.0 < p["accuracy"] <= 1.0 for p in sharded["probes"])
    for a, b in zip(sharded["evals"], whole["evals"], strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    assert_same_weights(weights(fsdp_run / "final"), weights(ddp / "final"), atol=1e-5)


def test_fsdp_checkpoint_exports_and_resumes(fsdp_run, tmp_path):
    """`hfssl export` merges a sharded checkpoint into the weights the run exported; a run resumed from the step-4
    checkpoint ends with them too, also when its processes have unequal shares of the evaluation batches."""
    exported = tmp_path / "export"
    run([sys.executable, "-m", "hfssl", "export", fsdp_run / "checkpoints" / "step-0000008", exported])
    final = weights(fsdp_run / "final")
    assert_same_weights(weights(exported), final, atol=0.0)

    stopped = tmp_path / "mlm"
    shutil.copytree(fsdp_run, stopped)
    stop_after(stopped, 4)
    # 3 evaluation batches: one process has a batch fewer, and evaluates one twice to keep step with the other.
    done = fsdp_launch(stopped, "--resume", "--train.eval_batches", "3")
    assert "step-0000004" in done.stderr
    evals = json.loads((stopped / "metrics.json").read_text())["evals"]
    assert [e["step"] for e in evals] == [0, 4, 8] and math.isfinite(evals[-1]["loss"])
    assert_same_weights(weights(stopped / "final"), final, atol=0.0)


def test_fsdp_layer_class_not_in_the_model():
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from hfssl.distributed import check_fsdp_units
    from hfssl.errors import UsageError
    from hfssl.objectives.mlm import MaskedLM

    def accelerator(names):
        plugin = SimpleNamespace(auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=names)
        return SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))

    objective = MaskedLM(text_model("modernbert"))
    with pytest.raises(UsageError) as err:
        check_fsdp_units(accelerator(["ModernBertEncoderLayer", "BertLayer"]), objective)
    assert str(err.value).startswith("fsdp_transformer_layer_cls_to_wrap: BertLayer is not a module of this model")
    assert "transformer layers are ModernBertEncoderLayer" in str(err.value)
    named = accelerator(None)  # none named: hfssl names the model's own
    check_fsdp_units(named, objective)
    assert named.state.fsdp_plugin.transformer_cls_names_to_wrap == ["ModernBertEncoderLayer"]


def test_accelerate_configs_found():
    names = {p.name for p in ACCELERATE_CONFIGS}
    assert {"multi-gpu.yml", "multi-node.yml", "fsdp.yml", "deepspeed-zero2.yml", "deepspeed-zero3.yml"} <= names


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file recipes/accelerate/{path.name} "), (
        "an accelerate config opens with the command that uses it"
    )
    assert "-m hfssl pretrain" in first and (ROOT / first.split()[-1]).is_file()

    config = load_config_from_file(str(path))  # what accelerate launch reads; it rejects unknown keys
    assert isinstance(config, ClusterConfig)
    assert config.compute_environment == ComputeEnvironment.LOCAL_MACHINE
    assert config.num_processes >= 2 and config.num_processes % config.num_machines == 0
    assert config.mixed_precision == "no", "hfssl's train.mixed_precision decides"
    # Keys inside fsdp_config and deepspeed_config become launch options; accelerate passes unknown ones on unread.
    options = {action.dest for action in launch_command_parser()._actions}
    assert set(config.fsdp_config) | set(config.deepspeed_config) <= options

    kind = config.distributed_type
    assert kind in (DistributedType.MULTI_GPU, DistributedType.FSDP, DistributedType.DEEPSPEED)
    if config.num_machines > 1:
        assert config.main_process_ip and config.main_process_port and config.machine_rank == 0
    if kind == DistributedType.FSDP:
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # FULL_SHARD
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
        assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp, "left out, hfssl names the model's layer class"
    if kind == DistributedType.DEEPSPEED:
        ds = config.deepspeed_config
        assert ds["zero_stage"] in (2, 3)
        assert "gradient_accumulation_steps" not in ds, "left out, DeepSpeed takes train.grad_accum"
        assert ds["gradient_clipping"] == 1.0, "= train.max_grad_norm's default"
        if ds["zero_stage"] == 3:
            assert ds["zero3_save_16bit_model"] is True


def text_model(arch: str):
    from transformers import AutoModelForMaskedLM

    from hfssl.models.text import build_model
    from hfssl.objectives import load_pretrain

    small = {"model.arch": arch, "model.num_layers": "2", "model.hidden_size": "32", "model.num_heads": "2"}
    cfg = load_pretrain(RECIPE, small)

    class Tokenizer:  # what build_model reads from a tokenizer
        pad_token_id, cls_token_id, sep_token_id, bos_token_id, eos_token_id = 0, 2, 3, 2, 3

        def __len__(self):
            return 100

    return build_model(cfg.model, Tokenizer(), AutoModelForMaskedLM)


def speech_model(arch: str, **fields):
    from transformers import AutoConfig, AutoModelForPreTraining

    config = AutoConfig.for_model(
        arch, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), codevector_dim=16, proj_codevector_dim=16,
        num_codevectors_per_group=8, **fields,
    )  # fmt: skip
    return AutoModelForPreTraining.from_config(config)


@pytest.mark.parametrize(
    "build, layer",
    [
        (lambda: text_model("modernbert"), "ModernBertEncoderLayer"),
        (lambda: text_model("bert"), "BertLayer"),
        (lambda: text_model("roberta"), "RobertaLayer"),
        (lambda: speech_model("wav2vec2", do_stable_layer_norm=True), "Wav2Vec2EncoderLayerStableLayerNorm"),
        (lambda: speech_model("wav2vec2", do_stable_layer_norm=False), "Wav2Vec2EncoderLayer"),
        (lambda: speech_model("wav2vec2-conformer"), "Wav2Vec2ConformerEncoderLayer"),
    ],
    ids=["modernbert", "bert", "roberta", "wav2vec2-stable", "wav2vec2", "conformer"],
)
def test_fsdp_units_are_the_transformer_layers(build, layer):
    """hfssl names the layer class FSDP shards as a unit: the transformer layer, not a conv block or the model."""
    from hfssl.distributed import transformer_layers

    assert transformer_layers(build()) == [layer]


def workers(launcher: int) -> list[int]:
    """The process ids of the processes `launcher` started, oldest first."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == launcher:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["preempted", "killed"])
def test_one_process_stopped_and_the_same_command_again_continues_exactly(two_process_run, tmp_path, sig):
    """One of two processes is preempted (SIGTERM: both stop at the same step and save) or lost (SIGKILL) after the
    step-4 checkpoint; the same command again, as a requeued job runs it, continues the run with `--resume auto` to
    the uninterrupted run's weights. (torchrun's own `--max-restarts` is the test below.)"""
    out, _ = two_process_run
    stopped = tmp_path / "mlm"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hfssl",
               "pretrain", RECIPE, *OPTIONS, "--train.output_dir", str(stopped), "--resume", "auto"]  # fmt: skip
    launcher = subprocess.Popen(
        command, env=env() | {"HFSSL_SLOW_WRITES": "0.5"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not (stopped / "checkpoints" / "step-0000004").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(workers(launcher.pid)[-1], sig)
    err = launcher.communicate(timeout=300)[1]
    assert launcher.returncode != 0 and not (stopped / "final").exists(), err[-3000:]
    if sig == signal.SIGTERM:  # the process that was not signalled stopped at the same step, and both saved it
        lines = [line for line in err.splitlines() if line.startswith("hfssl: preempted")]
        steps = {line.split()[3] for line in lines}
        assert len(lines) == 2 and len(steps) == 1, err[-3000:]
        assert any("SIGTERM received" in line for line in lines)
        assert any("a preemption signal (on another process) received" in line for line in lines)

    done = run(command)
    assert "resumed from" in done.stderr
    a = load_file(str(out / "final" / "model.safetensors"))
    b = load_file(str(stopped / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for(path: Path, launchers: list[subprocess.Popen], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        for launcher in launchers:
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
        time.sleep(0.05)


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_lost_process_restarted_by_torchrun_ends_exactly(two_process_run, tmp_path):
    """`torchrun --max-restarts 1` with `--resume auto`: one of two processes is killed after the step-4 checkpoint,
    torchrun starts the group again, and the new group resumes from that checkpoint to the uninterrupted run's
    weights. The new group meets under keys of its own in torchrun's store (distributed.join_restarted_group): the
    addresses the lost group left there made the restarted one fail to connect."""
    out, _ = two_process_run
    lost = tmp_path / "mlm"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts",
         "1", "-m", "hfssl", "pretrain", RECIPE, *OPTIONS, "--train.output_dir", str(lost), "--resume", "auto"],
        env=env() | {"HFSSL_SLOW_WRITES": "0.5"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lost / "checkpoints" / "step-0000004", [launcher])
    os.kill(workers(launcher.pid)[-1], signal.SIGKILL)
    err = launcher.communicate(timeout=300)[1]
    assert launcher.returncode == 0, err[-3000:]
    assert err.count("resumed from") == 1 and "step-0000004 at step 4" in err  # the main process of the new group
    assert same_weights(out, lost)


def test_two_nodes_on_one_machine_train_as_one_and_restart_together(two_process_run, tmp_path):
    """The multi-node path: two torchrun launchers, one process each, meet through c10d rendezvous on localhost as
    two nodes would. One node's process is killed after the step-4 checkpoint; both launchers restart their
    processes, and the run ends on the weights of the one-launcher, two-process run. Each rendezvous round gets a
    store of its own (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as docs/faults.md says for several nodes): the node
    whose process was healthy restarts without counting, so the restart count cannot tell the rounds apart."""
    out, _ = two_process_run
    run = tmp_path / "mlm"
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "hfssl-two-nodes",
            "--max-restarts", "1", "-m", "hfssl", "pretrain", RECIPE, *OPTIONS, "--train.output_dir", str(run),
            "--resume", "auto"]  # fmt: skip
    nodes = [
        subprocess.Popen(node, env=env() | {"HFSSL_SLOW_WRITES": "0.5", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    wait_for(run / "checkpoints" / "step-0000004", nodes)
    os.kill(workers(nodes[1].pid)[-1], signal.SIGKILL)
    errs = [n.communicate(timeout=300)[1] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(e[-2000:] for e in errs)
    assert "".join(errs).count("resumed from") == 1 and "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" not in "".join(errs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == STEPS
    assert same_weights(out, run)
