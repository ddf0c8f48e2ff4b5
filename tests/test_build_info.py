"""build_info() and ``dicube info --build`` describe the OpenJPH really in use, and CMake's
configure step finds the same one, with its TLM probe linked against it."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from dicube.codecs.jph import (
    HAS_TLM,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    OPENJPH_VERSION,
    BuildInfo,
    build_info,
    imencode_jph,
    read_header,
)

ROOT = Path(__file__).resolve().parents[1]


def test_build_info_matches_the_loaded_library_and_the_codestreams():
    b = build_info()
    assert isinstance(b, BuildInfo)
    with pytest.raises(AttributeError):
        b.tlm = not b.tlm  # frozen
    assert b.openjph_version == OPENJPH_VERSION and re.fullmatch(r"\d+\.\d+\.\d+", b.openjph_version)
    # The library file is the one mapped into this process, and its version is the compiled one.
    maps = Path("/proc/self/maps").read_text()
    assert b.library and os.path.isabs(b.library) and b.library in maps
    assert b.runtime_version == b.openjph_version and b.runtime_matches
    # TLM support is what the encoder really does.
    info = read_header(imencode_jph(np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)))
    assert b.tlm is HAS_TLM is info.tlm
    assert b.transfer_syntax == info.transfer_syntax == (HTJ2K_LOSSLESS_RPCL if b.tlm else HTJ2K_LOSSLESS)
    assert b.assert_guard in ("installed", "no-asserts", "failed")


@pytest.mark.parametrize("name, version, matches", [
    ("libopenjph.so.0.9.0", "0.9.0", True),
    ("libopenjph-3f2a1b4c.so.0.9", "0.9", True),  # bundled by auditwheel under its soname
    ("libopenjph.so.0.31.0", "0.31.0", False),
    ("libopenjph.so", None, False),
])
def test_runtime_version_from_the_library_file_name(tmp_path, name, version, matches):
    from dicube.codecs.jph._build import _runtime_version

    path = tmp_path / name
    path.write_bytes(b"")
    assert _runtime_version(str(path)) == version
    b = dataclasses.replace(build_info(), openjph_version="0.9.0", runtime_version=version)
    assert b.runtime_matches is matches


def test_simd_level_names_what_the_cpu_has():
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), "").split()
    simd = build_info().simd
    if "avx2" in flags:  # OpenJPH checks AVX2 (and FMA, AVX-512) through cpuid and the OS
        assert simd in ("AVX2", "AVX2+FMA", "AVX-512")
    elif "sse2" in flags:
        assert simd not in (None, "generic", "AVX2", "AVX2+FMA", "AVX-512")


def test_cli_info_build_text_and_json(capsys):
    b = build_info()
    rc, out, err = run_cli(capsys, "info", "--build")
    assert rc == 0 and err == ""
    assert f"OpenJPH               {b.openjph_version} (compiled against and loaded)" in out
    assert f"library               {b.library}\n" in out
    assert f"TLM markers           {'yes' if b.tlm else 'no'} (codestreams meet {b.transfer_syntax})" in out
    assert f"SIMD                  {b.simd}\n" in out
    rc, out, err = run_cli(capsys, "info", "--build", "--json")
    assert rc == 0 and json.loads(out) == b.to_dict()


def test_cli_info_needs_files_or_build(capsys):
    rc, out, err = run_cli(capsys, "info")
    assert (rc, out) == (2, "") and err == "dicube info: error: give one or more FILEs, or --build\n"


def test_cmake_configure_reports_the_openjph_and_its_tlm_support(tmp_path):
    """The TLM probe links against OpenJPH (it compiled without the library before, so it
    failed with every version) and the configure log says what was found."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed to build dicube"
    import pybind11

    b = build_info()
    env = dict(os.environ)
    prefix = Path(b.library).parent.parent
    if not str(prefix).startswith("/usr"):  # a newer OpenJPH installed under its own prefix
        env["CMAKE_PREFIX_PATH"] = str(prefix)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    proc = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path), *generator, f"-DPython_EXECUTABLE={sys.executable}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.startswith("-- dicube: OpenJPH")]
    assert len(lines) == 1, proc.stdout
    m = re.fullmatch(r"-- dicube: OpenJPH (\S+) at (\S+); TLM markers: (yes|no) \(HTJ2K \.202 (yes|no)\)",
                     lines[0])
    assert m, lines[0]
    version, library, tlm, rpcl = m.groups()
    assert version == b.openjph_version
    assert os.path.realpath(library) == b.library
    assert tlm == rpcl == ("yes" if b.tlm else "no")
