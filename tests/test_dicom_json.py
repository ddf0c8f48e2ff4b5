"""Exactness of the DICOM JSON metadata model on pydicom's bundled files and edge cases."""
from __future__ import annotations

import json
import logging
import os
import struct
import warnings

import numpy as np
import pydicom
from pydicom.pixels import pixel_array
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicube.dicom import DicomMeta
from dicube.dicom.dicom_json import json_to_dataset
from dicube.dicom.file_parser import NotDicomError, parse_file
from dicube.exceptions import DamagedDicomError
from helpers_dicom import assert_datasets_equal, assert_file_meta_equal, dataset_differences

logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _bundled_dicom_files():
    out = []
    for f in get_testdata_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(f)
        except Exception:
            continue
        out.append(f)
    return out


BUNDLED = _bundled_dicom_files()


def test_bundled_files_found():
    assert len(BUNDLED) > 100


@pytest.mark.filterwarnings("ignore")
def test_every_bundled_file_round_trips_exactly():
    """index(0) of a one-file DicomMeta (through to_json/from_json) equals the source file
    element for element, file meta included; pixels equal pydicom's decode."""
    failures, pixel_checked = [], 0
    for f in BUNDLED:
        src = pydicom.dcmread(f)
        try:
            ref = pixel_array(src, as_rgb=False)  # stored values, no colour conversion
        except Exception:
            ref = None
        try:
            pf, arr = parse_file(f, with_pixels=ref is not None)
        except DamagedDicomError:  # a file cut short is refused, not read in part
            assert "truncated" in os.path.basename(f), f
            continue
        meta = DicomMeta.from_json_headers([pf.header])
        meta = DicomMeta.from_json(meta.to_json())
        ds = meta.index(0)
        diffs = dataset_differences(ds, src) + dataset_differences(ds.file_meta, src.file_meta)
        if diffs:
            failures.append((f, diffs[:3]))
        if ref is None:
            continue
        nf = int(src.get("NumberOfFrames", 1) or 1)
        ref = ref if nf > 1 else ref[np.newaxis]
        ref = ref.astype(ref.dtype.newbyteorder("="))  # big endian input -> native order
        assert arr is not None and arr.dtype == ref.dtype and np.array_equal(arr, ref), f
        pixel_checked += 1
    assert not failures, failures[:5]
    assert pixel_checked > 60


@pytest.mark.filterwarnings("ignore")
def test_pydicom_fallback_path_matches_fast_path():
    """Implicit VR and big endian files (read through pydicom) produce the same JSON
    as their explicit little endian twins."""
    le = parse_file(get_testdata_file("MR_small.dcm"), with_pixels=False)[0].header
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm"):
        other = parse_file(get_testdata_file(name), with_pixels=False)[0].header
        body = {k: v for k, v in le.items() if not k.startswith("0002")}
        body2 = {k: v for k, v in other.items() if not k.startswith("0002")}
        diffs = [k for k in body if k in body2 and body[k] != body2[k]]
        assert len(set(body) & set(body2)) > 50
        # the OW/OB binary and group lengths may differ by encoding; values must not
        assert all(body[k].get("InlineBinary") or k.endswith("0000") for k in diffs), diffs


