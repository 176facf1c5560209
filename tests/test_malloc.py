"""train.cpu_heap: glibc serves large blocks from its heap and keeps them after they are freed."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from hfssl import distributed, malloc
from hfssl.config import TrainArgs

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A child process, so this test's own allocator settings stay glibc's defaults: the bytes glibc holds in mappings
# (hblkhd) and in its main heap (arena) while a 64 MiB block is live, and the heap after it is freed.
BLOCKS = textwrap.dedent(
    """
    import ctypes, json, sys
    from hfssl import malloc

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    def block():
        data = ctypes.create_string_buffer(64 << 20)
        live = libc.mallinfo2()
        del data
        return {"mapped": live.hblkhd, "heap": live.arena, "heap_after": libc.mallinfo2().arena}
    before = block()
    kept = malloc.keep_heap() if sys.argv[1] == "keep" else None
    print(json.dumps({"kept": kept, "before": before, "after": block()}))
    """
)
MIB = 1 << 20


def blocks(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", BLOCKS, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="only glibc's allocator is set")
def test_large_blocks_come_from_the_heap_and_stay_there():
    default, kept = blocks("default"), blocks("keep")
    # glibc's default maps the block and unmaps it on free, every time
    assert default["after"]["mapped"] >= 64 * MIB and default["after"]["heap_after"] < 64 * MIB
    assert kept["kept"] is True
    assert kept["before"]["mapped"] >= 64 * MIB  # the settings change nothing before they are made
    after = kept["after"]
    assert after["mapped"] < 64 * MIB and after["heap"] >= 64 * MIB
    assert after["heap_after"] >= 64 * MIB  # freed, kept for the next step instead of trimmed


@pytest.mark.parametrize("cpu_heap", [True, False])
def test_the_loop_sets_the_heap_on_a_cpu_unless_told_not_to(cpu_heap, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(malloc, "keep_heap", lambda: calls.append(1) or True)
    accelerator = distributed.make_accelerator(TrainArgs(cpu_heap=cpu_heap, report_to=[]), tmp_path, track=False)
    assert accelerator.device.type == "cpu"
    assert len(calls) == int(cpu_heap)
