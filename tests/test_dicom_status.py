"""Series QC and synthetic faults made from the real CT series."""
from __future__ import annotations

import json
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicube import get_dicom_status
from dicube.dicom import (CommonTags, DicomMeta, DicomStatus, QCReport, check_series,
                          load_from_dicom_folder)
from helpers_dicom import assert_datasets_equal, copy_series, sorted_by_position

S = DicomStatus


def _edit(folder, fn):
    """Apply fn(k, ds) to every file of folder, k = index in position order; save."""
    for k, (path, ds) in enumerate(sorted_by_position(folder)):
        if fn(k, ds) is not False:
            ds.save_as(path)


@pytest.fixture()
def ct(tmp_path, sample_10):
    return copy_series(sample_10, tmp_path / "ct")


def test_clean_series_is_consistent(sample_10):
    meta = load_from_dicom_folder(sample_10).dicom_meta
    report = check_series(meta)
    assert report.ok and report.status == S.CONSISTENT
    assert get_dicom_status(meta) == S.CONSISTENT


def test_removed_slice_is_a_gap(ct):
    victim = sorted_by_position(ct)[4][0]
    victim.unlink()
    img = load_from_dicom_folder(ct)
    report = check_series(img.dicom_meta)
    gap = report.get(S.GAP_LOCATION)
    assert len(gap) == 1 and gap[0].slices == [3, 4] and "~1 missing" in gap[0].message
    inst = report.get(S.GAP_INSTANCE_NUMBER)
    assert len(inst) == 1 and "1 InstanceNumbers missing: 6" in inst[0].message
    assert report.status == S.GAP_LOCATION
    # the gap is found whatever the slice order of the meta (both z directions)
    rev = img.dicom_meta.subset(range(8, -1, -1))
    assert check_series(rev).get(S.GAP_LOCATION)[0].slices == [4, 5]


