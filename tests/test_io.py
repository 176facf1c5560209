"""Atomic writes: nothing half-written, leftovers of killed writes removed, the user's umask kept, and no output path
that silently replaces the user's files."""

import errno
import os
import stat

import pytest

from hfssl.errors import DiskFull, UsageError
from hfssl.io import atomic_dir, check_output_dir, check_replaceable, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_follow_the_umask(tmp_path, umask_022):
    write_text(tmp_path / "metrics.json", "{}")
    assert mode(tmp_path / "metrics.json") == 0o644
    with atomic_dir(tmp_path / "final") as tmp:
        (tmp / "config.json").write_text("{}")
    assert mode(tmp_path / "final") == 0o755
    os.umask(0o077)
    write_text(tmp_path / "private.json", "{}")
    assert mode(tmp_path / "private.json") == 0o600


def test_files_a_writer_makes_private_follow_the_umask_too(tmp_path, umask_022):
    """safetensors writes its files 0600 whatever the umask: the export's weights end as readable as its config."""
    import torch
    from safetensors.torch import save_file

    with atomic_dir(tmp_path / "final") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp / "run.sh", 0o700)
    assert mode(tmp_path / "final" / "model.safetensors") == 0o644
    assert mode(tmp_path / "final" / "run.sh") == 0o744  # readable as the umask lets, executable by whom it was


def test_a_failed_write_leaves_what_was_there(tmp_path):
    with atomic_dir(tmp_path / "final") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "final") as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["a"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / ".final.x1y2.tmp").mkdir()
    (tmp_path / ".final.x1y2.tmp" / "model.safetensors").write_text("half")
    (tmp_path / ".final.old").write_text("an earlier final, never removed")
    (tmp_path / ".other.x1.tmp").mkdir()  # another output's: not ours to remove
    with atomic_dir(tmp_path / "final") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x1.tmp", "final"]


def test_leftovers_of_a_killed_file_write_are_removed(tmp_path):
    (tmp_path / ".metrics.json.k3j.tmp").write_text('{"half": ')
    write_text(tmp_path / "metrics.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_output_does_not_replace_the_users_files_unless_told(tmp_path):
    check_replaceable(tmp_path / "new", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", overwrite=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="mine: is a directory with files in it; pass --overwrite"):
        check_replaceable(tmp_path / "mine", overwrite=False)
    (tmp_path / "file.txt").write_text("keep me")
    with pytest.raises(UsageError, match="file.txt: is a file; pass --overwrite"):
        check_replaceable(tmp_path / "file.txt", overwrite=False)
    check_replaceable(tmp_path / "mine", overwrite=True)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        RuntimeError("I/O error: No space left on device (os error 28)"),
    ],
    ids=["oserror", "library-error"],
)
def test_a_full_disk_is_one_line_and_leaves_what_was_there(tmp_path, error):
    with atomic_dir(tmp_path / "final") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(DiskFull, match=f"^{tmp_path / 'final'}: no space left on the device"):
        with atomic_dir(tmp_path / "final") as tmp:
            (tmp / "b").write_text("2")
            raise error
    assert [p.name for p in tmp_path.iterdir()] == ["final"]
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["a"]


def test_a_full_disk_while_writing_a_file(tmp_path, monkeypatch):
    write_text(tmp_path / "metrics.json", "{}")

    def full(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", full)
    with pytest.raises(DiskFull, match="metrics.json: no space left on the device"):
        write_text(tmp_path / "metrics.json", '{"a": 1}')
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_an_output_directory_under_a_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="out: .* is under .*notes.txt, which is a file, not a directory"):
        check_output_dir(tmp_path / "notes.txt" / "a" / "b", "out")


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["permission", "read-only"])
def test_a_place_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, code):
    """Where the folder cannot take a new file (its permissions, a read-only file system) the write stops with one
    line naming the path and the reason, and nothing is left."""

    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), str(dir))

    monkeypatch.setattr("tempfile.mkdtemp", refuse)
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    for write in (lambda: write_text(tmp_path / "a.txt", "x"), lambda: atomic_dir(tmp_path / "out").__enter__()):
        with pytest.raises(UsageError, match=f"cannot be written \\({tmp_path}: {os.strerror(code).lower()}\\)"):
            write()
    assert list(tmp_path.iterdir()) == []
