"""HTJ2K (High-Throughput JPEG 2000) lossless codec, built on OpenJPH.

>>> from dicube.codecs.jph import imencode_jph, imdecode_jph
>>> data = imencode_jph(image, bits_stored=12)
>>> assert (imdecode_jph(data) == image).all()
"""
from ._build import BuildInfo, build_info
from ._decode import decode_batch, decode_file_regions, decode_regions, imdecode_jph
from ._encode import encode_batch, imencode_jph
from ._info import HTJ2K, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, CodestreamInfo, read_header
from ._native import native as _native

#: Version of the OpenJPH library the extension was built against.
OPENJPH_VERSION: str = _native.openjph_version
#: Whether this build writes TLM markers (OpenJPH newer than 0.9), needed for HTJ2K .202.
HAS_TLM: bool = _native.has_tlm


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of a bytes-like object, continuing from ``crc``."""
    return _native.crc32c(data, crc)


__all__ = [
    "imencode_jph",
    "imdecode_jph",
    "encode_batch",
    "decode_batch",
    "decode_regions",
    "decode_file_regions",
    "read_header",
    "CodestreamInfo",
    "crc32c",
    "build_info",
    "BuildInfo",
    "OPENJPH_VERSION",
    "HAS_TLM",
    "HTJ2K",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
]
