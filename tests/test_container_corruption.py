"""Every damaged .dcbs raises a dicube error, or loads exactly the right data.

A real file (sample_10, with each frame codec: HTJ2K and zstd byte planes) gets single
flipped bytes at a few hundred positions spread over the head and the frames, and is
truncated at many lengths.
"""
from __future__ import annotations

import numpy as np
import pytest

import dicube
from dicube.exceptions import DicomCubeError
from dicube.storage import format as fmt
from dicube.storage.reader import DcbsReader


@pytest.fixture(scope="module")
def source(sample_10):
    return dicube.load_from_dicom_folder(sample_10)


@pytest.fixture(scope="module", params=["htj2k", "zstd"])
def good(source, tmp_path_factory, request):
    img = source
    path = tmp_path_factory.mktemp("corrupt") / "good.dcbs"
    dicube.save(img, path, codec=request.param)
    with DcbsReader(path) as r:
        head = r.layout.header.frames_offset
        assert r.frame_codec == {"htj2k": fmt.CODEC_HTJ2K, "zstd": fmt.CODEC_ZSTD_PLANES}[request.param]
    return path.read_bytes(), head, img


def _positions(size: int, head: int, n_head: int, n_frames: int) -> list[int]:
    rng = np.random.default_rng(11)
    pos = set(range(0, min(head, 160)))  # every byte of the fixed header and table start
    pos |= set(rng.integers(0, head, n_head).tolist())
    pos |= set(rng.integers(head, size, n_frames).tolist())
    return sorted(pos)


def _outcome(path, img):
    """None when it loads correctly, the error when it raises a dicube error."""
    try:
        got = dicube.load(path, num_threads=1)
    except DicomCubeError as exc:
        return exc
    assert np.array_equal(got.raw_image, img.raw_image), "silently wrong pixels"
    assert got.dicom_meta == img.dicom_meta, "silently wrong metadata"
    assert got.space.to_json() == img.space.to_json()
    return None


def test_flipped_bytes(good, tmp_path):
    data, head, img = good
    positions = _positions(len(data), head, 120, 120)
    assert len(positions) > 250
    errors = 0
    p = tmp_path / "flip.dcbs"
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p.write_bytes(bad)
        if _outcome(p, img) is not None:
            errors += 1
        else:  # only unused bytes (alignment padding) may be changed without an error
            assert head - 8 <= pos < head, f"byte {pos} changed without being detected"
        # the head alone must be checked by load_meta too
        if pos < head:
            try:
                meta = dicube.load_meta(p)
            except DicomCubeError:
                pass
            else:
                assert meta == img.dicom_meta
    assert errors >= len(positions) - 8


def test_truncated(good, tmp_path):
    data, head, img = good
    rng = np.random.default_rng(12)
    lengths = sorted(set(list(range(0, 140, 7)) + rng.integers(0, head, 40).tolist()
                         + rng.integers(head, len(data), 60).tolist() + [head, len(data) - 1]))
    p = tmp_path / "trunc.dcbs"
    for n in lengths:
        p.write_bytes(data[:n])
        with pytest.raises(DicomCubeError):
            dicube.load(p, num_threads=1)
        if n < head:
            with pytest.raises(DicomCubeError):
                dicube.load_meta(p)


def test_appended_bytes(good, tmp_path):
    data, head, img = good
    p = tmp_path / "long.dcbs"
    p.write_bytes(data + b"\0" * 16)
    with pytest.raises(DicomCubeError):
        dicube.load(p)


def test_swapped_frames_detected(good, tmp_path):
    """Frames moved within the file (index intact) fail their checksums."""
    data, head, img = good
    with DcbsReader_from(data, tmp_path) as r:
        idx = r.layout.index
    a0, l0 = head + int(idx["offset"][0]), int(idx["length"][0])
    bad = bytearray(data)
    mid = l0 // 2
    bad[a0 + mid:a0 + mid + 64] = data[a0 + l0 + mid:a0 + l0 + mid + 64]
    assert bad != data
    p = tmp_path / "swap.dcbs"
    p.write_bytes(bad)
    with pytest.raises(DicomCubeError):
        dicube.load(p)


def DcbsReader_from(data: bytes, tmp_path):  # noqa: N802
    p = tmp_path / "tmp_reader.dcbs"
    p.write_bytes(data)
    return DcbsReader(p)


@pytest.mark.parametrize("codec", ["htj2k", "zstd"])
def test_damaged_frames_with_matching_checksums(source, tmp_path, codec):
    """Frames damaged before their checksums were taken (e.g. by a faulty writer) never
    crash the decoder: a CodecError naming the frame, or pixels of the right shape (the
    container's CRC vouches for the bytes, so nothing else is checked)."""
    from dicube.core.io import encode_frames
    from dicube.exceptions import CodecError
    from dicube.storage.writer import write_dcbs

    arr = np.ascontiguousarray(source.raw_image[:3, 100:228, 100:228])
    fs = encode_frames(arr, codec=codec)
    good = list(fs.frames)
    rng = np.random.default_rng(13)
    p = tmp_path / "w.dcbs"
    outcomes = set()
    for trial in range(90):
        f = bytearray(good[1])
        if trial % 3 == 0:
            f = f[:int(rng.integers(1, len(f)))]
        else:
            lo = 0 if trial % 3 == 1 else len(f) // 2  # frame headers, then the entropy data
            for _ in range(1 + trial % 4):
                f[int(rng.integers(lo, len(f)))] ^= int(rng.integers(1, 256))
        fs.frames = [good[0], bytes(f), good[2]]
        write_dcbs(p, fs, [])
        try:
            got = dicube.load(p, num_threads=1 + trial % 2).raw_image
        except CodecError as exc:
            assert "frame 1" in str(exc)
            outcomes.add("error")
            continue
        assert np.array_equal(got[[0, 2]], arr[[0, 2]])
        outcomes.add("decoded")
    assert "error" in outcomes
