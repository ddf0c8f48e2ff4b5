"""DICOM export of colour and compressed sources (pydicom's bundled files): the exported
pixels equal the source's as pydicom decodes them (``as_rgb=False``), value for value, in
the same colour space; Photometric Interpretation follows PS3.5 8.2.1 (a decompressed
JPEG YBR_FULL_422 image is YBR_FULL); never a silent change of pixels."""
from __future__ import annotations

import io
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from helpers_dicom import dataset_differences
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array
from streaming_cases import dciodvfy_errors

import dicube
from dicube.dicom.photometric import pixel_difference
from dicube.dicom import DcbStreamingReader
from dicube.exceptions import (
    ColourConversionWarning,
    DataConsistencyError,
    DicomCubeError,
    UnsupportedTransferSyntaxError,
)

EXPLICIT = "1.2.840.10008.1.2.1"
HTJ2K = "1.2.840.10008.1.2.4.201"
#: pixel module attributes an export may change, with why
MAY_CHANGE = ("(0028,0004)",   # PS3.5 8.2.1: decompressed YBR_FULL_422 JPEG is YBR_FULL
              "(0028,0006)")   # encapsulated colour is colour-by-pixel


def _colour_or_compressed() -> list[str]:
    """The bundled (not downloaded) test files with colour or compressed pixels."""
    names = []
    for path in sorted(map(str, (Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm"))):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ts = ds.file_meta.TransferSyntaxUID
        except Exception:  # not DICOM, no file meta
            continue
        if "Rows" in ds and (ds.get("SamplesPerPixel", 1) == 3 or ts.is_compressed):
            names.append(path.rsplit("/", 1)[-1])
    return names


NAMES = _colour_or_compressed()


@lru_cache(maxsize=None)
def _dcbs(name: str, folder: str) -> str:
    """``name`` converted to .dcbs (saved and read back by dicube), or skip when dicube
    refuses it (a damaged sample file: a typed error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = dicube.load_from_dicom_folder(get_testdata_file(name))
        except DicomCubeError as exc:
            pytest.skip(f"dicube does not load {name}: {exc.reason[:80]}")
    path = f"{folder}/{name}.dcbs"
    dicube.save(image, path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return str(tmp_path_factory.mktemp("colour"))


def _export(path: str, out, ts=None) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = dicube.save_to_dicom_folder(dicube.load(path), out, transfer_syntax=ts)
    assert len(files) == 1
    return pydicom.dcmread(files[0])


#: IODs that list no YBR_FULL (dciodvfy): US Image, US Multi-frame, Multi-frame True
#: Color SC, VL images. Decompressed YCbCr is written as RGB there (with a warning).
NO_YBR_FULL = ("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",
               "1.2.840.10008.5.1.4.1.1.7.4")


def _expected_pi(src: pydicom.Dataset, native: bool) -> str:
    """The decoded colour space: full-resolution chroma unless a native source's 4:2:2 is
    packed back as it was; JPEG 2000's colour transform undone (no codestream of ours uses it)."""
    pi = src.PhotometricInterpretation
    compressed = src.file_meta.TransferSyntaxUID.is_compressed
    if pi == "YBR_FULL_422" and (compressed or not native):
        return "RGB" if native and src.SOPClassUID in NO_YBR_FULL else "YBR_FULL"
    if pi in ("YBR_RCT", "YBR_ICT"):
        return "RGB"
    return pi


def test_the_list_covers_the_issue_files():
    for name in ("examples_ybr_color.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                 "SC_rgb_small_odd_jpeg.dcm", "SC_jpeg_no_color_transform.dcm",
                 "SC_jpeg_no_color_transform_2.dcm", "SC_ybr_full_422_uncompressed.dcm",
                 "examples_jpeg2k.dcm", "ExplVR_BigEnd.dcm"):
        assert name in NAMES


@pytest.mark.parametrize("ts", [None, EXPLICIT, HTJ2K], ids=["source", "explicit", "htj2k"])
@pytest.mark.parametrize("name", NAMES)
def test_export_pixels_equal_source(name, ts, store, tmp_path):
    src_path = get_testdata_file(name)
    src = pydicom.dcmread(src_path)
    try:
        out = _export(_dcbs(name, store), tmp_path / "out", ts)
    except UnsupportedTransferSyntaxError as exc:  # beyond the codec: said, not truncated
        assert ts == HTJ2K and src.BitsStored > 21 and "precision of 32 bits" in exc.reason
        return
    assert pixel_difference(src, out) is None
    # the same decoded values, value for value, as pydicom gives them in that colour space
    native = not out.file_meta.TransferSyntaxUID.is_compressed
    rgb = out.PhotometricInterpretation == "RGB" != src.PhotometricInterpretation
    assert np.array_equal(pixel_array(out, as_rgb=False), pixel_array(src, as_rgb=rgb))
    if not (out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
            and src.PhotometricInterpretation == "YBR_RCT"):  # re-encoded with the RCT
        assert out.PhotometricInterpretation == _expected_pi(src, native)
    # lossy stays lossy: Lossy Image Compression, its ratio and method as the source's
    for kw in ("LossyImageCompression", "LossyImageCompressionRatio",
               "LossyImageCompressionMethod"):
        assert out.get(kw) == src.get(kw), kw
    may = MAY_CHANGE + (("(0028,0101)", "(0028,0102)") if ts == HTJ2K else ())  # = codestream
    diffs = [d for d in dataset_differences(src, out) if not d.startswith(may)]
    assert diffs == []


def test_ybr_full_422_jpeg_keeps_every_chroma_sample(store, tmp_path):
    """The issue's cases: 4:2:2 re-packing dropped odd-column chroma (up to 8 levels)."""
    name = "SC_rgb_dcmtk_+eb+cy+np.dcm"  # Secondary Capture: YBR_FULL, exact
    src = pydicom.dcmread(get_testdata_file(name))
    out = _export(_dcbs(name, store), tmp_path / "sc")
    assert out.file_meta.TransferSyntaxUID == EXPLICIT
    assert out.PhotometricInterpretation == "YBR_FULL" and out.LossyImageCompression == "01"
    decoded = pixel_array(src, as_rgb=False)
    assert not np.array_equal(decoded[:, 0::2, 1:], decoded[:, 1::2, 1:])  # not replicated
    assert np.array_equal(pixel_array(out, as_rgb=False), decoded)
    assert np.array_equal(out.pixel_array, src.pixel_array)  # and as RGB, the same conversion


def test_ultrasound_ybr_full_422_jpeg_is_rgb_and_said(store, tmp_path):
    """US Multi-frame lists no YBR_FULL: native output is pydicom's RGB of the source, with
    a ColourConversionWarning; HTJ2K keeps the decoded YCbCr values exactly."""
    path = _dcbs("examples_ybr_color.dcm", store)
    src = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    with pytest.warns(ColourConversionWarning, match="written as RGB"):
        files = dicube.save_to_dicom_folder(dicube.load(path), tmp_path / "us")
    out = pydicom.dcmread(files[0])
    assert out.PhotometricInterpretation == "RGB" and out.LossyImageCompression == "01"
    assert len(out.PixelData) == 30 * 240 * 320 * 3
    assert np.array_equal(pixel_array(out, as_rgb=False), src.pixel_array)
    out = _export(path, tmp_path / "us-htj2k", HTJ2K)
    assert out.PhotometricInterpretation == "YBR_FULL"
    assert np.array_equal(pixel_array(out, as_rgb=False), pixel_array(src, as_rgb=False))


def test_exported_files_are_valid(store, tmp_path):
    """dciodvfy finds no error in an export that the source file does not have."""
    for name in ("examples_ybr_color.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "examples_jpeg2k.dcm"):
        out = dicube.save_to_dicom_folder(dicube.load(_dcbs(name, store)), tmp_path / name,
                                          transfer_syntax=EXPLICIT)
        new = dciodvfy_errors(out[0]) - dciodvfy_errors(get_testdata_file(name))
        assert new == set(), name


def test_native_ybr_full_422_stays_byte_identical(store, tmp_path):
    name = "SC_ybr_full_422_uncompressed.dcm"
    out = _export(_dcbs(name, store), tmp_path / "out")
    src = pydicom.dcmread(get_testdata_file(name))
    assert out.PhotometricInterpretation == "YBR_FULL_422" and out.PixelData == src.PixelData


def test_native_ybr_full_422_never_drops_chroma(store, tmp_path):
    """Pixels whose chroma pairs differ cannot be YBR_FULL_422: a typed error, not a loss."""
    image = dicube.load(_dcbs("SC_ybr_full_422_uncompressed.dcm", store))
    image.raw_image[0, 0, 1, 1] ^= 1
    with pytest.raises(DataConsistencyError, match="chroma"):
        dicube.save_to_dicom_folder(image, tmp_path / "out")
    out = dicube.save_to_dicom_folder(image, tmp_path / "htj2k", transfer_syntax=HTJ2K)
    ds = pydicom.dcmread(out[0])
    assert ds.PhotometricInterpretation == "YBR_FULL"
    assert np.array_equal(pixel_array(ds, as_rgb=False), image.raw_image[0])


SINGLE_FRAME = [n for n in NAMES if n not in ("examples_ybr_color.dcm",)]


@pytest.mark.parametrize("name", SINGLE_FRAME)
def test_streaming_instances_equal_source(name, store):
    """``get_dicom_for_instance``: uncompressed and HTJ2K instances (all frames of a
    multi-frame source) decode to the source's values in the same colour space."""
    src = pydicom.dcmread(get_testdata_file(name))
    with DcbStreamingReader(_dcbs(name, store)) as stream:
        plain = pydicom.dcmread(io.BytesIO(stream.get_dicom_for_instance(0, force_uncompressed=True)))
        packed = pydicom.dcmread(io.BytesIO(stream.get_dicom_for_instance(0)))
    for out, native in ((plain, True), (packed, False)):
        assert pixel_difference(src, out) is None
        assert out.PhotometricInterpretation == _expected_pi(src, native)
        assert out.get("LossyImageCompression") == src.get("LossyImageCompression")


def _group_0028_length(ds: pydicom.Dataset) -> int:
    """Encoded length (explicit VR little endian) of group 0028 without its group length."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    group = pydicom.Dataset()
    for elem in ds:
        if elem.tag.group == 0x0028 and elem.tag.element:
            group.add(elem)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, group)
    return len(buf.getvalue())


def test_lossy_marking_and_group_length_follow_the_change(tmp_path):
    """A JPEG source without Lossy Image Compression gets 01 and ISO_10918_1; a (0028,0000)
    group length follows the changed Photometric Interpretation."""
    import struct

    ds = pydicom.dcmread(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    del ds.LossyImageCompression
    src = tmp_path / "src"
    src.mkdir()
    ds.save_as(src / "a.dcm")
    data = (src / "a.dcm").read_bytes()  # pydicom drops group lengths: insert one
    at = data.index(b"\x28\x00\x02\x00US")  # (0028,0002), the group's first element
    length = struct.pack("<HH2sHI", 0x28, 0, b"UL", 4, _group_0028_length(ds))
    (src / "a.dcm").write_bytes(data[:at] + length + data[at:])
    ds = pydicom.dcmread(src / "a.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = dicube.load_from_dicom_folder(src)
    out = pydicom.dcmread(dicube.save_to_dicom_folder(image, tmp_path / "out")[0])
    assert out.PhotometricInterpretation == "YBR_FULL"
    assert out.LossyImageCompression == "01" and out.LossyImageCompressionMethod == "ISO_10918_1"
    assert out[0x00280000].value == _group_0028_length(out) != ds[0x00280000].value
    assert pixel_difference(src / "a.dcm", out) is None


def test_cli_says_the_conversion_once(store, tmp_path, capsys):
    from cli_helpers import run_cli

    out = tmp_path / "us"
    rc, stdout, err = run_cli(capsys, "export", _dcbs("examples_ybr_color.dcm", store), out)
    assert rc == 0, err
    assert err.count("warning:") == 1
    assert f"dicube export: warning: {out}: 1 file of an IOD that does not allow YBR_FULL: " \
           "the decompressed YCbCr pixels are written as RGB" in err
    assert "lossy, written decompressed" in stdout
