"""DcbStreamingReader on files of multi-frame source instances (pydicom's rtdose.dcm: RT
Dose, 15 frames of 32-bit samples; SC_rgb_rle_2frame.dcm: 2 RGB frames): the instance in
every syntax, the frame API, export, and crafted files whose metadata and frames disagree."""
from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pydicom
import pydicom.data
import pytest
from crafting import Crafted, fix_codestream_checksum

import dicube
from dicube.dicom import streaming
from dicube.dicom.streaming import DcbStreamingReader
from dicube.exceptions import (CodecError, DicomCubeError, FrameIndexError, MetaDataError,
                               MultiFrameInstanceError)

HTJ2K = "1.2.840.10008.1.2.4.201"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
#: Elements that follow from the syntax an instance is written in, not from the source.
WRITTEN = {"PixelData", "PhotometricInterpretation", "PlanarConfiguration"}


def _testfile(name: str) -> str:
    return os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", name)


@pytest.fixture(scope="module", params=["rtdose.dcm", "SC_rgb_rle_2frame.dcm"])
def converted(request, tmp_path_factory):
    """(the .dcbs of one multi-frame source file, the source dataset)."""
    folder = tmp_path_factory.mktemp("mf")
    shutil.copyfile(_testfile(request.param), folder / request.param)
    dicube.save(dicube.load_from_dicom_folder(folder), folder / "mf.dcbs")
    return folder / "mf.dcbs", pydicom.dcmread(folder / request.param)


def _same_elements(got, ds, skip=frozenset()) -> None:
    for elem in ds:
        if elem.keyword in WRITTEN | skip:
            continue
        assert got[elem.tag].value == elem.value, elem.keyword


def test_one_instance_of_all_frames_in_every_syntax(converted):
    path, ds = converted
    n = int(ds.NumberOfFrames)
    with DcbStreamingReader(path) as stream:
        assert (stream.instance_count, stream.frames_per_instance, stream.frame_count) == (1, n, n)
        assert stream.frames_of_instance(0) == range(n) and stream.instance_of_frame(n - 1) == 0
        assert HTJ2K in stream.available_transfer_syntaxes()
        for ts in stream.available_transfer_syntaxes():
            data = stream.get_dicom_for_instance(0, transfer_syntax=ts)
            assert b"".join(stream.get_dicom_pieces(0, ts)) == data
            got = pydicom.dcmread(io.BytesIO(data))
            assert str(got.file_meta.TransferSyntaxUID) == ts
            assert int(got.NumberOfFrames) == n
            # HTJ2K: Bits Stored as the codestream records it (21 of rtdose's 32 bits)
            _same_elements(got, ds, {"BitsStored", "HighBit"} if ts == HTJ2K else set())
            np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
            if ts == HTJ2K:  # one fragment per frame, each the stored codestream
                from pydicom.encaps import generate_fragments, parse_basic_offsets

                frags = list(generate_fragments(got.PixelData))[1:]
                assert len(frags) == n
                offsets = parse_basic_offsets(got.PixelData)
                assert offsets == [sum(8 + len(f) for f in frags[:i]) for i in range(n)]
                for k, frag in enumerate(frags):
                    cs = stream.get_pixel_data(k, HTJ2K)
                    assert frag == cs + b"\0" * (len(cs) % 2)
            else:
                frame = stream.get_pixel_data(n - 1, ts)
                assert frame == ds.pixel_array[n - 1].astype(
                    ds.pixel_array.dtype.newbyteorder("<")).tobytes()
        assert stream.get_json(0)["00280008"]["Value"] in ([n], [str(n)])
        assert int(stream.get_dataset(0).NumberOfFrames) == n


def test_frame_requests_on_a_multiframe_instance_point_to_the_instance(converted):
    path, ds = converted
    with DcbStreamingReader(path) as stream:
        with pytest.raises(MultiFrameInstanceError, match=r"get_dicom_for_instance\(0\)") as exc:
            stream.get_dicom_for_frame(1)
        assert str(path) in str(exc.value)
        with pytest.raises(FrameIndexError, match="instance 1 out of range"):
            stream.get_dicom_for_instance(1)
        with pytest.raises(ValueError, match="frame"):  # one pixel value for N frames
            stream.get_dicom_pieces(0, EXPLICIT, stream.get_pixel_data(0, EXPLICIT))


def test_single_frame_instances_are_unchanged(sample_10, tmp_path):
    path = tmp_path / "ct.dcbs"
    dicube.save(dicube.load_from_dicom_folder(sample_10), path)
    with DcbStreamingReader(path) as stream:
        assert stream.frames_per_instance == 1 and stream.instance_count == stream.frame_count
        assert stream.get_dicom_for_instance(1) == stream.get_dicom_for_frame(1)
        assert stream.frames_of_instance(1) == range(1, 2)


def test_export_writes_the_source_instance(converted, tmp_path):
    path, ds = converted
    image = dicube.load(path)
    (written,) = dicube.save_to_dicom_folder(image, tmp_path / "out")
    got = pydicom.dcmread(written)
    assert got.file_meta.TransferSyntaxUID in (ds.file_meta.TransferSyntaxUID, EXPLICIT)
    _same_elements(got, ds)
    np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)