def _write(ds: Dataset, path, implicit: bool = False):
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def _explicit_le(tag: int, vr: str, raw: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"):
        return head + b"\0\0" + struct.pack("<I", len(raw)) + raw
    return head + struct.pack("<H", len(raw)) + raw


def _raw_element_file(tmp_path, elements: list[tuple[int, str, bytes]]):
    """A file whose elements carry exactly the given raw bytes (explicit VR LE)."""
    meta = (_explicit_le(0x00020001, "OB", b"\0\1")
            + _explicit_le(0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.2\0")
            + _explicit_le(0x00020003, "UI", b"1.2.3.4\0")
            + _explicit_le(0x00020010, "UI", b"1.2.840.10008.1.2.1\0"))
    body = b"".join(_explicit_le(t, vr, raw) for t, vr, raw in elements)
    data = (b"\0" * 128 + b"DICM" + _explicit_le(0x00020000, "UL", struct.pack("<I", len(meta)))
            + meta + body)
    path = tmp_path / "raw.dcm"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("implicit", [False, True])
def test_ds_is_strings_kept_exactly(tmp_path, implicit):
    raw = [
        (0x00180050, "DS", b"1.50"),                 # trailing zero
        (0x00280030, "DS", b" 0.5\\0.50 "),          # leading space, multi-valued
        (0x00200013, "IS", b"+007"),                 # sign and leading zeros
        (0x00181041, "DS", b"1e3 "),                 # exponent form
        (0x00189305, "FD", b"\x00" * 8),
    ]
    if not implicit:
        raw.insert(0, (0x00100010, "PN", b"Doe^John=^= "))  # empty groups kept
    path = _raw_element_file(tmp_path, raw)
    if implicit:
        src = pydicom.dcmread(path)
        path = _write(src, tmp_path / "implicit.dcm", implicit=True)
    pf, _ = parse_file(path, with_pixels=False)
    assert pf.header["00180050"]["Value"] == ["1.50"]
    assert pf.header["00200013"]["Value"] == ["+007"]
    if not implicit:  # the fast path keeps even the leading space of the first value
        assert pf.header["00280030"]["Value"] == [" 0.5", "0.50"]
    meta = DicomMeta.from_json(DicomMeta.from_json_headers([pf.header]).to_json())
    ds = meta.index(0)
    src = pydicom.dcmread(path)
    assert_datasets_equal(ds, src)
    assert str(ds.SliceThickness) == "1.50"
    assert str(ds.PixelSpacing[1]) == "0.50"
    assert str(ds.InstanceNumber) == "+007"
    if not implicit:  # re-encoded bytes are the original bytes
        assert ds[0x00280030].value == src[0x00280030].value
        assert meta.index(0).get_item(0x00280030).value == b" 0.5\\0.50 "
        assert pf.header["00100010"]["Value"] == [
            {"Alphabetic": "Doe^John", "Ideographic": "^", "Phonetic": ""}]
        assert meta.index(0).get_item(0x00100010).value == b"Doe^John=^= "


def test_tricky_values(tmp_path):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Hans=ミュラー^ハンス"
    ds.OtherPatientNames = ["A^B", "", "C"]                # multi-valued with empty
    ds.add_new(0x00081160, "IS", None)                     # empty IS
    ds.add_new(0x00280009, "AT", [0x00181063, 0x00181065])  # AT multi
    ds.add_new(0x00281101, "US", [256, 0, 16])             # US multiplicity
    ds.add_new(0x00189219, "SS", -5)
    ds.add_new(0x00720066, "OF", np.arange(4, dtype="<f4").tobytes())
    ds.add_new(0x00720074, "OD", np.arange(3, dtype="<f8").tobytes())
    ds.add_new(0x00720076, "OL", b"\x01\x02\x03\x04")
    ds.add_new(0x0066002F, "OV", b"\x01" * 8)
    ds.add_new(0x00091010, "UN", bytes(range(256)) * 4)   # unknown private, UN
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091011, "LO", "private value")
    ds.add_new(0x00181063, "DS", "")                       # empty DS
    ds.ImageComments = "multi\\line\r\ntext  "
    ds.add_new(0x0018106A, "FD", [float("nan"), float("inf"), -0.0])
    path = _write(ds, tmp_path / "tricky.dcm")
    pf, _ = parse_file(path, with_pixels=False)
    meta = DicomMeta.from_json(DicomMeta.from_json_headers([pf.header]).to_json())
    src = pydicom.dcmread(path)
    out = meta.index(0)
    assert_datasets_equal(out, src)
    assert_file_meta_equal(out.file_meta, src.file_meta)
    assert str(out.PatientName) == str(src.PatientName)
    assert out.get_item(0x00100010).value == src.get_item(0x00100010).value  # same bytes
    assert pf.header["00100010"]["Value"][0] == {
        "Alphabetic": "Müller^Hans", "Ideographic": "ミュラー^ハンス"}
    assert "Value" not in pf.header["00181063"]          # empty, but present
    assert out[0x00091010].value == bytes(range(256)) * 4
    # non-finite floats are kept bit-exactly (as raw bytes)
    assert np.isnan(out[0x0018106A].value[0]) and str(out[0x0018106A].value[2]) == "-0.0"
    json.loads(meta.to_json())  # strict JSON (no NaN tokens)
    assert "NaN" not in meta.to_json()


def test_non_dicom_raises(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, not a DICOM file" * 20)
    with pytest.raises(NotDicomError):
        parse_file(p)


@pytest.mark.filterwarnings("ignore")
def test_json_to_dataset_uses_item_charset():
    f = get_testdata_file("nested_priv_SQ.dcm")
    pf, _ = parse_file(f, with_pixels=False)
    body = {k: v for k, v in pf.header.items() if not k.startswith("0002")}
    assert_datasets_equal(json_to_dataset(body), pydicom.dcmread(f))
