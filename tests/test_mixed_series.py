"""Series whose files cannot share one volume (issue 12 item 8), with pydicom's files.

pydicom's SC_rgb_* files share one SeriesInstanceUID while storing different images: a
2-frame RGB file beside 1-frame YBR_FULL ones made ``convert`` fail with "ID1_OT_S1.dcbs:
2 metadata slices for 3 frames", blaming the output. A multi-frame file in a series of
several files is now its own part; files that store pixels differently are refused,
naming them and the attribute."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import dicube
from dicube import discover_series, load_from_dicom_folder
from dicube.dicom.dicom_io import MULTI_FRAME
from dicube.exceptions import (DataConsistencyError, DicomReadError, InconsistentSeriesError,
                               MultipleSeriesError)

from cli_helpers import run_cli

TWO_FRAME_RGB = "SC_rgb_rle_2frame.dcm"
ONE_FRAME_YBR = "SC_rgb_jpeg_dcmtk.dcm"   # JPEG baseline, YBR_FULL, same series
ONE_FRAME_RGB = "SC_rgb_dcmtk_+eb+cr.dcm"  # JPEG baseline, RGB, same series


def _folder(tmp_path, name: str, files) -> str:
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        shutil.copy(get_testdata_file(f), folder / f)
    return os.fspath(folder)


def test_multi_frame_file_is_split_off(tmp_path):
    folder = _folder(tmp_path, "mixed", [TWO_FRAME_RGB, ONE_FRAME_YBR])
    found = discover_series(folder)
    assert len(found) == 2 and len({s.series_uid for s in found}) == 1
    parts = {os.path.basename(s.files[0]): s for s in found}
    assert parts[TWO_FRAME_RGB].split_by == MULTI_FRAME
    with pytest.raises(MultipleSeriesError) as exc:
        load_from_dicom_folder(folder)
    assert TWO_FRAME_RGB in str(exc.value) and ONE_FRAME_YBR in str(exc.value)
    assert "NumberOfFrames" in str(exc.value)
    for name, part in parts.items():
        img = load_from_dicom_folder(folder, series_uid=part.key)
        alone = load_from_dicom_folder(get_testdata_file(name))
        assert img.raw_image.shape[0] == (2 if name == TWO_FRAME_RGB else 1)
        assert np.array_equal(img.raw_image, alone.raw_image)


def test_convert_writes_each_part(capsys, tmp_path):
    """The issue's case: both files convert; no error blames an output file."""
    folder = _folder(tmp_path, "mixed", [TWO_FRAME_RGB, ONE_FRAME_YBR])
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert", folder, "-o", out, "-q")
    assert rc == 0, err
    assert "metadata slices" not in err
    loaded = sorted(dicube.load(p).raw_image.shape[0] for p in out.glob("*.dcbs"))
    assert loaded == [1, 2]


def test_different_photometric_interpretation_is_refused(capsys, tmp_path, sample_10):
    """RGB and YBR_FULL slices of one series: stacking them would mix colour spaces
    silently. A typed error names the files and the attribute; convert reports it for
    that series and converts the others."""
    folder = _folder(tmp_path, "rgb_ybr", [ONE_FRAME_RGB, ONE_FRAME_YBR])
    with pytest.raises(InconsistentSeriesError) as exc:
        load_from_dicom_folder(folder)
    err = exc.value
    assert isinstance(err, DicomReadError) and isinstance(err, DataConsistencyError)
    assert err.path == folder
    assert err.attributes == {"PhotometricInterpretation": {
        "RGB": [os.path.join(folder, ONE_FRAME_RGB)], "YBR_FULL": [os.path.join(folder, ONE_FRAME_YBR)]}}
    assert ONE_FRAME_RGB in str(err) and ONE_FRAME_YBR in str(err)
    out = tmp_path / "out"
    rc, _, stderr = run_cli(capsys, "convert", folder, sample_10, "-o", out, "-q")
    assert rc == 1
    (line,) = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert line.startswith(f"dicube convert: error: {folder}: ")
    assert "PhotometricInterpretation" in line and ONE_FRAME_RGB in line and ONE_FRAME_YBR in line
    (written,) = out.glob("*.dcbs")
    assert dicube.load(written).raw_image.shape[0] == 10


def test_different_pixel_representation_names_the_file(tmp_path, sample_10):
    """One CT slice rewritten as signed: refused before stacking, naming that file."""
    folder = tmp_path / "ct"
    shutil.copytree(sample_10, folder)
    odd = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(odd)
    ds.PixelRepresentation = 1 - int(ds.PixelRepresentation)
    ds.save_as(odd)
    with pytest.raises(InconsistentSeriesError, match="PixelRepresentation") as exc:
        load_from_dicom_folder(folder)
    assert exc.value.files == sorted(os.fspath(p) for p in folder.iterdir())
    (value_of_odd,) = [v for v, fs in exc.value.attributes["PixelRepresentation"].items()
                       if fs == [os.fspath(odd)]]
    assert value_of_odd == str(ds.PixelRepresentation)


def test_pydicom_test_root_has_no_frame_count_error(capsys, tmp_path):
    """``convert`` of pydicom's whole test-file folder: every failure names its source,
    none is the old "N metadata slices for M frames" about an output file."""
    root = os.path.dirname(get_testdata_file("CT_small.dcm"))
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert", root, "-o", out, "-q", "--skip-unreadable")
    errors = [ln for ln in err.splitlines() if ln.startswith("dicube convert: error:")]
    assert errors and rc == 1
    assert not [ln for ln in errors if "metadata slices" in ln or os.fspath(out) in ln]
    assert all(ln.startswith(f"dicube convert: error: {root}") for ln in errors)
    assert len(list(out.glob("*.dcbs"))) > 20


def test_convert_parts_in_different_folders(capsys, tmp_path):
    """Single-frame files in one folder, the multi-frame file of the same series in another:
    the part numbered under the root ("<uid>#1") is found again in its own folder."""
    root = tmp_path / "root"
    root.mkdir()
    _folder(root, "stills", [ONE_FRAME_YBR, "SC_rgb_dcmtk_+eb+cy+n1.dcm"])
    _folder(root, "cine", [TWO_FRAME_RGB])
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert", root, "-o", out, "-q")
    assert rc == 0, err
    assert sorted(dicube.load(p).raw_image.shape[0] for p in out.glob("*.dcbs")) == [2, 2]
