"""Codec settings shared by the encoders, and dtype helpers."""
from __future__ import annotations

import operator
import os

import numpy as np

from ...exceptions import CodecError

SUPPORTED_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32"))

# Measured on CT (see docs/codec.md): 5 levels, 64x64 blocks is the best lossless ratio;
# more levels gain nothing, other block shapes lose up to 1%.
DEFAULT_LEVELS = 5
DEFAULT_BLOCK = (64, 64)
# DICOM's HTJ2K-with-RPCL-options syntax wants the lowest resolution at most 64 pixels.
MAX_BASE_RESOLUTION = 64


def check_dtype(dtype) -> np.dtype:
    """The native-endian form of a supported sample dtype; CodecError otherwise."""
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise CodecError(f"unsupported sample type {dt} (use uint8, int8, uint16, int16, uint32 or int32)")
    return dt.newbyteorder("=")


def levels_for(rows: int, columns: int, levels: int | None) -> int:
    """Decomposition levels: the requested number, or enough for a base resolution <= 64."""
    if levels is not None:
        return int(levels)
    n = DEFAULT_LEVELS
    while max(rows, columns) > MAX_BASE_RESOLUTION << n and n < 32:
        n += 1
    return n


#: Most worker threads one call may ask for.
MAX_THREADS = 1024


def thread_count(num_threads: int | None) -> int:
    """None or 0 means all cores this process may use; otherwise an integer 1..MAX_THREADS."""
    if num_threads is not None:
        try:
            n = operator.index(num_threads)
        except TypeError:
            raise CodecError(f"num_threads must be an integer, got {type(num_threads).__name__} "
                             f"{num_threads!r}") from None
        if not 0 <= n <= MAX_THREADS:
            raise CodecError(f"num_threads={n} is out of range: 1..{MAX_THREADS}, or 0/None for all cores")
        if n:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
