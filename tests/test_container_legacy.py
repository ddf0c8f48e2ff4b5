"""Version-1 files of dicube 0.3.0 load with the pixels and metadata they hold."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import dicube
from dicube.exceptions import DicomCubeError
from helpers_dicom import dataset_differences


@pytest.fixture(scope="module")
def source(sample_10):
    return dicube.load_from_dicom_folder(sample_10)


def _load(path):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        img = dicube.load(path)
    return img, [str(x.message) for x in w]


def test_pixels_and_fdata(legacy_dcbs, source):
    img, notes = _load(legacy_dcbs)
    assert img.raw_image.dtype == np.int16 and img.raw_image.shape == (10, 512, 512)
    # 0.3.0 stored rescaled values (HU, intercept 0), slices in the opposite z order
    hu = source.get_fdata(np.float64)
    by_uid = {u: i for i, u in enumerate(source.dicom_meta.get_values("SOPInstanceUID"))}
    for k, uid in enumerate(img.dicom_meta.get_values("SOPInstanceUID")):
        assert np.array_equal(img.get_fdata(np.float64)[k], hu[by_uid[uid]])
    assert any("no checksums" in n for n in notes)


def test_metadata_matches_source(legacy_dcbs, source):
    img, notes = _load(legacy_dcbs)
    by_uid = {u: i for i, u in enumerate(source.dicom_meta.get_values("SOPInstanceUID"))}
    for k, uid in enumerate(img.dicom_meta.get_values("SOPInstanceUID")):
        assert dataset_differences(source.dicom_meta.index(by_uid[uid]),
                                   img.dicom_meta.index(k)) == []
    # what the old file lost is named
    assert any("DS/IS" in n for n in notes)
    assert any("file meta" in n for n in notes)
    assert any("realigned" in n for n in notes)


def test_load_meta_and_frames(legacy_dcbs):
    with pytest.warns(UserWarning):
        meta = dicube.load_meta(legacy_dcbs)
    assert len(meta) == 10
    full, _ = _load(legacy_dcbs)
    with pytest.warns(UserWarning):
        part = dicube.load(legacy_dcbs, frames=slice(2, 5))
    assert np.array_equal(part.raw_image, full.raw_image[2:5])
    assert len(part.dicom_meta) == 3
    assert part.space.shape[2] == 3


def test_resave_as_v2(legacy_dcbs, tmp_path):
    img, _ = _load(legacy_dcbs)
    dicube.save(img, tmp_path / "new.dcbs")
    back = dicube.load(tmp_path / "new.dcbs")
    assert np.array_equal(back.raw_image, img.raw_image)
    assert back.dicom_meta == img.dicom_meta
    assert (tmp_path / "new.dcbs").read_bytes()[8] == 2


def test_corrupt_legacy(legacy_dcbs, tmp_path):
    data = legacy_dcbs.read_bytes()
    rng = np.random.default_rng(3)
    p = tmp_path / "bad.dcbs"
    for n in sorted(set(rng.integers(0, len(data), 25).tolist() + [0, 20, 116, 200])):
        p.write_bytes(data[:n])
        with pytest.raises(DicomCubeError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dicube.load(p)


def test_load_meta_is_one_read(legacy_dcbs, pread_calls):
    """The whole version-1 head lies in the first read: no more reads (one range request
    for a remote file)."""
    with pytest.warns(UserWarning):
        meta = dicube.load_meta(legacy_dcbs)
    assert len(meta) == 10 and pread_calls == [(65536, 0)]
