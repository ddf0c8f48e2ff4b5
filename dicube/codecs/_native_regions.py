"""The ``decode`` / ``decode_file`` pair of the registry interface for codecs the native
extension decodes itself (HTJ2K, zstd byte planes), bound to one container codec id."""
from __future__ import annotations

from .jph import decode_file_regions, decode_regions


def region_decoders(codec_id: int):
    """(decode, decode_file) for frames of container codec ``codec_id``."""
    def decode(buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True) -> None:
        decode_regions(buffer, offsets, lengths, out, crcs=crcs, num_threads=num_threads,
                       verify=verify, codec=codec_id)

    def decode_file(fd, base, offsets, lengths, out, *, crcs, num_threads=None) -> bool:
        return decode_file_regions(fd, base, offsets, lengths, out, crcs=crcs,
                                   num_threads=num_threads, codec=codec_id)

    return decode, decode_file
