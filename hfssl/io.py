"""Atomic writes: a reader (or a killed run) never sees a half-written file or directory, and what is written is as
readable as the user's umask allows (temporary files start private)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from hfssl.errors import DiskFull, UsageError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def pause_in_writes() -> None:
    """Sleep `HFSSL_SLOW_WRITES` seconds (unset: not at all) in the middle of an atomic write: the kill tests use it to
    land a SIGKILL inside a checkpoint or an export."""
    seconds = float(os.environ.get("HFSSL_SLOW_WRITES") or 0)
    if seconds > 0:
        time.sleep(seconds)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _leftovers(path: Path) -> list[Path]:
    """What earlier writes of `path` that were killed midway left beside it."""
    return [*path.parent.glob(f".{path.name}.*.tmp"), path.with_name(f".{path.name}.old")]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def disk_full(err: BaseException) -> bool:
    """Whether `err` says the disk or the user's quota is full: an OSError, or a library's error that carries the
    system's words (safetensors' does)."""
    if isinstance(err, DiskFull) or (isinstance(err, OSError) and err.errno in NO_SPACE):
        return True
    return any(os.strerror(code) in str(err) for code in NO_SPACE)


def no_space(path: Path, kept: str) -> DiskFull:
    """The one line for a write of `path` that ran out of space; `kept`: what is intact."""
    where = next((p for p in Path(path).parents if p.exists()), Path("."))
    free = shutil.disk_usage(where).free
    return DiskFull(f"{path}: no space left on the device ({free / 1e6:,.0f} MB free); its partial files are removed "
                    f"and {kept}; free space and run again")  # fmt: skip


@contextmanager
def _making_room(path: Path):
    """Creating `path`'s parent and a temporary file in it: a place this user may not write in (permissions, a
    read-only file system) is one line naming it, not a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno in NOT_ALLOWED:
            where = err.filename or path.parent
            raise UsageError(f"{path}: cannot be written ({where}: {os.strerror(err.errno).lower()})") from None
        raise


def write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it into place (leftovers of an earlier write of
    `path` that was killed midway are removed first)."""
    path = Path(path)
    with _making_room(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in _leftovers(path):
            _remove(leftover)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if disk_full(err):
            raise no_space(path, "what was there is as it was") from None
        raise


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(path: Path):
    """Yield a temporary directory beside `path`; on success it replaces `path`, on failure it is removed (and a full
    disk is `DiskFull`). What an earlier write of `path` that was killed midway left beside it is removed first."""
    path = Path(path)
    with _making_room(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in _leftovers(path):
            _remove(leftover)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(err):
            raise no_space(path, "what was there is as it was") from None
        raise
    pause_in_writes()
    follow_umask(tmp)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        _remove(old)


def follow_umask(folder: Path) -> None:
    """Give the files written into `folder` the permissions the user's umask gives new files: a writer that makes
    its files private (safetensors writes 0600 whatever the umask) would leave weights other users cannot read,
    beside a config and tokenizer they can."""
    mode = 0o666 & ~_umask()
    for file in Path(folder).rglob("*"):
        if file.is_file() and not file.is_symlink():
            executable = file.stat().st_mode & 0o111 & ~_umask()  # an executable keeps its execute bits
            os.chmod(file, mode | executable)


def check_output_dir(path: Path, field: str) -> None:
    """An output directory must be a directory (or not exist yet) that this user can write in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{field}: {path} is a file, not a directory")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{field}: {path} is under {existing}, which is a file, not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{field}: {path} cannot be written here ({existing} is not writable)")


def check_local(name: str, field: str, hint: str = "") -> None:
    """A name that can only be a local path (a Hub id is "name" or "owner/name") must exist: one line saying so,
    instead of a failed Hub download or a malformed repo id."""
    if (name.startswith((".", "/", "~")) or name.count("/") > 1) and not Path(name).expanduser().exists():
        raise UsageError(f"{field}: {name}: no such directory{f' ({hint})' if hint else ''}")


def check_replaceable(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse, in one line, to replace what is at `path` (a file, or a directory with something in it) unless the
    user said `flag`: an output path must not silently take the place of the user's own files. A path under a file
    cannot be written at all."""
    path = Path(path)
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{path}: is under {existing}, which is a file, not a directory; choose another output")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot be written here ({existing} is not writable)")
    if overwrite or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    what = "a file" if not path.is_dir() else "a directory with files in it"
    raise UsageError(f"{path}: is {what}; pass {flag} to replace it, or choose another output")
