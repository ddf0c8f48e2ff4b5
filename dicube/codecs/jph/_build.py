"""Which OpenJPH the extension was built against and runs on (``build_info()``)."""
from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Optional

from ._info import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL
from ._native import native

_X86 = ("generic", "MMX", "SSE", "SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "AVX2",
        "AVX2+FMA", "AVX-512")
_ARM = ("generic", "NEON", "SVE", "SVE2")


@dataclass(frozen=True)
class BuildInfo:
    """Facts about the OpenJPH behind ``dicube._native``.

    ``openjph_version`` is the version compiled against (from ``ojph_version.h``);
    ``runtime_version`` the one in the file name of the library actually loaded (OpenJPH has
    no run-time version call), None when the name carries none. ``tlm`` says whether our
    codestreams carry TLM markers and tile-parts per resolution, hence which DICOM syntax
    they meet (``transfer_syntax``: .202 with TLM, .201 without). ``simd`` is the CPU
    extension level OpenJPH detected (its SIMD paths are used up to it when compiled in).
    """

    openjph_version: str
    runtime_version: Optional[str]
    library: Optional[str]
    tlm: bool
    transfer_syntax: str
    simd: Optional[str]
    assert_guard: str

    @property
    def runtime_matches(self) -> bool:
        """The loaded library's version agrees with the compiled one, as far as its file name
        tells (a bundled copy may be named after its soname only, e.g. ``.so.0.9``)."""
        if self.runtime_version is None:
            return False
        parts = self.runtime_version.split(".")
        return self.openjph_version.split(".")[:len(parts)] == parts

    def to_dict(self) -> dict:
        return asdict(self)


def _simd_name(level: Optional[int]) -> Optional[str]:
    if level is None:
        return None
    machine = platform.machine().lower()
    names = _X86 if machine in ("x86_64", "amd64", "i386", "i686") else \
        _ARM if machine in ("aarch64", "arm64") else ()
    return names[level] if 0 <= level < len(names) else f"level {level}"


def _runtime_version(library: Optional[str]) -> Optional[str]:
    if not library:
        return None
    # libopenjph.so.0.9.0 here; libopenjph-<hash>.so.0.9 in a wheel repaired by auditwheel.
    m = re.search(r"libopenjph[^/]*?\.so\.(\d+(?:\.\d+){0,2})$", os.path.realpath(library))
    return m.group(1) if m else None


@lru_cache(maxsize=None)
def build_info() -> BuildInfo:
    """What OpenJPH dicube's codec uses: version, TLM (.202) support, SIMD level, library."""
    library = native.openjph_loaded_library or native.openjph_library or None
    return BuildInfo(
        openjph_version=native.openjph_version,
        runtime_version=_runtime_version(library),
        library=os.path.realpath(library) if library else None,
        tlm=bool(native.has_tlm),
        transfer_syntax=HTJ2K_LOSSLESS_RPCL if native.has_tlm else HTJ2K_LOSSLESS,
        simd=_simd_name(native.cpu_ext_level),
        assert_guard=native.assert_guard,
    )
