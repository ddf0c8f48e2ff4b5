"""Helpers of the streaming reader tests: .dcbs files of the shared series, their source
files by SOP Instance UID, independent decoders and the external DICOM tools."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cli_helpers import make_dcbs  # noqa: F401  (re-exported for the streaming tests)

from dicube.codecs.jph import HAS_TLM

#: The syntax this build's codestreams meet: .202 with TLM markers (OpenJPH > 0.9), else .201.
BUILD_HTJ2K_SYNTAX = "1.2.840.10008.1.2.4.202" if HAS_TLM else "1.2.840.10008.1.2.4.201"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def sources_by_uid(folder: Path) -> dict:
    """SOP Instance UID -> (file bytes, pydicom dataset) of every file of a series folder."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        data = p.read_bytes()
        ds = pydicom.dcmread(p)
        out[str(ds.SOPInstanceUID)] = (data, ds)
    return out


def read(data: bytes, plugin: str | None = None) -> pydicom.Dataset:
    from io import BytesIO

    ds = pydicom.dcmread(BytesIO(data))
    if plugin:
        ds.pixel_array_options(decoding_plugin=plugin)
    return ds


def body(data: bytes) -> bytes:
    """The data set of a Part 10 file: the bytes after the file meta information."""
    assert data[128:132] == b"DICM"
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    (length,) = struct.unpack_from("<I", data, 140)
    return data[144 + length:]


def split_encapsulated(rest: bytes) -> tuple[bytes, list[bytes]]:
    """(Basic Offset Table, fragments) of encapsulated pixel data items that end with the
    sequence delimiter and nothing after it."""
    items, pos = [], 0
    while True:
        group, elem, length = struct.unpack_from("<HHI", rest, pos)
        pos += 8
        if (group, elem) == (0xFFFE, 0xE0DD):
            assert length == 0 and pos == len(rest), "bytes after the sequence delimiter"
            break
        assert (group, elem) == (0xFFFE, 0xE000), f"not an item: {group:04X},{elem:04X}"
        items.append(rest[pos:pos + length])
        pos += length
    return items[0], items[1:]


def gdcm_pixels(path: Path) -> np.ndarray:
    """Pixels decoded by GDCM (an independent DICOM toolkit)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM cannot read {path}"
    image = reader.GetImage()
    buf = image.GetBuffer().encode("utf-8", "surrogateescape")
    pf = image.GetPixelFormat()
    dt = f"<{'i' if pf.GetPixelRepresentation() else 'u'}{pf.GetBitsAllocated() // 8}"
    cols, rows = image.GetDimension(0), image.GetDimension(1)
    return np.frombuffer(buf, dt).reshape(rows, cols)


def require_tool(name: str) -> str:
    """Path of an external program; fails under CI when missing, else skips."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")  # Orthanc
    if path is None:
        msg = f"{name} not found (Debian packages in .ci/apt-packages-test.txt)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          errors="replace", timeout=300, **kw)


def dciodvfy_errors(path: Path) -> set[str]:
    """dciodvfy's error lines for a file, normalized (whitespace)."""
    res = run([require_tool("dciodvfy"), path])
    lines = (res.stdout + res.stderr).splitlines()
    return {" ".join(line.split()) for line in lines if "Error" in line}