def test_cli_export_writes_the_source_instance(converted, tmp_path, capsys):
    """``dicube export``: one file, every element and pixel of the source (rtdose.dcm is
    Implicit VR LE, SC_rgb_rle_2frame.dcm RLE: both written in the source's syntax)."""
    from cli_helpers import run_cli

    path, ds = converted
    code, out, err = run_cli(capsys, "export", str(path), str(tmp_path / "out"))
    assert code == 0, err
    (written,) = (tmp_path / "out").glob("*.dcm")
    got = pydicom.dcmread(written)
    assert got.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    _same_elements(got, ds)
    np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)


def test_extended_offset_table_past_the_basic_one(converted, monkeypatch):
    """Past 4 GiB of fragments (here: a lowered limit) the offsets go in an Extended
    Offset Table and the Basic Offset Table is empty (PS3.5 A.4)."""
    path, ds = converted
    monkeypatch.setattr(streaming, "_BOT_LIMIT", 16)
    with DcbStreamingReader(path) as stream:
        got = pydicom.dcmread(io.BytesIO(stream.get_dicom_for_instance(0, transfer_syntax=HTJ2K)))
    n = int(ds.NumberOfFrames)
    offsets = np.frombuffer(got.ExtendedOffsetTable, "<u8")
    lengths = np.frombuffer(got.ExtendedOffsetTableLengths, "<u8")
    assert len(offsets) == len(lengths) == n and offsets[0] == 0
    np.testing.assert_array_equal(offsets[1:], np.cumsum(lengths + 8)[:-1])
    np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)


# ------------------------------------------------------------------ hostile files
def _with_meta(path, out, change) -> None:
    c = Crafted.read(path)
    doc = json.loads(c.section(b"META").raw)
    change(doc)
    c.set_section(b"META", json.dumps(doc).encode())
    c.write(out)


def _frames(n):
    return lambda doc: doc["shared"].__setitem__("00280008", {"vr": "IS", "Value": [n]})


@pytest.mark.parametrize("change, message", [
    (_frames(14), "Number of Frames 14 but the file holds"),
    (_frames(0), "Number of Frames 0 is not positive"),
    (_frames("lots"), "is not a number"),
    (lambda doc: doc["shared"].pop("00280008"), "no Number of Frames"),
])
def test_number_of_frames_inconsistent_with_the_frames(converted, tmp_path, change, message):
    from dicube.server import ArchiveIndex

    path, _ = converted
    bad = tmp_path / "bad.dcbs"
    _with_meta(path, bad, change)
    with pytest.raises(MetaDataError, match=message) as exc:
        DcbStreamingReader(bad)
    assert str(bad) in str(exc.value)
    with ArchiveIndex(tmp_path) as ix:  # listed as unreadable, for the same reason
        (reason,) = ix.errors().values()
        assert message.split(" but")[0] in reason


def test_frames_not_splitting_over_the_instances(converted, tmp_path):
    path, _ = converted
    c = Crafted.read(path)
    c.frames = c.frames[:-1]
    bad = c.write(tmp_path / "short.dcbs")
    with pytest.raises(MetaDataError, match="holds .* frame|Number of Frames") as exc:
        DcbStreamingReader(bad)
    assert str(bad) in str(exc.value)


def test_a_frame_of_another_geometry_is_refused(converted, tmp_path):
    """A crafted frame whose codestream has other dimensions than the instance's first:
    the HTJ2K instance is a CodecError naming the file and frame, not a wrong file."""
    from dicube.codecs.jph import encode_batch

    path, ds = converted
    c = Crafted.read(path)
    small = np.zeros((1, 4, 4) + ds.pixel_array.shape[3:], ds.pixel_array.dtype)
    c.frames[1] = fix_codestream_checksum(encode_batch(small)[0])
    bad = c.write(tmp_path / "odd.dcbs")
    with DcbStreamingReader(bad) as stream:
        with pytest.raises(CodecError, match="frame 1: .*differs from the first frame") as exc:
            stream.get_dicom_for_instance(0, transfer_syntax=HTJ2K)
        assert str(bad) in str(exc.value)
        with pytest.raises(DicomCubeError):
            stream.get_dicom_for_instance(0, transfer_syntax=EXPLICIT)


def test_a_dcba_multiframe_instance_in_every_syntax(tmp_path):
    """.dcba (JPEG XL frames) of SC_rgb_rle_2frame.dcm: HTJ2K re-encoded and native
    instances hold the source's pixels; JPEG XL Lossless holds the stored codestreams, one
    fragment per frame."""
    from pydicom.encaps import generate_fragments

    name = "SC_rgb_rle_2frame.dcm"
    shutil.copyfile(_testfile(name), tmp_path / name)
    ds = pydicom.dcmread(tmp_path / name)
    dicube.save(dicube.load_from_dicom_folder(tmp_path), tmp_path / "x.dcba")
    with DcbStreamingReader(tmp_path / "x.dcba") as stream:
        for ts in stream.available_transfer_syntaxes():
            got = pydicom.dcmread(io.BytesIO(stream.get_dicom_for_instance(0, transfer_syntax=ts)))
            assert int(got.NumberOfFrames) == 2
            if ts == streaming.JXL_LOSSLESS:  # pydicom decodes no JPEG XL
                frags = list(generate_fragments(got.PixelData))[1:]
                assert [f.rstrip(b"\0") for f in frags] == [
                    stream.get_pixel_data(k, ts).rstrip(b"\0") for k in (0, 1)]
            else:
                np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
