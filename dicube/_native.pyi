"""Types of dicube's compiled extension (bindings in cpp/module.cpp).

Written by hand; tests/test_native_stub.py checks that it declares exactly the module's
attributes and argument names and that mypy accepts the facade's calls through it.
Frames are HTJ2K codestreams or, where a ``codec`` argument says 3, zstd byte planes.
"""
from typing import Any, Literal, Optional, Sequence

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

#: OpenJPH version compiled against (ojph_version.h).
openjph_version: str
#: OpenJPH library file CMake linked against ("" when unknown).
openjph_library: str
#: OpenJPH library file loaded in this process ("" when unknown).
openjph_loaded_library: str
#: OpenJPH's CPU extension level (its X86_/ARM_CPU_EXT_LEVEL_* values), None without the call.
cpu_ext_level: Optional[int]
#: Whether codestreams carry TLM markers and tile-parts per resolution (OpenJPH > 0.9).
has_tlm: bool
max_bits_stored: int
assert_guard: Literal["no-asserts", "installed", "failed"]

def encode(image: npt.NDArray[Any], bits_stored: int, levels: int, block_width: int, block_height: int,
           progression: str, color_transform: bool, tlm: bool, checksum: bool) -> bytes: ...
def encode_batch(volume: npt.NDArray[Any], bits_stored: int, levels: int, block_width: int,
                 block_height: int, progression: str, color_transform: bool, tlm: bool, checksum: bool,
                 num_threads: int) -> list[bytes]: ...
def encode_planes_batch(volume: npt.NDArray[Any], level: int, num_threads: int) -> list[bytes]: ...
def header(data: Buffer) -> dict[str, Any]: ...
def profile_violation(data: Buffer) -> Optional[str]: ...
def reduced_size(data: Buffer, skip_levels: int) -> tuple[int, int]: ...
def decode_batch(codestreams: Sequence[Buffer], out: npt.NDArray[Any], skip_levels: int, verify: bool,
                 resilient: bool, num_threads: int, isolate: int) -> None: ...
def decode_regions(buffer: Buffer, offsets: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint64],
                   crcs: Optional[npt.NDArray[np.uint32]], out: npt.NDArray[Any], skip_levels: int,
                   verify: bool, resilient: bool, num_threads: int, codec: int) -> None: ...
def decode_file_regions(fd: int, base: int, offsets: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint64],
                        crcs: Optional[npt.NDArray[np.uint32]], out: npt.NDArray[Any], skip_levels: int,
                        num_threads: int, codec: int) -> bool: ...
def crc32c(data: Buffer, crc: int = 0) -> int: ...
def json_object_spans(data: Buffer, start: int) -> Optional[list[int]]: ...