def _second_instance(src, dst):
    """A copy of ``src`` as another instance (an identical file would be read once)."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".2"
    ds.save_as(dst)


def test_duplicated_slice(ct):
    src = sorted_by_position(ct)[2][0]
    _second_instance(src, ct / "copy_of_slice")
    img = load_from_dicom_folder(ct)
    assert img.raw_image.shape[0] == 11
    report = check_series(img.dicom_meta)
    assert report.status == S.DUPLICATE_LOCATION
    dup = report.get(S.DUPLICATE_LOCATION)[0]
    assert dup.slices == [2, 3]
    assert report.get(S.DUPLICATE_INSTANCE_NUMBERS)[0].slices == [2, 3]
    assert np.array_equal(img.raw_image[2], img.raw_image[3])


def test_mixed_series_in_meta(ct, tmp_path):
    other = copy_series(ct, tmp_path / "other")
    _edit(other, lambda k, ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4.5") if k < 2 else False)
    files = [p for p, _ in sorted_by_position(other)]
    meta = DicomMeta.from_datasets([pydicom.dcmread(p) for p in files])
    report = check_series(meta)
    assert report.status == S.NON_UNIFORM_SERIES_UID
    assert report.issues[0].slices == [0, 1] and "2 series mixed" in report.issues[0].message


def test_missing_series_uid(ct):
    _edit(ct, lambda k, ds: ds.__delattr__("SeriesInstanceUID") if k == 7 else False)
    meta = DicomMeta.from_datasets([ds for _, ds in sorted_by_position(ct)])
    report = check_series(meta)
    assert report.status == S.MISSING_SERIES_UID and report.issues[0].slices == [7]


def test_gantry_tilt_is_reported_not_fatal(ct):
    angle = math.radians(15)

    def tilt(k, ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, round(y + k * 0.45 * math.tan(angle), 4), z]
        ds.GantryDetectorTilt = "15"
    _edit(ct, tilt)
    img = load_from_dicom_folder(ct)
    report = check_series(img.dicom_meta)
    tilt_issue = report.get(S.GANTRY_TILT)
    assert tilt_issue and "15.0" in tilt_issue[0].message
    assert report.status == S.GANTRY_TILT
    assert img.space.shape == (512, 512, 10)
    assert np.allclose(img.space.z_orientation, (0, 0, 1))


def test_rescale_per_slice(ct, sample_10):
    _edit(ct, lambda k, ds: setattr(ds, "RescaleSlope", f"{1 + k * 0.5:g}"))
    img = load_from_dicom_folder(ct)
    report = check_series(img.dicom_meta)
    assert report.status == S.NON_UNIFORM_RESCALE_FACTOR
    assert report.issues[0].slices == list(range(1, 10))
    slopes = img.pixel_header.RescaleSlope
    assert slopes == [1 + k * 0.5 for k in range(10)]
    f = img.get_fdata(np.float64)
    for k in (0, 5, 9):
        assert np.array_equal(f[k], img.raw_image[k] * slopes[k] - 1024.0)
    # raw values untouched
    ref = load_from_dicom_folder(sample_10)
    assert np.array_equal(img.raw_image, ref.raw_image)


def test_dropped_tag_absent_vs_empty(ct):
    def drop(k, ds):
        if k in (1, 2):
            del ds.ContrastBolusAgent         # absent
        elif k == 3:
            ds.ContrastBolusAgent = ""        # empty
    _edit(ct, drop)
    img = load_from_dicom_folder(ct)
    meta = img.dicom_meta
    tag = CommonTags.ContrastBolusAgent if hasattr(CommonTags, "ContrastBolusAgent") else 0x00180010
    assert not meta.is_shared(tag)
    assert meta.presence(tag) == [True, False, False] + [True] * 7
    vals = meta.get_values(tag, missing="<absent>")
    assert vals[1] == vals[2] == "<absent>" and vals[3] == "" and vals[0] == "Iodine"
    assert meta.get_element(tag, 3) == {"vr": "LO"}
    again = DicomMeta.from_json(meta.to_json())
    for i, (_, src) in enumerate(sorted_by_position(ct)):
        assert_datasets_equal(again.index(i), src)
    assert "ContrastBolusAgent" not in again.index(1)


def test_private_ob_and_sequence_kept_exactly(ct):
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()

    def add(k, ds):
        ds.add_new(0x00190010, "LO", "DICUBE TEST")
        ds.add_new(0x00191001, "OB", blob if k != 4 else blob[::-1])
        items = []
        for j in range(3):
            it = Dataset()
            it.CodeValue = f"C{j}"
            it.CodeMeaning = f"slice {k} item {j}"       # per-slice value inside the items
            it.add_new(0x00190010, "LO", "DICUBE TEST")
            it.add_new(0x00191002, "DS", ["1.50", "2.0"])
            items.append(it)
        ds.add_new(0x00191003, "SQ", Sequence(items))
    _edit(ct, add)
    img = load_from_dicom_folder(ct)
    meta = DicomMeta.from_json(img.dicom_meta.to_json())
    assert not meta.is_shared(0x00191001) and meta.is_shared(0x00190010)
    for i, (_, src) in enumerate(sorted_by_position(ct)):
        ds = meta.index(i)
        assert_datasets_equal(ds, src)
        assert ds[0x00191001].value == (blob if i != 4 else blob[::-1])
        assert [it.CodeMeaning for it in ds[0x00191003].value] == [
            f"slice {i} item {j}" for j in range(3)]
        assert str(ds[0x00191003].value[0][0x00191002].value[0]) == "1.50"


def test_report_is_json_serialisable(ct):
    sorted_by_position(ct)[6][0].unlink()
    _second_instance(sorted_by_position(ct)[1][0], ct / "dup")
    report = check_series(load_from_dicom_folder(ct).dicom_meta)
    assert len(report.issues) >= 4
    d = json.loads(report.to_json())
    assert d["status"] == report.status.value
    back = QCReport.from_dict(d)
    assert back.statuses == report.statuses and back.to_dict() == report.to_dict()
    assert "GAP_LOCATION" in str(report)
    # severity order: first issue is the most severe
    assert [i.status.severity for i in report.issues] == sorted(
        i.status.severity for i in report.issues)


def test_non_uniform_spacing_and_orientation(ct):
    def change(k, ds):
        if k == 2:
            ds.PixelSpacing = [0.5, 0.5]
        if k == 5:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9, 0.43589]
    _edit(ct, change)
    meta = DicomMeta.from_datasets([ds for _, ds in sorted_by_position(ct)])
    report = check_series(meta)
    assert report.get(S.NON_UNIFORM_SPACING)[0].slices == [2]
    assert report.get(S.NON_UNIFORM_ORIENTATION)[0].slices == [5]
