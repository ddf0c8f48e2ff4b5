"""Exporting a .dcba: by default exactly what a .dcbs of the same series exports (the
source's syntax, read by pydicom and GDCM, checked by dciodvfy); JPEG XL Lossless (.110)
only on request, decoded back exactly by imagecodecs."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from cli_helpers import run_cli
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_fragments
from streaming_cases import dciodvfy_errors, gdcm_pixels

import dicube
from dicube.exceptions import UnsupportedTransferSyntaxError
from tests.dcba_cases import sample_10_files

imagecodecs = pytest.importorskip("imagecodecs")

JXL = "1.2.840.10008.1.2.4.110"


@pytest.fixture(scope="module")
def pair_10(sample_10):
    f = sample_10_files(sample_10)
    return f["a"], f["s"]


def _fragments(path) -> list:
    return list(generate_fragments(pydicom.dcmread(path).PixelData))[1:]


def test_default_export_equals_dcbs_export(pair_10, sample_10, tmp_path):
    a = dicube.save_to_dicom_folder(dicube.load(pair_10[0]), tmp_path / "a")
    s = dicube.save_to_dicom_folder(dicube.load(pair_10[1]), tmp_path / "s")
    assert len(a) == len(s) == 10
    for fa, fs in zip(a, s):
        assert open(fa, "rb").read() == open(fs, "rb").read()
    src = sample_10 / dicube.load_meta(pair_10[0]).filenames[3]
    ds = pydicom.dcmread(a[3])
    assert ds.file_meta.TransferSyntaxUID == pydicom.dcmread(src).file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(src).pixel_array)
    np.testing.assert_array_equal(gdcm_pixels(a[3]), pydicom.dcmread(src).pixel_array)
    assert not dciodvfy_errors(a[3]) - dciodvfy_errors(src)


def test_jxl_export_on_request(pair_10, tmp_path):
    img = dicube.load(pair_10[0], frames=[0, 5, 9])
    out = dicube.save_to_dicom_folder(img, tmp_path / "j", transfer_syntax=JXL)
    assert out.transfer_syntaxes == [JXL] * 3
    for k in (0, 2):
        ds = pydicom.dcmread(out[k])
        assert ds.file_meta.TransferSyntaxUID == JXL
        assert (ds.BitsStored, ds.PixelRepresentation) == (16, 0)
        (frag,) = _fragments(out[k])
        np.testing.assert_array_equal(imagecodecs.jpegxl_decode(frag), img.raw_image[k])


def test_jxl_export_of_signed_ct_keeps_hu(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder)
    dicube.save(dicube.load_from_dicom_folder(folder), tmp_path / "x.dcba")
    out = dicube.save_to_dicom_folder(dicube.load(tmp_path / "x.dcba"), tmp_path / "j",
                                      transfer_syntax=JXL)
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(out[0])
    assert ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) == -1024 - 32768
    (frag,) = _fragments(out[0])
    hu = imagecodecs.jpegxl_decode(frag) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(hu, src.pixel_array * float(src.RescaleSlope)
                                  + float(src.RescaleIntercept))


def test_jxl_export_refused_where_it_cannot_be_said(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), folder)  # int16 without a rescale
    img = dicube.load_from_dicom_folder(folder)
    with pytest.raises(UnsupportedTransferSyntaxError, match="RescaleIntercept"):
        dicube.save_to_dicom_folder(img, tmp_path / "j", transfer_syntax=JXL)


def test_cli_export_jxl(pair_10, tmp_path, capsys):
    small = tmp_path / "two.dcba"
    dicube.save(dicube.load(pair_10[0], frames=[3, 4]), small)
    code, _, err = run_cli(capsys, "export", str(small), str(tmp_path / "o"), "-t", JXL)
    assert code == 0, err
    files = sorted((tmp_path / "o").glob("*"))
    assert len([f for f in files if not f.name.startswith(".")]) == 2
    assert all(pydicom.dcmread(f).file_meta.TransferSyntaxUID == JXL
               for f in files if not f.name.startswith("."))
