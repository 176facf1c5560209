"""The run directory's checkpoints: only complete `step-N` directories count; what a killed run left while writing
one (`step-N.tmp`, complete or not) is neither resumed from nor in the way of a fresh start."""

import json
import shutil

import pytest

from hfssl.checkpoint import (
    LOOP_STATE,
    STATE_FILE,
    checkpoints,
    find_checkpoint,
    has_checkpoints,
    remove_partial,
    resume_from,
)
from hfssl.errors import UsageError


def checkpoint(run, name: str, complete: bool = True):
    folder = run / "checkpoints" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    if complete:
        (folder / STATE_FILE).write_text(json.dumps(dict.fromkeys(LOOP_STATE, 0) | {"step": int(name[5:12])}))
    return folder


def test_only_complete_checkpoints_count(tmp_path):
    two = checkpoint(tmp_path, "step-0000002")
    ten = checkpoint(tmp_path, "step-0000010")
    checkpoint(tmp_path, "step-0000012.tmp")  # killed between writing it and renaming it
    checkpoint(tmp_path, "step-0000014.tmp", complete=False)  # killed while writing it
    checkpoint(tmp_path, "step-0000016", complete=False)  # not written by hfssl's save
    assert checkpoints(tmp_path) == [two, ten]
    assert find_checkpoint("auto", tmp_path) == ten
    assert find_checkpoint(str(tmp_path / "checkpoints"), tmp_path) == ten
    assert find_checkpoint(str(two), tmp_path) == two
    assert has_checkpoints(tmp_path)


def test_a_run_with_only_partial_checkpoints_has_none(tmp_path):
    checkpoint(tmp_path, "step-0000012.tmp")
    checkpoint(tmp_path, "step-0000014.tmp", complete=False)
    assert not has_checkpoints(tmp_path)
    with pytest.raises(UsageError, match="holds no checkpoint"):
        find_checkpoint("auto", tmp_path)
    with pytest.raises(UsageError, match="holds no checkpoint"):
        find_checkpoint(str(tmp_path / "checkpoints" / "step-0000012.tmp"), tmp_path)
    remove_partial(tmp_path)
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_remove_partial_keeps_complete_checkpoints(tmp_path):
    kept = checkpoint(tmp_path, "step-0000002")
    checkpoint(tmp_path, "step-0000004.tmp")
    remove_partial(tmp_path)
    assert list((tmp_path / "checkpoints").iterdir()) == [kept]
    shutil.rmtree(tmp_path / "checkpoints")
    remove_partial(tmp_path)  # no checkpoints folder at all


def test_resume_auto_starts_where_there_is_no_checkpoint(tmp_path):
    assert resume_from(None, tmp_path) is None
    assert resume_from("auto", tmp_path) is None  # a first start, or a run killed before its first checkpoint
    with pytest.raises(UsageError, match="holds no checkpoint"):
        resume_from(True, tmp_path)  # a bare --resume says the user expects a checkpoint here
    checkpoint(tmp_path, "step-0000004.tmp")
    assert resume_from("auto", tmp_path) is None
    four = checkpoint(tmp_path, "step-0000004")
    assert resume_from("auto", tmp_path) == resume_from(True, tmp_path) == four
