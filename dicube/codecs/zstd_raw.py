"""Raw zstd frames (container codec 2): each frame's little-endian samples, one zstd frame.

The codec of sample types no other codec holds (floats); see :mod:`.registry`.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import CodecError

CODEC_ID = 2
NAME = "zstd"
SAVE_NAME = None
FALLBACK = None
CHECKS_CRCS = False
decode_file = None


def encode(volume, bits_stored, num_threads):
    import zstandard

    dt = volume.dtype.newbyteorder("=")
    cctx = zstandard.ZstdCompressor(level=3)
    le = np.ascontiguousarray(volume, dtype=dt.newbyteorder("<"))
    return [cctx.compress(le[i].tobytes()) for i in range(len(le))], dt.itemsize * 8


def decode(buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True) -> None:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    frame_bytes = out[0].nbytes
    le = out.dtype.newbyteorder("<")
    mv = memoryview(buffer)
    for k, (o, ln) in enumerate(zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist())):
        try:
            # decompress() trusts a content size in the frame header over max_output_size
            size = zstandard.get_frame_parameters(mv[o:o + ln]).content_size
            if size not in (frame_bytes, zstandard.CONTENTSIZE_UNKNOWN):
                raise CodecError(f"frame {k} declares {size} bytes, expected {frame_bytes}")
            raw = dctx.decompress(mv[o:o + ln], max_output_size=frame_bytes)
        except zstandard.ZstdError as exc:
            raise CodecError(f"frame {k} does not decompress: {exc}") from exc
        if len(raw) != frame_bytes:
            raise CodecError(f"frame {k} holds {len(raw)} bytes, expected {frame_bytes}")
        out[k] = np.frombuffer(raw, le).reshape(out.shape[1:])


header = None  # frames are not codestreams DICOM knows


def transfer_syntax(facts):
    return None
