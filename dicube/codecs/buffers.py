"""Output arrays whose memory is reused within the process once they are freed.

A freshly allocated volume costs the kernel zeroing each of its pages on first touch, about
a tenth of the CPU of a full .dcbs load here (docs/concurrency.md). :func:`empty` takes
volumes from a small per-process cache of freed ones (native ``buffers.cpp``: at most 4
blocks and 1 GiB kept, marked reclaimable under memory pressure, never inherited by a fork).
"""
from __future__ import annotations

import numpy as np

from .jph._native import native

#: smaller arrays come from numpy (whose allocator already reuses small blocks)
MIN_BYTES = 8 << 20


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, on reused memory when it is large."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize < MIN_BYTES:
        return np.empty(shape, dtype)
    return native.empty(shape, dtype)


def kept_bytes() -> int:
    """Bytes of freed arrays kept for reuse."""
    return int(native.kept_bytes())


def trim() -> None:
    """Give the memory kept for reuse back to the system."""
    native.trim()
