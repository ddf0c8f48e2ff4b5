"""The .dcbs v2 container: layout, frame selection, sample types, atomic save, typed errors."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from cli_helpers import flip_frame_byte

import dicube
from dicube.core.image import DicomCubeImage
from dicube.core.io import encode_frames
from dicube.exceptions import CorruptFileError, DicomCubeError, FrameIndexError, InvalidCubeFileError
from dicube.storage import format as fmt
from dicube.storage.reader import DcbsReader
from dicube.storage.writer import write_dcbs


def _image(arr: np.ndarray) -> DicomCubeImage:
    from spacetransformer import Space

    return DicomCubeImage(arr, space=Space(shape=(arr.shape[2], arr.shape[1], arr.shape[0])))


@pytest.mark.parametrize("dtype,lo,hi", [
    ("uint8", 0, 256), ("int8", -128, 128), ("uint16", 0, 65536), ("int16", -32768, 32768),
    ("uint32", 0, 1 << 20), ("int32", -(1 << 20), 1 << 20), ("float32", -5, 5), ("float64", -5, 5),
])
def test_roundtrip_sample_types(tmp_path, dtype, lo, hi):
    rng = np.random.default_rng(1)
    if dtype.startswith("float"):
        arr = rng.normal(size=(3, 17, 23)).astype(dtype)
    else:
        arr = rng.integers(lo, hi, size=(3, 17, 23)).astype(dtype)
    p = tmp_path / "a.dcbs"
    dicube.save(_image(arr), p)
    back = dicube.load(p)
    assert back.raw_image.dtype == arr.dtype and np.array_equal(back.raw_image, arr)
    assert back.space.shape == (23, 17, 3)


def test_rgb_and_selection(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, size=(6, 16, 20, 3)).astype(np.uint8)
    p = tmp_path / "rgb.dcbs"
    dicube.save(_image(arr), p)
    assert np.array_equal(dicube.load(p).raw_image, arr)
    assert np.array_equal(dicube.load(p, frames=[5, 0, 2]).raw_image, arr[[5, 0, 2]])
    assert np.array_equal(dicube.load(p, frames=slice(1, 4)).raw_image, arr[1:4])
    assert np.array_equal(dicube.load(p, frames=-1).raw_image, arr[-1:])
    for bad in ([6], -7, [1.5], "3", np.ones(6, bool)):
        with pytest.raises(FrameIndexError):  # a DicomCubeError and an IndexError
            dicube.load(p, frames=bad)


def test_out_buffer_and_threads(tmp_path):
    arr = np.random.default_rng(3).integers(0, 4096, size=(8, 32, 32)).astype(np.uint16)
    p = tmp_path / "b.dcbs"
    dicube.save(_image(arr), p)
    out = np.zeros_like(arr)
    img = dicube.load(p, out=out, num_threads=1)
    assert img.raw_image is out and np.array_equal(out, arr)
    with pytest.raises(DicomCubeError):
        dicube.load(p, out=np.zeros((8, 32, 31), np.uint16))


def test_layout_head_before_frames(tmp_path):
    arr = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    p = tmp_path / "c.dcbs"
    dicube.save(_image(arr), p)
    data = p.read_bytes()
    assert data[:8] == b"DCMCUBES" and struct.unpack_from("<I", data, 8)[0] == 2
    with DcbsReader(p) as r:
        h = r.layout.header
        assert h.file_length == len(data) and h.frames_offset % 8 == 0
        assert all(s.offset + s.length <= h.frames_offset for s in r.sections.values())
        idx = r.layout.index
        assert idx["offset"][0] == 0
        assert (idx["offset"][1:] == idx["offset"][:-1] + idx["length"][:-1]).all()
        assert int(idx["offset"][-1] + idx["length"][-1]) == h.frames_length
        # any frame is one read away, and the stored codestream is a valid HTJ2K stream
        from dicube.codecs.jph import imdecode_jph
        assert np.array_equal(imdecode_jph(r.codestream(2)), arr[2])


def test_load_meta_reads_only_the_head(tmp_path, pread_calls):
    arr = np.random.default_rng(4).integers(0, 4096, size=(40, 64, 64)).astype(np.uint16)
    p = tmp_path / "d.dcbs"
    dicube.save(_image(arr), p)
    reads = pread_calls
    with DcbsReader(p) as r:
        head_end = r.layout.header.frames_offset
        assert r.section_json(fmt.SEC_INFO)["shape"] == [40, 64, 64]
    assert len(reads) == 1 and reads[0][1] == 0
    assert head_end <= fmt.FIRST_READ


def test_atomic_save_keeps_old_file_on_error(tmp_path, monkeypatch):
    arr = np.ones((2, 8, 8), np.uint16)
    p = tmp_path / "e.dcbs"
    dicube.save(_image(arr), p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises((DicomCubeError, OSError)):
        dicube.save(_image(arr * 2), p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["e.dcbs"]  # no temporary left behind


def test_zero_frames_and_bad_types(tmp_path):
    with pytest.raises(DicomCubeError):
        dicube.save(DicomCubeImage(np.zeros((2, 0, 4), np.uint16)), tmp_path / "z.dcbs")
    with pytest.raises(DicomCubeError):
        dicube.save(DicomCubeImage(np.zeros((0, 4, 4), np.uint16)), tmp_path / "z.dcbs")
    with pytest.raises(DicomCubeError):
        dicube.save(_image(np.zeros((2, 4, 4), np.uint16)), tmp_path / "z.dcbs", file_type="x")


def _write_raw(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data,exc", [
    (b"", InvalidCubeFileError),
    (b"DCMCUBES", InvalidCubeFileError),
    (b"NOTACUBE" + bytes(200), InvalidCubeFileError),
    (b"DCMCUBEA" + struct.pack("<I", 2) + bytes(200), InvalidCubeFileError),
    (b"DCMCUBES" + struct.pack("<I", 3) + bytes(200), InvalidCubeFileError),
    (b"DCMCUBES" + struct.pack("<I", 2) + bytes(200), CorruptFileError),
    (b"DCMCUBES" + struct.pack("<I", 1) + bytes(200), InvalidCubeFileError),
], ids=["empty", "magic-only", "wrong-magic", "archive-magic", "version-3", "v2-zeros", "v1-zeros"])
def test_bad_headers(tmp_path, data, exc):
    p = _write_raw(tmp_path / "bad.dcbs", data)
    with pytest.raises(exc):
        dicube.load(p)
    with pytest.raises(exc):
        dicube.load_meta(p)


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(5)
    for k in range(30):
        n = int(rng.integers(0, 5000))
        body = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if k % 2:
            body = b"DCMCUBES" + struct.pack("<I", 1 + k % 3) + body
        p = _write_raw(tmp_path / f"r{k}.dcbs", body)
        with pytest.raises(DicomCubeError):
            dicube.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidCubeFileError):
        dicube.load(tmp_path / "nope.dcbs")


def test_writer_low_level(tmp_path):
    arr = np.random.default_rng(6).integers(0, 1000, size=(3, 10, 12)).astype(np.int16)
    fs = encode_frames(arr)
    assert fs.codec == fmt.CODEC_HTJ2K
    n = write_dcbs(tmp_path / "w.dcbs", fs, [(b"XTRA", b"hello", False)])
    assert n == os.path.getsize(tmp_path / "w.dcbs")
    with DcbsReader(tmp_path / "w.dcbs") as r:
        assert r.section_bytes(b"XTRA") == b"hello"  # unknown sections are kept, ignored by load
        assert np.array_equal(r.read_frames(), arr)


def test_valid_checksums_bad_content(tmp_path):
    """Sections whose checksums match but whose content is wrong still give typed errors."""
    arr = np.ones((2, 8, 8), np.uint16)
    fs = encode_frames(arr)
    for kind, payload in [(fmt.SEC_SPACE, b'{"shape": [0, -1, 2]}'), (fmt.SEC_SPACE, b"[1"),
                          (fmt.SEC_PIXEL, b"[]"), (fmt.SEC_META, b'{"format": 1}'),
                          (fmt.SEC_META, b"\xff\xfe")]:
        p = tmp_path / "v.dcbs"
        write_dcbs(p, fs, [(kind, payload, kind == fmt.SEC_META)])
        with pytest.raises(DicomCubeError):
            dicube.load(p)


def test_reader_shared_between_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from dicube.codecs.jph import imdecode_jph

    arr = np.random.default_rng(8).integers(0, 4096, size=(16, 32, 32)).astype(np.uint16)
    p = tmp_path / "t.dcbs"
    dicube.save(_image(arr), p)
    with DcbsReader(p) as r, ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: imdecode_jph(r.codestream(i)), [i % 16 for i in range(64)]))
    assert all(np.array_equal(g, arr[i % 16]) for i, g in enumerate(got))


def test_frames_without_embedded_checksum(tmp_path):
    """Codestreams of another encoder (no dicube checksum COM) take the isolated buffer path."""
    imagecodecs = pytest.importorskip("imagecodecs")
    arr = np.random.default_rng(9).integers(0, 4096, size=(4, 24, 40)).astype(np.uint16)
    fs = encode_frames(arr)
    fs.frames[:] = [imagecodecs.htj2k_encode(a, level=0) for a in arr]
    write_dcbs(tmp_path / "x.dcbs", fs, [])
    with DcbsReader(tmp_path / "x.dcbs") as r:
        assert all(r.codestream(i).find(b"dicube-crc32c") < 0 for i in range(4))
        assert np.array_equal(r.read_frames([3, 1]), arr[[3, 1]])


def test_frame_checksum_error_names_the_frame(tmp_path):
    arr = np.random.default_rng(10).integers(0, 4096, size=(5, 32, 32)).astype(np.uint16)
    p = tmp_path / "c.dcbs"
    dicube.save(_image(arr), p)
    flip_frame_byte(p, 3, 0x10)
    assert np.array_equal(dicube.load(p, frames=[0, 1, 2, 4]).raw_image, arr[[0, 1, 2, 4]])
    for frames in (None, [4, 3], slice(3, 4)):
        with pytest.raises(CorruptFileError, match="frame 3") as info:
            dicube.load(p, frames=frames)
        assert info.value.path == str(p)


def test_selected_frames_keep_their_geometry(dcbs_samples):
    """load(frames=...) gives the space and metadata of the frames chosen: every selected
    frame lies where its ImagePositionPatient says (strided, reversed, single); frames
    that are not evenly spaced have no space."""
    p = dcbs_samples["sample_10"]
    full = dicube.load(p)
    ipp = full.dicom_meta.get_array("ImagePositionPatient").astype(float)
    for sel in (slice(2, 8, 2), [7, 5, 3], slice(None, None, -1), [4], slice(3, 6)):
        img = dicube.load(p, frames=sel)
        idx = np.arange(10)[sel] if isinstance(sel, slice) else np.asarray(sel)
        assert np.array_equal(img.raw_image, full.raw_image[idx])
        assert np.allclose(img.dicom_meta.get_array("ImagePositionPatient").astype(float), ipp[idx])
        sp = img.space
        assert sp.shape == (512, 512, len(idx))
        step = np.asarray(sp.z_orientation) * sp.spacing[2]
        for k, i in enumerate(idx):
            assert np.allclose(np.asarray(sp.origin) + k * step, ipp[i], atol=1e-4)
    assert dicube.load(p, frames=[0, 1, 5]).space is None
