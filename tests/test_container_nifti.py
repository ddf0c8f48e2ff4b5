"""NIfTI in and out, LPS <-> RAS, checked against dcm2niix on the same series."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import dicube
from streaming_cases import require_tool


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


def _ours_and_dcm2niix(folder, tmp_path):
    require_tool("dcm2niix")
    """Our NIfTI and dcm2niix's of a DICOM folder (canonical orientation), checked to agree:
    same shape and data, affines within 1e-3 mm."""
    import nibabel as nib

    dicube.save_to_nifti(dicube.load_from_dicom_folder(folder), tmp_path / "ours.nii")
    subprocess.run(["dcm2niix", "-z", "n", "-f", "ref", "-o", str(tmp_path), str(folder)],
                   check=True, capture_output=True)
    ours = nib.as_closest_canonical(nib.load(tmp_path / "ours.nii"))
    ref = nib.as_closest_canonical(nib.load(tmp_path / "ref.nii"))
    assert ours.shape == ref.shape
    assert np.abs(ours.affine - ref.affine).max() < 1e-3
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(ref.dataobj))
    return ours, ref


def test_agrees_with_dcm2niix(sample_10, tmp_path):
    ours, ref = _ours_and_dcm2niix(sample_10, tmp_path)
    assert np.allclose(ours.get_fdata(), ref.get_fdata())


def _rotation(ax: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != ax]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


#: (row direction, column direction, positions in reverse order of the normal)
GEOMETRIES = {
    "sagittal-reversed": ([0, 1, 0], [0, 0, -1], True),
    "coronal": ([1, 0, 0], [0, 0, -1], False),
    "axial-flipped": ([-1, 0, 0], [0, -1, 0], True),
    "oblique": (_rotation(2, 20) @ _rotation(0, 30) @ [1, 0, 0],
                _rotation(2, 20) @ _rotation(0, 30) @ [0, 1, 0], True),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_non_axial_series_agree_with_dcm2niix(sample_10, tmp_path, name):
    """Copies of 4 slices of sample_10 given another orientation, slice order and unequal
    row/column spacing: our affine equals dcm2niix's, and NIfTI -> image -> NIfTI keeps it."""
    import nibabel as nib
    import pydicom

    row, col, reverse = GEOMETRIES[name]
    row, col = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row, col)
    src = tmp_path / "src"
    src.mkdir()
    for k, f in enumerate(sorted(sample_10.iterdir())[:4]):
        ds = pydicom.dcmread(f)
        kk = 3 - k if reverse else k
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.r_[row, col]]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array([-100.0, 50.0, 300.0]) + kk * 1.25 * normal]
        ds.PixelSpacing = ["0.5", "0.8"]
        ds.save_as(src / f.name)
    _ours_and_dcm2niix(src, tmp_path)
    back = dicube.load_from_nifti(tmp_path / "ours.nii")
    dicube.save_to_nifti(back, tmp_path / "again.nii")
    assert np.allclose(nib.load(tmp_path / "again.nii").affine, nib.load(tmp_path / "ours.nii").affine,
                       atol=1e-5)


@pytest.mark.parametrize("kind, opened", [("Nifti1Pair", ".hdr"), ("Nifti1Pair", ".img"),
                                          ("AnalyzeImage", ".hdr")])
def test_header_and_image_pairs(tmp_path, kind, opened):
    """A .hdr/.img pair reads from whichever file is named (the declared data is checked
    against the .img, which holds it); a truncated .img is refused naming the file."""
    import nibabel as nib

    from dicube.exceptions import DataConsistencyError

    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(getattr(nib, kind)(a, np.diag([1.0, 2.0, 3.0, 1.0])), tmp_path / "v.hdr")
    img = dicube.load_from_nifti(tmp_path / f"v{opened}")
    np.testing.assert_array_equal(img.raw_image, a.transpose(2, 1, 0))
    data = (tmp_path / "v.img").read_bytes()
    (tmp_path / "v.img").write_bytes(data[:-2])
    with pytest.raises(DataConsistencyError, match="v.img has"):
        dicube.load_from_nifti(tmp_path / f"v{opened}")
