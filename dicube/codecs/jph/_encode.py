"""Lossless HTJ2K encoding of images and whole series."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...exceptions import CodecError
from ._native import native
from ._options import DEFAULT_BLOCK, check_dtype, levels_for, thread_count

_PROGRESSIONS = ("LRCP", "RLCP", "RPCL", "PCRL", "CPRL")


def _prepare(array, lead: int) -> np.ndarray:
    arr = np.asarray(array)
    dt = check_dtype(arr.dtype)
    nd = arr.ndim - lead
    if nd == 3 and arr.shape[-1] != 3:
        raise CodecError(f"a colour image must have 3 samples on its last axis, got shape {arr.shape}")
    if nd not in (2, 3):
        what = "(frames, rows, columns[, 3])" if lead else "(rows, columns) or (rows, columns, 3)"
        raise CodecError(f"expected an array of shape {what}, got shape {arr.shape}")
    if 0 in arr.shape[lead:]:
        raise CodecError(f"cannot encode an empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dt)


def _settings(arr: np.ndarray, lead: int, bits_stored, levels, block_size, progression) -> tuple:
    if progression not in _PROGRESSIONS:
        raise CodecError(f"unknown progression order {progression!r} (one of {', '.join(_PROGRESSIONS)})")
    bw, bh = (int(v) for v in block_size)
    if bw < 4 or bh < 4 or bw & (bw - 1) or bh & (bh - 1) or bw * bh > 4096 or bw > 1024 or bh > 1024:
        raise CodecError(f"code-block size {block_size} must be powers of two, 4..1024, area <= 4096")
    bits = 0 if bits_stored is None else int(bits_stored)
    if bits_stored is not None and not 1 <= bits <= arr.dtype.itemsize * 8:
        raise CodecError(f"bits_stored={bits_stored} is outside 1..{arr.dtype.itemsize * 8} for {arr.dtype}")
    rows, cols = arr.shape[lead], arr.shape[lead + 1]
    return bits, levels_for(rows, cols, levels), bw, bh


def imencode_jph(
    image,
    *,
    bits_stored: Optional[int] = None,
    levels: Optional[int] = None,
    block_size: Tuple[int, int] = DEFAULT_BLOCK,
    progression: str = "RPCL",
    color_transform: bool = False,
    tlm: bool = True,
    checksum: bool = True,
) -> bytes:
    """Encode one image as a lossless HTJ2K codestream (reversible 5/3 wavelet).

    ``image`` is (rows, columns) or (rows, columns, 3) of uint8, int8, uint16, int16,
    uint32 or int32. ``bits_stored`` declares the precision (e.g. 12 for 12-bit CT); values
    that do not fit raise :class:`CodecError`. By default it is the dtype's width (for
    32-bit types: the fewest bits holding the values; at most 21 are supported).

    The codestream is a raw J2K stream (no JP2 boxes): one tile, RPCL progression,
    64x64 code blocks, ``levels`` decompositions (default 5, more when needed for the
    lowest resolution to be at most 64 pixels). With Debian's OpenJPH 0.9 it meets DICOM
    transfer syntax 1.2.840.10008.1.2.4.201 (HTJ2K Lossless Only): it is reversible HT
    coding. It does not meet .202 (HTJ2K with RPCL options) because that syntax also
    requires a TLM marker, which OpenJPH writes only from 0.10 on; built against such a
    version (and ``tlm=True``) the codestream carries TLM and tile-parts per resolution and
    meets .202. :func:`read_header` tells which one a given codestream meets.

    ``checksum=True`` adds a COM marker segment holding the CRC-32C of the rest of the
    codestream; other decoders ignore it, ours verifies it so corruption is reported.
    ``color_transform`` applies the reversible colour transform to 3-sample images (DICOM
    then calls them YBR_RCT); without it they stay RGB.
    """
    arr = _prepare(image, 0)
    bits, lv, bw, bh = _settings(arr, 0, bits_stored, levels, block_size, progression)
    return native.encode(arr, bits, lv, bw, bh, progression, bool(color_transform), bool(tlm), bool(checksum))


def encode_batch(
    volume,
    *,
    bits_stored: Optional[int] = None,
    levels: Optional[int] = None,
    block_size: Tuple[int, int] = DEFAULT_BLOCK,
    progression: str = "RPCL",
    color_transform: bool = False,
    tlm: bool = True,
    checksum: bool = True,
    num_threads: Optional[int] = None,
) -> List[bytes]:
    """Encode each frame of a (frames, rows, columns[, 3]) array; one codestream per frame.

    Frames are encoded on ``num_threads`` C++ threads (default: all cores) with the GIL
    released. Settings as in :func:`imencode_jph`.
    """
    arr = _prepare(volume, 1)
    bits, lv, bw, bh = _settings(arr, 1, bits_stored, levels, block_size, progression)
    return native.encode_batch(
        arr, bits, lv, bw, bh, progression, bool(color_transform), bool(tlm), bool(checksum),
        thread_count(num_threads),
    )
