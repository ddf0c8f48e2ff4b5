"""What a codestream's main header says, and which DICOM transfer syntax it meets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ._native import native
from ._options import MAX_BASE_RESOLUTION

HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"


@dataclass(frozen=True)
class CodestreamInfo:
    """Main-header facts of one JPEG 2000 / HTJ2K codestream."""

    rows: int
    columns: int
    components: int
    bits_stored: int
    signed: bool
    uniform_components: bool
    tiles: int
    levels: int
    block_size: Tuple[int, int]
    block_style: int
    progression: str
    layers: int
    color_transform: bool
    reversible: bool
    high_throughput: bool
    tlm: bool
    tlm_tile_parts: int
    checksum: Optional[int]
    header_length: int

    @property
    def dtype(self) -> np.dtype:
        """The numpy type that holds the samples: smallest of 8/16/32 bits, with the sign."""
        size = 1 if self.bits_stored <= 8 else 2 if self.bits_stored <= 16 else 4
        return np.dtype(f"{'i' if self.signed else 'u'}{size}")

    @property
    def shape(self) -> Tuple[int, ...]:
        if self.components == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.components)

    @property
    def transfer_syntax(self) -> Optional[str]:
        """The most specific DICOM HTJ2K transfer syntax UID this codestream meets, or None.

        - .202 (HTJ2K with RPCL options, lossless): reversible, RPCL progression, TLM marker
          present, and enough levels that the lowest resolution is at most 64 pixels
          (PS3.5 section 10.18).
        - .201 (HTJ2K lossless only): a reversible HT codestream.
        - .203 (HTJ2K): any HT codestream.
        """
        if not self.high_throughput:
            return None
        if not self.reversible:
            return HTJ2K
        base = max(self.rows, self.columns) >> self.levels if self.levels < 32 else 0
        if self.progression == "RPCL" and self.tlm and base <= MAX_BASE_RESOLUTION:
            return HTJ2K_LOSSLESS_RPCL
        return HTJ2K_LOSSLESS


def read_header(data) -> CodestreamInfo:
    """Parse the main header of a codestream (bytes-like); raises CodecError when malformed."""
    return CodestreamInfo(**native.header(data))
