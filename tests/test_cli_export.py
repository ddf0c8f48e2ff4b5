"""``dicube export``: DICOM round trip equal to the source files, HTJ2K, NIfTI, refusals."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from cli_helpers import make_dcbs, run_cli, run_script
from helpers_dicom import assert_datasets_equal, assert_file_meta_equal

import dicube


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("export") / "s10.dcbs")


def test_export_round_trip_equals_source(dcbs_10, sample_10, tmp_path):
    out_dir = tmp_path / "dicom"
    proc = run_script("export", dcbs_10, out_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{out_dir}: 10 DICOM files")
    sources = sorted(p for p in sample_10.iterdir() if p.is_file())
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(".")) == \
        [p.name for p in sources]
    for src in sources:
        a, b = pydicom.dcmread(src), pydicom.dcmread(out_dir / src.name)
        assert_datasets_equal(a, b, skip_pixels=False, context=src.name)
        assert_file_meta_equal(a.file_meta, b.file_meta, context=src.name)


def test_export_htj2k_and_overwrite(dcbs_10, sample_10, tmp_path, capsys):
    out_dir = tmp_path / "dicom"
    assert run_cli(capsys, "export", dcbs_10, out_dir)[0] == 0
    rc, out, err = run_cli(capsys, "export", dcbs_10, out_dir, "--transfer-syntax", "htj2k")
    assert rc == 1 and out == ""
    assert err.startswith(f"dicube export: error: {out_dir}: folder is not empty")
    rc, out, err = run_cli(capsys, "export", dcbs_10, out_dir, "-t", "htj2k", "--overwrite")
    assert rc == 0, err
    for src in sorted(sample_10.iterdir())[:3]:
        a, b = pydicom.dcmread(src), pydicom.dcmread(out_dir / src.name)
        assert b.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.201"
        assert np.array_equal(a.pixel_array, b.pixel_array)
        assert a.SOPInstanceUID == b.SOPInstanceUID


def test_export_nifti(dcbs_10, tmp_path, capsys):
    target = tmp_path / "ct.nii.gz"
    rc, out, err = run_cli(capsys, "export", dcbs_10, "--nifti", target)
    assert rc == 0, err
    image = dicube.load(dcbs_10)
    nii = nib.load(target)
    assert nii.shape == (512, 512, 10)
    assert np.allclose(nii.header.get_zooms(), image.space.spacing)
    assert np.array_equal(np.asarray(nii.dataobj), image.get_fdata().transpose(2, 1, 0))
    rc, out, err = run_cli(capsys, "export", dcbs_10, "--nifti", target)
    assert rc == 1 and f"dicube export: error: {target}: already exists" in err


def test_export_errors(sample_10, tmp_path, capsys):
    bad = sorted(sample_10.iterdir())[0]
    rc, out, err = run_cli(capsys, "export", bad, tmp_path / "x")
    assert rc == 1 and err.startswith(f"dicube export: error: {bad}: not a dicube file")
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "export", bad)  # neither OUT_DIR nor --nifti
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        run_cli(capsys, "export", bad, tmp_path / "y", "-t", "no-such-syntax")
