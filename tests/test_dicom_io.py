"""Reading series: pixels, metadata exactness, ordering, geometry, discovery, errors."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import pixel_array
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import dicube
from dicube.dicom import CommonTags, DicomMeta, discover_series, load_from_dicom_folder
from dicube.exceptions import DicomReadError, MultipleSeriesError
from helpers_dicom import (assert_datasets_equal, copy_series, dataset_differences,
                           sorted_by_position)


@pytest.fixture(scope="module")
def ct10(sample_10):
    return load_from_dicom_folder(sample_10)


def test_exports():
    assert dicube.load_from_dicom_folder is load_from_dicom_folder
    assert dicube.DicomMeta is DicomMeta
    assert dicube.CommonTags is CommonTags


def test_pixels_and_metadata_exact(ct10, sample_10):
    img = ct10
    ref = sorted_by_position(sample_10)
    assert img.raw_image.shape == (10, 512, 512)
    assert img.raw_image.dtype == ref[0][1].pixel_array.dtype
    meta = img.dicom_meta
    assert len(meta) == 10
    for i, (path, src) in enumerate(ref):
        assert meta.filenames[i] == path.name
        assert np.array_equal(img.raw_image[i], src.pixel_array)
        ds = meta.index(i)
        assert_datasets_equal(ds, src, context=path.name)
        assert_datasets_equal(ds.file_meta, src.file_meta, context=path.name)
        assert meta.slice_info[i]["pixel_tag"] == "7FE00010"


def test_meta_json_round_trip(ct10):
    meta = ct10.dicom_meta
    again = DicomMeta.from_json(meta.to_json())
    assert again == meta and again.to_json() == meta.to_json()
    assert_datasets_equal(again.index(3), meta.index(3))


def test_meta_accessors(ct10):
    meta = ct10.dicom_meta
    assert meta.is_shared(CommonTags.PatientName)
    assert meta.get_shared_value(CommonTags.PatientName) == "stent Z"
    assert meta.get_shared_value("SeriesInstanceUID") == meta.get_values(0x0020000E)[0]
    assert not meta.is_shared(CommonTags.InstanceNumber)
    inst = meta.get_values(CommonTags.InstanceNumber)
    assert sorted(inst) == list(range(1, 11)) and inst == sorted(inst, reverse=True)
    pos = meta.get_array(CommonTags.ImagePositionPatient)
    assert pos.shape == (10, 3) and np.all(np.diff(pos[:, 2]) > 0)
    assert meta.get_values(CommonTags.PixelSpacing)[0] == [0.4296875, 0.4296875]
    assert meta.get_shared_value(CommonTags.RescaleIntercept) == -1024.0
    assert meta.get_shared_value(CommonTags.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    assert meta.file_meta(0).TransferSyntaxUID == "1.2.840.10008.1.2.1"
    text = meta.table()
    assert "PatientName" in text and "per-slice" in text
    assert meta.get_vr("(0028,1052)") == "DS"


def test_space_and_fdata(ct10):
    img = ct10
    sp = img.space
    assert sp.shape == (512, 512, 10)
    assert np.allclose(sp.spacing, (0.4296875, 0.4296875, 0.45))
    pos = img.dicom_meta.get_array(CommonTags.ImagePositionPatient)
    assert np.allclose(sp.origin, pos[0])
    assert np.allclose(sp.z_orientation, (0, 0, 1))
    # voxel (i, j, k) = raw_image[k, j, i] maps to its DICOM position
    world = sp.to_world_transform.apply_point(np.array([[0, 0, 9]], dtype=float))
    assert np.allclose(world[0], pos[9])
    f = img.get_fdata()
    assert f.dtype == np.float32
    assert np.array_equal(f, img.raw_image.astype(np.float32) - 1024)


def test_reversed_file_order_gives_same_result(tmp_path, sample_10, ct10):
    # rename so that the file name order is the reverse of the position order
    names = [p for p, _ in sorted_by_position(sample_10)]
    for k, p in enumerate(reversed(names)):
        shutil.copy(p, tmp_path / f"f{k:03d}")
    img = load_from_dicom_folder(str(tmp_path), num_threads=1)
    assert np.array_equal(img.raw_image, ct10.raw_image)
    assert img.dicom_meta.get_values("SOPInstanceUID") == ct10.dicom_meta.get_values(
        "SOPInstanceUID")


def test_instance_number_fallback(tmp_path, sample_10):
    copy_series(sample_10, tmp_path)
    for p in tmp_path.iterdir():
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        ds.save_as(p)
    img = load_from_dicom_folder(tmp_path)
    assert img.dicom_meta.get_values("InstanceNumber") == list(range(1, 11))


def test_mixed_series_error_and_selection(tmp_path, sample_10):
    copy_series(sample_10, tmp_path / "a")
    other = copy_series(sample_10, tmp_path / "b", names={"I10", "I20", "I30"})
    for p in other.iterdir():
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = "1.2.3.999"
        ds.SeriesDescription = "other"
        ds.save_as(p)
    (tmp_path / "README.txt").write_text("not dicom")
    found = discover_series(tmp_path)
    assert found.num_non_dicom == 1
    assert sorted(s.num_files for s in found) == [3, 10]
    assert {s.description for s in found} == {"other", "MonoE 90keV[HU] 90"}
    with pytest.raises(MultipleSeriesError) as exc:
        load_from_dicom_folder(tmp_path)
    assert len(exc.value.series) == 2
    assert "1.2.3.999" in str(exc.value) and str(tmp_path) in str(exc.value)
    assert {s["count"] for s in exc.value.series} == {3, 10}
    img = load_from_dicom_folder(tmp_path, series_uid="1.2.3.999")
    assert img.raw_image.shape == (3, 512, 512)
    uid = next(s.series_uid for s in found if s.num_files == 10)
    assert load_from_dicom_folder(tmp_path, series_uid=uid).raw_image.shape[0] == 10


def test_split_by_geometry_and_volumes(tmp_path, sample_10):
    # second volume at the same positions (like a second echo): same UID, split by EchoNumbers
    a = copy_series(sample_10, tmp_path / "e1")
    b = copy_series(sample_10, tmp_path / "e2")
    for k, folder in enumerate((a, b)):
        for p in folder.iterdir():
            ds = pydicom.dcmread(p)
            ds.EchoNumbers = k + 1
            ds.SOPInstanceUID = ds.SOPInstanceUID + f".{k}"
            ds.save_as(p)
    found = discover_series(tmp_path)
    assert len(found) == 2 and {s.split_by for s in found} == {"EchoNumbers"}
    assert all(s.num_files == 10 for s in found)
    with pytest.raises(MultipleSeriesError):
        load_from_dicom_folder(tmp_path)
    img = load_from_dicom_folder(tmp_path, series_uid=found[1].key)
    assert img.dicom_meta.get_shared_value("EchoNumbers") in (1, 2)


def test_empty_and_unreadable(tmp_path):
    with pytest.raises(DicomReadError) as exc:
        load_from_dicom_folder(tmp_path)
    assert str(tmp_path) in str(exc.value)
    (tmp_path / "junk.bin").write_bytes(os.urandom(2000))
    with pytest.raises(DicomReadError):
        load_from_dicom_folder(tmp_path)
    with pytest.raises(DicomReadError):
        load_from_dicom_folder(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm",
                                  "MR_small_bigendian.dcm", "rtdose.dcm", "rtdose_expb.dcm",
                                  "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm",
                                  "JPEG-lossy.dcm", "JPEGLSNearLossless_16.dcm"])
def test_single_and_multiframe_files(tmp_path, name):
    src_path = get_testdata_file(name, download=False)
    if src_path is None:
        pytest.skip(f"{name} not bundled")
    shutil.copy(src_path, tmp_path / name)
    src = pydicom.dcmread(src_path)
    try:
        ref = pixel_array(src, as_rgb=False)  # stored values, no colour conversion
    except Exception:
        pytest.skip(f"pydicom cannot decode {name} here")
    img = load_from_dicom_folder(tmp_path / name)  # a single file
    ref = ref.astype(ref.dtype.newbyteorder("="))  # big endian input -> native order
    nf = int(src.get("NumberOfFrames", 1) or 1)
    ref = ref if nf > 1 else ref[np.newaxis]
    assert img.raw_image.dtype == ref.dtype and np.array_equal(img.raw_image, ref)
    assert_datasets_equal(img.dicom_meta.index(0), src)
    assert img.space.shape == (ref.shape[2], ref.shape[1], ref.shape[0])


def test_bundled_series_folder(tmp_path):
    # several single-slice files of pydicom's test data with the same series -> one volume
    src = Path(get_testdata_file("CT_small.dcm", download=False))
    for k in range(3):
        ds = pydicom.dcmread(src)
        ds.ImagePositionPatient = [0, 0, float(k) * 2.0]
        ds.InstanceNumber = 3 - k
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"  # one instance per file
        ds.save_as(tmp_path / f"s{k}.dcm")
    img = load_from_dicom_folder(Path(tmp_path))
    assert img.raw_image.shape == (3, 128, 128)
    assert img.dicom_meta.get_values("InstanceNumber") == [3, 2, 1]
    assert np.isclose(img.space.spacing[2], 2.0)


def test_sample_200_loads_sorted_and_consistent(sample_200):
    img = load_from_dicom_folder(sample_200)
    meta = img.dicom_meta
    assert img.raw_image.shape == (200, 512, 512)
    z = meta.get_array(CommonTags.ImagePositionPatient)[:, 2]
    assert np.all(np.diff(z) > 0)
    assert dicube.get_dicom_status(meta) == dicube.DicomStatus.CONSISTENT
    for k in (0, 137, 199):
        src = pydicom.dcmread(Path(sample_200) / meta.filenames[k])
        assert np.array_equal(img.raw_image[k], src.pixel_array)
        assert_datasets_equal(meta.index(k), src)


def test_index_dataset_can_be_written_back(tmp_path, ct10, sample_10):
    """index(i) plus the pixels, written by pydicom, reads back equal to the source."""
    meta = ct10.dicom_meta
    for i in (0, 9):
        ds = meta.index(i)
        ds.PixelData = ct10.raw_image[i].tobytes()
        ds["PixelData"].VR = meta.slice_info[i]["pixel_vr"]
        out = tmp_path / f"out{i}.dcm"
        ds.save_as(out, enforce_file_format=True)
        back = pydicom.dcmread(out)
        src = pydicom.dcmread(Path(sample_10) / meta.filenames[i])
        # pydicom's writer drops group length elements (gggg,0000) inside sequence items;
        # everything else, pixels included, comes back identical
        diffs = [d for d in dataset_differences(back, src, skip_pixels=False)
                 if not (",0000): only in second" in d and "[" in d)]
        assert not diffs, diffs


def test_enhanced_multiframe_descending(tmp_path, sample_10):
    """A synthetic enhanced multi-frame file with frames stored top-down: geometry from
    the functional groups, frames put in ascending order and the reversal recorded."""
    slices = sorted_by_position(sample_10)[::-1]  # descending z
    ds = pydicom.dcmread(slices[0][0])
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    ds.NumberOfFrames = len(slices)
    shared = Dataset()
    ori, meas = Dataset(), Dataset()
    ori.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    meas.PixelSpacing = [0.4296875, 0.4296875]
    meas.SliceThickness = "0.9"
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([meas])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for _, s in slices:
        item, pp = Dataset(), Dataset()
        pp.ImagePositionPatient = s.ImagePositionPatient
        item.PlanePositionSequence = Sequence([pp])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    frames = np.stack([s.pixel_array for _, s in slices])
    ds.PixelData = frames.tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    img = load_from_dicom_folder(path)
    assert img.dicom_meta.slice_info[0]["frame_order"] == "reversed"
    assert np.array_equal(img.raw_image, frames[::-1])
    z = [float(s.ImagePositionPatient[2]) for _, s in slices]
    assert np.isclose(img.space.origin[2], min(z))
    assert np.isclose(img.space.spacing[2], 0.45)
    assert_datasets_equal(img.dicom_meta.index(0), pydicom.dcmread(path))
