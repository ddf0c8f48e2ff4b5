"""Robust reading: implicit VR files whose private elements do not fit the dictionary VR (the
Philips CT series written as Implicit VR Little Endian) and discovery past damaged files."""
from __future__ import annotations

import os

import numpy as np
from cli_helpers import run_cli

import dicube

IMPLICIT = "1.2.840.10008.1.2"


def test_implicit_vr_series_round_trip(sample_10, tmp_path, capsys):
    ref = dicube.load_from_dicom_folder(sample_10)
    first = tmp_path / "implicit"
    dicube.save_to_dicom_folder(ref, first, transfer_syntax=IMPLICIT)
    # (01F1,1026) holds DS text, the private dictionary says FD: kept as raw bytes (UN)
    img = dicube.load_from_dicom_folder(first)
    assert np.array_equal(img.raw_image, ref.raw_image)
    assert img.dicom_meta.slice_json(0)["01F11026"]["vr"] == "UN"
    again = tmp_path / "again"
    dicube.save_to_dicom_folder(img, again, transfer_syntax=IMPLICIT)
    import pydicom

    for f in sorted(first.glob("I*")):
        a, b = pydicom.dcmread(f), pydicom.dcmread(again / f.name)
        assert a.get_item(0x01F11026).value == b.get_item(0x01F11026).value == b"0.2 "  # raw
        assert np.array_equal(a.pixel_array, b.pixel_array)
    # it converts like any other series (not with the root: `again` holds other files
    # under the same SOPInstanceUIDs, which convert refuses)
    rc, _, err = run_cli(capsys, "convert", first, "-o", tmp_path / "dcbs", "-q")
    assert rc == 0, err


def test_discovery_skips_a_file_that_breaks_the_parser(sample_10, tmp_path, monkeypatch):
    """One file the parser fails on (any exception) does not hide the other series."""
    import shutil

    from dicube.dicom import dicom_io

    root = tmp_path / "root"
    shutil.copytree(sample_10, root / "good")
    (root / "odd").mkdir()
    (root / "odd" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    real = dicom_io.parse_bytes

    def parse(path, buf):
        if path.endswith("x.dcm"):
            raise RuntimeError("damaged")
        return real(path, buf)

    monkeypatch.setattr(dicom_io, "parse_bytes", parse)
    found = dicom_io.discover_series(root)
    assert [s.num_files for s in found if s.has_pixels] == [10]
    # it looks like DICOM ("DICM" at 128): listed as unreadable, not counted as non-DICOM
    assert found.num_non_dicom == 0
    assert [(os.path.basename(f.path), f.reason) for f in found.unreadable] == [
        ("x.dcm", "cannot parse: RuntimeError: damaged")]
