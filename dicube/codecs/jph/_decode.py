"""Decoding HTJ2K codestreams into numpy arrays."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ...exceptions import CodecError
from ._info import read_header
from ._native import native
from ._options import thread_count


def _check_out(out: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise CodecError("out must be a numpy array")
    if out.shape != shape or out.dtype != dtype:
        raise CodecError(f"out has shape {out.shape} and dtype {out.dtype}; decoding needs {shape} {dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise CodecError("out must be a writeable C-contiguous array")
    return out


def _frame_layout(first, reduce: int):
    info = read_header(first)
    rows, cols = native.reduced_size(first, reduce) if reduce else (info.rows, info.columns)
    shape = (rows, cols) if info.components == 1 else (rows, cols, info.components)
    return shape, info.dtype


_ISOLATE = {False: 0, True: 1, None: 2}


def imdecode_jph(
    data,
    *,
    reduce: int = 0,
    out: Optional[np.ndarray] = None,
    verify: bool = True,
    resilient: bool = False,
    isolate: Optional[bool] = None,
) -> np.ndarray:
    """Decode one codestream (bytes-like) into (rows, columns) or (rows, columns, samples).

    The dtype follows the codestream's precision and sign (uint8/int8, uint16/int16,
    uint32/int32). ``reduce`` skips that many finest wavelet levels (a 2**reduce smaller
    image, decoded faster). ``verify`` checks dicube's embedded checksum when present.
    ``resilient`` asks OpenJPH to decode past corrupt data instead of failing.
    Raises :class:`CodecError` on any malformed, truncated or corrupt input.

    ``isolate`` decides where OpenJPH runs. Debian's build keeps its ``assert()``s and trusts
    header and packet fields, and a checksum proves nothing against an attacker, so the
    default (None) decodes in-process only codestreams inside the profile our writer
    produces (every marker segment, the tile-parts and each code-block length checked, with
    OpenJPH's failed assertions turned into :class:`CodecError`); any other codestream is
    decoded in a short-lived child process (a fork, ~20 ms), where a crash becomes a
    :class:`CodecError`. ``True`` isolates every codestream, ``False`` none (trusted input).
    """
    shape, dtype = _frame_layout(data, reduce)
    if out is None:
        out = np.empty(shape, dtype)
    else:
        _check_out(out, shape, dtype)
    try:
        native.decode_batch([data], out[np.newaxis], reduce, verify, resilient, 1, _ISOLATE[isolate])
    except CodecError as exc:
        raise CodecError(str(exc).removeprefix("frame 0: ")) from None
    return out


def decode_batch(
    codestreams: Sequence,
    out: Optional[np.ndarray] = None,
    *,
    reduce: int = 0,
    num_threads: Optional[int] = None,
    verify: bool = True,
    resilient: bool = False,
    isolate: Optional[bool] = None,
) -> np.ndarray:
    """Decode codestreams of equal size and type into one (frames, rows, columns[, samples]) array.

    ``out`` (optional) is a preallocated array to decode into, which saves the cost of
    fresh memory. Frames are decoded on ``num_threads`` C++ threads (default: all cores)
    with the GIL released. ``isolate`` as in :func:`imdecode_jph` (isolated batches run
    on one thread in one child process).
    """
    codestreams = list(codestreams)
    if not codestreams:
        raise CodecError("no codestreams to decode")
    shape, dtype = _frame_layout(codestreams[0], reduce)
    full = (len(codestreams),) + shape
    out = np.empty(full, dtype) if out is None else _check_out(out, full, dtype)
    native.decode_batch(codestreams, out, reduce, verify, resilient, thread_count(num_threads), _ISOLATE[isolate])
    return out


#: Frame codec number of HTJ2K in the .dcbs header (see ``codec`` below).
HTJ2K_FRAMES = 1


def decode_regions(
    buffer,
    offsets,
    lengths,
    out: np.ndarray,
    *,
    crcs=None,
    reduce: int = 0,
    num_threads: Optional[int] = None,
    verify: bool = True,
    codec: int = HTJ2K_FRAMES,
) -> np.ndarray:
    """Decode codestreams lying at byte ``offsets``/``lengths`` of one buffer into ``out``.

    For containers that hold many frames in one file: no per-frame Python objects.
    ``out`` must already have the frames' shape and dtype (checked per frame in C++).
    ``crcs`` (CRC-32C per codestream) are checked on the worker threads before decoding;
    a mismatch raises :class:`~dicube.exceptions.CorruptFileError` with a ``frame`` attribute.
    Codestreams outside dicube's writer profile are decoded isolated (see :func:`imdecode_jph`).
    ``codec`` is the .dcbs frame codec: 1 HTJ2K, 3 zstd byte planes
    (:mod:`dicube.codecs.zstd_planes`).
    """
    _check_writeable(out)
    offs, lens, sums = _regions(offsets, lengths, crcs)
    native.decode_regions(buffer, offs, lens, sums, out, reduce, verify, False, thread_count(num_threads), codec)
    return out


def decode_file_regions(fd: int, base: int, offsets, lengths, out: np.ndarray, *, crcs=None,
                        reduce: int = 0, num_threads: Optional[int] = None,
                        codec: int = HTJ2K_FRAMES) -> bool:
    """Like :func:`decode_regions` for codestreams at ``base + offsets`` of the open file ``fd``.

    Each worker thread reads (``pread``) its frames, so no buffer of the whole selection
    is made. Returns False, without finishing, when a codestream is outside dicube's writer
    profile: decode such frames with :func:`decode_regions`, which isolates them. A short file
    raises :class:`~dicube.exceptions.InvalidCubeFileError`.
    """
    _check_writeable(out)
    offs, lens, sums = _regions(offsets, lengths, crcs)
    return native.decode_file_regions(fd, base, offs, lens, sums, out, reduce, thread_count(num_threads), codec)


def _regions(offsets, lengths, crcs) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    return (np.ascontiguousarray(offsets, dtype=np.uint64), np.ascontiguousarray(lengths, dtype=np.uint64),
            None if crcs is None else np.ascontiguousarray(crcs, dtype=np.uint32))


def _check_writeable(out: np.ndarray) -> None:
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise CodecError("out must be a writeable C-contiguous array")
