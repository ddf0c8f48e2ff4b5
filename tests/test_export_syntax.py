"""Transfer syntaxes of DICOM exports: one that cannot be produced is an error naming what
is missing, never a silent fallback; ``-t source`` says which syntax it used instead."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from cli_helpers import run_cli, run_script
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array

import dicube
import dicube.dicom.export as de
from dicube.codecs.jph import HAS_TLM, build_info
from dicube.exceptions import UnsupportedTransferSyntaxError

EXPLICIT = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
HTJ2K = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"


@pytest.fixture(scope="module")
def dcbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syntax")

    def make(name: str):
        path = folder / f"{name}.dcbs"
        if not path.exists():
            dicube.save(dicube.load_from_dicom_folder(get_testdata_file(name)), path)
        return path
    return make


def _files(folder) -> list:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.exists() else []


def test_htj2k_rpcl_needs_tlm(dcbs, tmp_path, capsys):
    path = dcbs("MR_small.dcm")
    out = tmp_path / "rpcl"
    rc, stdout, err = run_cli(capsys, "export", path, out, "-t", "htj2k-rpcl")
    if HAS_TLM:
        assert rc == 0, err
        ds = pydicom.dcmread(_files(out)[0])
        assert ds.file_meta.TransferSyntaxUID == HTJ2K_RPCL
        return
    assert rc == 1 and stdout == ""
    assert f"{HTJ2K_RPCL} (High-Throughput JPEG 2000 with RPCL Options" in err
    assert "needs an OpenJPH that writes TLM markers (0.10 or newer)" in err
    assert f"this build has OpenJPH {build_info().openjph_version}" in err
    assert _files(out) == []  # refused before anything was written
    with pytest.raises(UnsupportedTransferSyntaxError, match="TLM"):
        dicube.save_to_dicom_folder(dicube.load(path), tmp_path / "lib", transfer_syntax=HTJ2K_RPCL)


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.50", "1.2.3.4"])
def test_unwritable_syntax_is_an_error(uid, dcbs, tmp_path):
    with pytest.raises(UnsupportedTransferSyntaxError, match="cannot be written") as exc:
        dicube.save_to_dicom_folder(dicube.load(dcbs("MR_small.dcm")), tmp_path / "o",
                                    transfer_syntax=uid)
    assert uid in exc.value.reason and EXPLICIT in exc.value.reason
    assert _files(tmp_path / "o") == []


def test_pixels_an_encoder_cannot_hold_are_an_error(dcbs, tmp_path, capsys):
    """32-bit samples as RLE: pydicom's RLE encoders refuse them (was: Explicit VR LE)."""
    rc, out, err = run_cli(capsys, "export", dcbs("rtdose_rle.dcm"), tmp_path / "o", "-t", "rle")
    assert rc == 1
    assert f"{RLE} (RLE Lossless) cannot hold these pixels losslessly" in err
    assert "Bits Allocated: 32" in err
    assert list((tmp_path / "o").iterdir()) == []  # no manifest left to block a rerun
    rc, out, err = run_cli(capsys, "export", dcbs("rtdose_rle.dcm"), tmp_path / "o", "-t", "explicit")
    assert rc == 0, err


def test_missing_encoder_is_named(dcbs, tmp_path, monkeypatch):
    monkeypatch.setitem(de.PLUGINS, "1.2.840.10008.1.2.4.80", ("no-such-plugin",))
    with pytest.raises(UnsupportedTransferSyntaxError,
                       match="needs one of pydicom's encoder plugins no-such-plugin"):
        dicube.save_to_dicom_folder(dicube.load(dcbs("MR_small.dcm")), tmp_path / "o",
                                    transfer_syntax="1.2.840.10008.1.2.4.80")


def test_source_fallback_is_said(dcbs, tmp_path, capsys):
    """``-t source``: a source syntax that cannot hold the pixels falls back to Explicit VR
    Little Endian, and the command says so and why."""
    rc, out, err = run_cli(capsys, "export", dcbs("rtdose_rle.dcm"), tmp_path / "rle")
    assert rc == 0, err
    assert f"1 file written as {EXPLICIT} (Explicit VR Little Endian), not in the " \
           f"source's {RLE} (RLE Lossless): {RLE} (RLE Lossless) cannot hold" in out
    rc, out, err = run_cli(capsys, "export", dcbs("SC_rgb_jpeg_dcmtk.dcm"), tmp_path / "jpeg")
    assert rc == 0, err
    assert "not in the source's 1.2.840.10008.1.2.4.50 (JPEG Baseline (Process 1)): lossy, " \
           "written decompressed" in out
    rc, out, err = run_cli(capsys, "export", dcbs("MR_small_RLE.dcm"), tmp_path / "same")
    assert rc == 0 and out.count("\n") == 1  # written in its own syntax: nothing to say
    files = dicube.save_to_dicom_folder(dicube.load(dcbs("rtdose_rle.dcm")), tmp_path / "lib")
    assert files.transfer_syntaxes == [EXPLICIT] and files.source_syntaxes == [RLE]
    assert "cannot hold these pixels" in files.reasons[0]


def test_htj2k_rpcl_source_falls_back_to_htj2k(dcbs, tmp_path):
    """A .202 source on a build without TLM is written as .201 (the lossless HTJ2K it can
    make), and says so."""
    ht = dicube.save_to_dicom_folder(dicube.load(dcbs("MR_small.dcm")), tmp_path / "ht",
                                     transfer_syntax=HTJ2K)
    ds = pydicom.dcmread(ht[0])
    ds.file_meta.TransferSyntaxUID = HTJ2K_RPCL
    src = tmp_path / "src"
    src.mkdir()
    ds.save_as(src / "rpcl.dcm")
    files = dicube.save_to_dicom_folder(dicube.load_from_dicom_folder(src), tmp_path / "out")
    assert files.transfer_syntaxes == [HTJ2K_RPCL if HAS_TLM else HTJ2K]
    if not HAS_TLM:
        assert "TLM" in files.reasons[0]
    assert np.array_equal(pixel_array(files[0]), pixel_array(src / "rpcl.dcm"))


def test_rle_of_small_odd_rgb_does_not_crash(dcbs, tmp_path):
    """gdcm's RLE encoder aborted the interpreter on a 3x3 RGB image; it is never used."""
    name = "SC_rgb_small_odd.dcm"
    proc = run_script("export", dcbs(name), tmp_path / "o", "-t", "rle")
    assert proc.returncode == 0, proc.stderr
    out = pydicom.dcmread(_files(tmp_path / "o")[0])
    assert out.file_meta.TransferSyntaxUID == RLE
    assert np.array_equal(out.pixel_array, pydicom.dcmread(get_testdata_file(name)).pixel_array)
