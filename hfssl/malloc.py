"""glibc's allocator, set for training on a CPU (`train.cpu_heap`).

glibc serves every block above its mmap threshold (at most 32 MiB on 64-bit) with a fresh mapping from the kernel
and unmaps it when freed. A training step frees and re-allocates the same large activations every step, so each one
is mapped, page-faulted in and unmapped again: at 512-1,024 texts a step a third of the CPU time goes to the
kernel. Turning the mmap path off serves those blocks from the heap, and a high trim threshold keeps freed memory
for the next step: steps 1.07-1.75x faster in `bench/cpu_allocator.py` from 64 x 128-token masked-LM batches or
512 crop pairs up, for up to 28% more resident memory; small batches, whose blocks stay under the threshold, are
unchanged. Only glibc is touched (`mallopt`); other C libraries are left as they are, and an allocator preloaded in
glibc's place takes the call through its own `mallopt`.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: free memory at the heap's top is given back only past 2 GiB


def keep_heap() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse, for the rest of this process. True where
    glibc accepted both settings, False where the C library is not glibc or refused one."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
