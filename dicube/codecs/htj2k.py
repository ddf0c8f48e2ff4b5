"""HTJ2K frames (container codec 1) behind the registry interface (:mod:`.registry`).

Lossless HTJ2K codestreams from OpenJPH (:mod:`dicube.codecs.jph`); served as DICOM
without re-encoding.
"""
from __future__ import annotations

from typing import Optional

from ..exceptions import CodecError
from ._native_regions import region_decoders
from .jph import encode_batch, read_header
from .jph._options import SUPPORTED_DTYPES

CODEC_ID = 1
NAME = "htj2k"
SAVE_NAME = "htj2k"
FALLBACK = 3  # zstd byte planes: types or values HTJ2K cannot hold
CHECKS_CRCS = True
#: JPEG 2000 Lossless: a reversible codestream that is not HT (never written by dicube).
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def encode(volume, bits_stored: Optional[int], num_threads: Optional[int]):
    dt = volume.dtype.newbyteorder("=")
    if dt not in SUPPORTED_DTYPES:
        return None
    for bits in ([bits_stored] if bits_stored else []) + [None]:
        try:
            frames = encode_batch(volume, bits_stored=bits, num_threads=num_threads)
        except CodecError:
            continue
        return frames, bits or (dt.itemsize * 8 if dt.itemsize < 4 else 0)
    return None


decode, decode_file = region_decoders(CODEC_ID)


def header(frame):
    """The CodestreamInfo of one stored codestream."""
    return read_header(frame)


def transfer_syntax(info) -> Optional[str]:
    return info.transfer_syntax or (JPEG2000_LOSSLESS if info.reversible else None)
