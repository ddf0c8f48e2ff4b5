"""NIfTI in and out, LPS <-> RAS, checked against dcm2niix on the same series."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import dicube


def test_roundtrip(sample_10, tmp_path):
    img = dicube.load_from_dicom_folder(sample_10)
    dicube.save_to_nifti(img, tmp_path / "a.nii.gz")
    back = dicube.load_from_nifti(tmp_path / "a.nii.gz")
    assert np.array_equal(back.raw_image, img.raw_image)
    assert np.allclose(back.get_fdata(), img.get_fdata())
    for attr in ("origin", "spacing", "x_orientation", "y_orientation", "z_orientation"):
        assert np.allclose(getattr(back.space, attr), getattr(img.space, attr), atol=1e-5)
    dicube.save(back, tmp_path / "n.dcbs")  # an image without DICOM metadata saves too
    assert np.array_equal(dicube.load(tmp_path / "n.dcbs").raw_image, img.raw_image)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_agrees_with_dcm2niix(sample_10, tmp_path):
    import nibabel as nib

    img = dicube.load_from_dicom_folder(sample_10)
    dicube.save_to_nifti(img, tmp_path / "ours.nii")
    subprocess.run(["dcm2niix", "-z", "n", "-f", "ref", "-o", str(tmp_path), str(sample_10)],
                   check=True, capture_output=True)
    ours = nib.as_closest_canonical(nib.load(tmp_path / "ours.nii"))
    ref = nib.as_closest_canonical(nib.load(tmp_path / "ref.nii"))
    assert ours.shape == ref.shape
    assert np.abs(ours.affine - ref.affine).max() < 1e-3
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(ref.dataobj))
    assert np.allclose(ours.get_fdata(), ref.get_fdata())
