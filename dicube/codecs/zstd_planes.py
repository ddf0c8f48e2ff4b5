"""The "zstd" frame codec of .dcbs: each frame's samples split into byte planes (plane k
holds byte k, least significant first, of every sample), then one zstd frame.

Lossless for 8/16/32-bit integer samples. It decodes several times faster than HTJ2K
and compresses less (CT: about 2.3x raw against 3.4x): a choice for training copies
of an archive, where decode speed is what counts. Frames are decoded by
:func:`dicube.codecs.jph.decode_regions` / ``decode_file_regions`` with
``codec=ZSTD_PLANES``.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ._native_regions import region_decoders
from .jph._native import native
from .jph._options import SUPPORTED_DTYPES, thread_count
from ..exceptions import CodecError

#: Frame codec number in the .dcbs header (dicube.storage.format.CODEC_ZSTD_PLANES).
ZSTD_PLANES = 3


def encode_planes_batch(volume: np.ndarray, *, level: int = -1,
                        num_threads: Optional[int] = None) -> List[bytes]:
    """Encode a (frames, rows, columns[, samples]) integer volume, one zstd frame per image.

    The default level -1 (no Huffman stage) decodes about 1.5x faster than level 3 on CT
    for files about 3% larger; higher levels compress a little more, decode no faster.
    """
    vol = np.ascontiguousarray(volume)
    if vol.dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise CodecError(f"zstd byte planes hold 8, 16 or 32-bit integers, not {vol.dtype}")
    vol = vol.astype(vol.dtype.newbyteorder("="), copy=False)
    return native.encode_planes_batch(vol, level, thread_count(num_threads))


# -- the frame codec interface of dicube.codecs.registry (container codec 3) ----------
CODEC_ID = ZSTD_PLANES
NAME = "zstd-planes"
SAVE_NAME = "zstd"
FALLBACK = 2  # raw zstd: floats
CHECKS_CRCS = True


def encode(volume, bits_stored, num_threads):
    if volume.dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
        return None
    return encode_planes_batch(volume, num_threads=num_threads), 0


decode, decode_file = region_decoders(CODEC_ID)


header = None  # frames are not codestreams DICOM knows


def transfer_syntax(facts):
    return None
