"""`train.report_to` and `training.report_to`: runs reach the trackers named, here TensorBoard and Weights & Biases in
its offline mode (both write files, nothing leaves the machine)."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hfssl.objectives import load_pretrain

pytest.importorskip("wandb")  # the dev extra installs it


@pytest.fixture(scope="module")
def wandb_home(tmp_path_factory):
    """One offline wandb folder for the module: wandb keeps its settings for the process, so later runs land in the
    folder the first one used."""
    folder = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(folder))
        patch.setenv("WANDB_SILENT", "true")
        yield folder


def runs(folder) -> set:
    return set((folder / "wandb").glob("offline-run-*/run-*.wandb"))


def new_run_log(folder, before: set) -> bytes:
    """The record log of the one offline run started since `before` (protobuf records: keys and JSON values in plain
    bytes)."""
    (run,) = runs(folder) - before
    return run.read_bytes()


def scalars(folder) -> set[str]:
    """The scalar tags of every TensorBoard event folder under `folder`."""
    tags = set()
    for events in {path.parent for path in folder.rglob("events.out.tfevents.*")}:
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_pretraining_reports_to_every_tracker_named_and_logs_the_config_once(tmp_path, wandb_home):
    from hfssl.pretrain import pretrain

    before = runs(wandb_home)
    out = tmp_path / "run"
    values = {
        "train.output_dir": str(out),
        "train.max_steps": "4",
        "train.eval_every": "2",
        "train.log_every": "2",
        "train.report_to": "[tensorboard, wandb]",
        "data.synthetic_documents": "200",
        "tokenizer.vocab_size": "200",
        "model.num_layers": "2",
        "model.hidden_size": "32",
        "model.num_heads": "2",
    }
    pretrain(load_pretrain("text/mlm-tiny", values))
    assert {"train/loss", "eval/loss"} <= scalars(out / "logs")
    log = new_run_log(wandb_home, before)
    assert log.count(b"train.lr") == 1 and b"train.lr\x82\x01\x050.002" in log  # the config, once, with its value
    assert b"objective.name" in log and b"eval/loss" in log and b"train/loss" in log


def test_fine_tuning_reports_to_the_trackers_named(mlm_export, tmp_path, wandb_home):
    from conftest import finetune_tiny

    before = runs(wandb_home)
    out = finetune_tiny(
        mlm_export, tmp_path / "ft", "text/classify-tiny",
        **{"data.synthetic_examples": "200", "data.max_length": "32", "training.report_to": "[tensorboard, wandb]"},
    )  # fmt: skip
    assert any(tag.startswith("eval/") for tag in scalars(out))
    log = new_run_log(wandb_home, before)  # finished by hfssl, not left open for the process's exit
    assert b"learning_rate" in log and b"eval/accuracy" in log


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """A user who never ran `wandb login`: no key in the environment, an empty netrc, online mode."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine example.org login me password secret\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    return netrc_file


def test_wandb_without_a_login_is_refused_before_anything_is_written(no_wandb_login, tmp_path, capsys):
    from hfssl.__main__ import main

    out = tmp_path / "run"
    args = ["pretrain", "text/mlm-tiny", "--train.output_dir", str(out), "--train.report_to", "[wandb]"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and not out.exists()
    assert err == [
        "hfssl: error: train.report_to: wandb is not logged in (run wandb login, set WANDB_API_KEY, or "
        "WANDB_MODE=offline to log locally)"
    ]


@pytest.mark.parametrize("login", ["netrc", "key", "offline"])
def test_wandb_with_a_login_or_offline_is_accepted(no_wandb_login, monkeypatch, login):
    from hfssl.trackers import pretraining_trackers

    if login == "netrc":
        no_wandb_login.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    elif login == "key":
        monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    else:
        monkeypatch.setenv("WANDB_MODE", "offline")
    assert pretraining_trackers(["wandb"]) == ["wandb"]
