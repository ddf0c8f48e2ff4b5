"""The "zstd" frame codec (byte planes): exact round trips, partial reads, DICOM export and
streaming, typed errors on bad frames."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from cli_helpers import flip_frame_byte

import dicube
from dicube.core.image import DicomCubeImage
from dicube.core.io import encode_frames
from dicube.exceptions import CodecError, CorruptFileError, DataConsistencyError
from dicube.storage import format as fmt
from dicube.storage.reader import DcbsReader
from dicube.storage.writer import write_dcbs


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32"])
def test_sample_types(tmp_path, dtype):
    info = np.iinfo(dtype)
    arr = np.random.default_rng(1).integers(info.min, info.max, size=(4, 9, 11), endpoint=True).astype(dtype)
    dicube.save(DicomCubeImage(arr), tmp_path / "a.dcbs", codec="zstd")
    with DcbsReader(tmp_path / "a.dcbs") as r:
        assert r.frame_codec == fmt.CODEC_ZSTD_PLANES
    assert np.array_equal(dicube.load(tmp_path / "a.dcbs").raw_image, arr)
    assert np.array_equal(dicube.load(tmp_path / "a.dcbs", frames=[3, 0]).raw_image, arr[[3, 0]])


def test_rgb_and_bad_codec(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, size=(3, 8, 10, 3)).astype(np.uint8)
    dicube.save(DicomCubeImage(arr), tmp_path / "rgb.dcbs", codec="zstd")
    assert np.array_equal(dicube.load(tmp_path / "rgb.dcbs").raw_image, arr)
    with pytest.raises(DataConsistencyError, match="frame codec") as info:
        dicube.save(DicomCubeImage(arr), tmp_path / "x.dcbs", codec="lz4")
    assert info.value.path == str(tmp_path / "x.dcbs") and not (tmp_path / "x.dcbs").exists()


def test_series_export_and_stream(sample_10, tmp_path):
    from dicube.dicom import DcbStreamingReader

    img = dicube.load_from_dicom_folder(sample_10)
    path = tmp_path / "z.dcbs"
    dicube.save(img, path, codec="zstd")
    back = dicube.load(path)
    assert np.array_equal(back.raw_image, img.raw_image) and back.dicom_meta == img.dicom_meta
    dicube.save_to_dicom_folder(back, tmp_path / "out")
    files = sorted(sample_10.iterdir())
    for f in files:
        a, b = pydicom.dcmread(f), pydicom.dcmread(tmp_path / "out" / f.name)
        assert a.PixelData == b.PixelData and a.SOPInstanceUID == b.SOPInstanceUID
    with DcbStreamingReader(path) as reader:  # not HTJ2K: served uncompressed
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(reader.get_dicom_for_frame(0)))
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, img.raw_image[0])


def test_corrupt_frames(tmp_path):
    arr = np.random.default_rng(3).integers(0, 4096, size=(5, 32, 32)).astype(np.uint16)
    p = tmp_path / "c.dcbs"
    dicube.save(DicomCubeImage(arr), p, codec="zstd")
    flip_frame_byte(p, 2)
    with pytest.raises(CorruptFileError, match="frame 2"):
        dicube.load(p)
    # frames whose checksums match but whose bytes are no zstd frame of the right size
    fs = encode_frames(arr, codec="zstd")
    for bad in (b"\x00" * 40, fs.frames[0][: len(fs.frames[0]) // 2], encode_frames(arr[:, :16], codec="zstd").frames[0]):
        fs.frames[1] = bad
        write_dcbs(tmp_path / "b.dcbs", fs, [])
        with pytest.raises(CodecError, match="frame 1"):
            dicube.load(tmp_path / "b.dcbs")


def test_buffer_path(tmp_path):
    """Remote sources decode from one buffer of the selection (decode_regions)."""
    from dicube.codecs.jph import decode_regions
    from dicube.codecs.zstd_planes import ZSTD_PLANES, encode_planes_batch

    arr = np.random.default_rng(4).integers(-2000, 3000, size=(6, 20, 24)).astype(np.int16)
    frames = encode_planes_batch(arr)
    buf = b"".join(frames)
    lengths = [len(f) for f in frames]
    offsets = np.cumsum([0] + lengths[:-1])
    out = np.empty_like(arr)
    decode_regions(buf, offsets, lengths, out, codec=ZSTD_PLANES, num_threads=2)
    assert np.array_equal(out, arr)
