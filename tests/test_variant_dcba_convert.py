"""``dicube convert --to dcbs|dcba``: DICOM folders to either variant, and exact conversion
of dicube files between them (frames re-encoded and compared on the written file,
metadata sections copied byte for byte; .dcbs -> .dcba -> .dcbs gives the file back)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from cli_helpers import run_cli
from pydicom.data import get_testdata_file

import dicube
from dicube.codecs import jxl
from dicube.commands.convert import convert_cube
from dicube.exceptions import CodecError
from dicube.storage.reader import DcbsReader
from tests.dcba_cases import sample_10_files

pytest.importorskip("imagecodecs")

METADATA = (b"META", b"SPAC", b"PIXH", b"QCRP")


@pytest.fixture(scope="module")
def dcbs_10(sample_10):
    return sample_10_files(sample_10)["s"]


@pytest.fixture(scope="module")
def dcbs_3(dcbs_10, tmp_path_factory):
    """Three slices of sample_10 (where a whole series adds nothing but time)."""
    path = tmp_path_factory.mktemp("conv3") / "ct3.dcbs"
    dicube.save(dicube.load(dcbs_10, frames=[0, 4, 9]), path)
    return path


def _sections(path) -> dict:
    with DcbsReader(path) as r:
        return {k: r.section_bytes(k) for k in r.sections if k in METADATA}


def test_dcbs_dcba_dcbs_round_trip_is_exact(dcbs_10, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", dcbs_10, "-o", tmp_path / "a", "--to", "dcba")
    assert code == 0, err
    a = tmp_path / "a" / "ct.dcba"
    assert a.read_bytes()[:8] == b"DCMCUBEA" and "1 of 1 series converted" in out
    code, _, err = run_cli(capsys, "convert", a, "-o", tmp_path / "s")
    assert code == 0, err
    back = tmp_path / "s" / "ct.dcbs"
    assert back.read_bytes() == dcbs_10.read_bytes()  # the very file
    assert _sections(a) == _sections(dcbs_10) and len(_sections(a)) == 4
    with DcbsReader(a) as r:
        assert r.frame_codec == 4 and r.section_json(b"INFO")["codec"]["name"] == "jxl"
    img_a, img_s = dicube.load(a), dicube.load(dcbs_10)
    np.testing.assert_array_equal(img_a.raw_image, img_s.raw_image)
    ea = dicube.save_to_dicom_folder(img_a, tmp_path / "ea")
    es = dicube.save_to_dicom_folder(img_s, tmp_path / "es")
    assert [open(f, "rb").read() for f in ea] == [open(f, "rb").read() for f in es]


def test_folder_to_dcba(sample_10, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in sorted(sample_10.iterdir())[:3]:
        shutil.copy(f, folder)
    code, out, err = run_cli(capsys, "convert", folder, "-o", tmp_path / "o", "--to", "dcba")
    assert code == 0, err
    (path,) = (tmp_path / "o").glob("*.dcba")
    assert path.read_bytes()[:8] == b"DCMCUBEA"
    np.testing.assert_array_equal(dicube.load(path).raw_image,
                                  dicube.load_from_dicom_folder(folder).raw_image)


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_small_odd.dcm"])
def test_signed_and_colour_round_trip(name, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder)
    s = tmp_path / "x.dcbs"
    dicube.save(dicube.load_from_dicom_folder(folder), s)
    convert_cube(s, tmp_path / "x.dcba", "a")
    convert_cube(tmp_path / "x.dcba", tmp_path / "y.dcbs", "s")
    np.testing.assert_array_equal(dicube.load(tmp_path / "y.dcbs").raw_image,
                                  dicube.load(s).raw_image)
    assert _sections(tmp_path / "y.dcbs") == _sections(s) == _sections(tmp_path / "x.dcba")
    if name == "CT_small.dcm":
        assert (tmp_path / "y.dcbs").read_bytes() == s.read_bytes()
    # (3x3 RGB: OpenJPH 0.9 codes the empty packets of such a tiny image differently once
    # a codestream was decoded in the process: other bytes, same pixels)


def test_zstd_and_legacy_sources(dcbs_3, legacy_dcbs, tmp_path):
    z = tmp_path / "z.dcbs"
    convert_cube(dcbs_3, z, "s", codec="zstd")
    with DcbsReader(z) as r:
        assert r.frame_codec == 3
    convert_cube(z, tmp_path / "z.dcba", "a")
    np.testing.assert_array_equal(dicube.load(tmp_path / "z.dcba").raw_image,
                                  dicube.load(dcbs_3).raw_image)
    assert _sections(tmp_path / "z.dcba") == _sections(dcbs_3)
    with pytest.warns(UserWarning):  # what dicube 0.3.0 lost, as load() says
        convert_cube(legacy_dcbs, tmp_path / "l.dcbs", "s")  # version 1: through load/save
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(dicube.load(tmp_path / "l.dcbs").raw_image,
                                      dicube.load(legacy_dcbs).raw_image)


def test_written_file_is_checked(dcbs_3, tmp_path, monkeypatch):
    """Frames that do not decode to the source's are refused before the output appears."""
    real = jxl.archive_frames

    def wrong(vol, bits, threads, **kw):
        return real(vol + 1, bits, threads, **kw)

    monkeypatch.setattr(jxl, "archive_frames", wrong)
    with pytest.raises(CodecError, match="do not decode to the source") as e:
        convert_cube(dcbs_3, tmp_path / "bad.dcba", "a")
    assert "bad.dcba" in str(e.value)
    assert not (tmp_path / "bad.dcba").exists()


def test_options_checked(dcbs_10, tmp_path, capsys):
    code, _, err = run_cli(capsys, "convert", dcbs_10, "-o", tmp_path, "--to", "dcba",
                           "--codec", "zstd")
    assert code == 2 and "--codec applies to --to dcbs" in err
    code, _, err = run_cli(capsys, "convert", dcbs_10, "-o", tmp_path, "--bound", "2")
    assert code == 2 and "--bound applies to --to dcbl" in err
    code, _, err = run_cli(capsys, "convert", dcbs_10, "-o", dcbs_10.parent, "--to", "dcbs")
    assert code == 1 and "would replace the source" in err
    assert not list(tmp_path.iterdir())


def test_to_dcbl_and_back_refused(dcbs_3, tmp_path, capsys):
    code, _, err = run_cli(capsys, "convert", dcbs_3, "-o", tmp_path, "--to", "dcbl", "--bound", "2")
    assert code == 0, err
    lossy = tmp_path / "ct3.dcbl"
    assert lossy.read_bytes()[:8] == b"DCMCUBEL"
    src = dicube.load(dcbs_3).raw_image.astype(int)
    assert np.abs(dicube.load(lossy).raw_image.astype(int) - src).max() <= 2
    code, _, err = run_cli(capsys, "convert", lossy, "-o", tmp_path / "a", "--to", "dcba")
    assert code == 1 and "lossy" in err and "ct3.dcbl" in err
