"""Bad input to the codec: typed errors, never a crash, hang or silently wrong pixels."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dicube.codecs.jph import decode_batch, encode_batch, imdecode_jph, imencode_jph
from dicube.exceptions import CodecError, DicomCubeError

FUZZ = Path(__file__).with_name("fuzz_codec.py")


def run_fuzz(mode: str, seed: int, count: int, slice_path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(FUZZ), mode, str(seed), str(count), str(slice_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"decoder process died (code {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_slice(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_file())[0]


def test_fuzz_our_codestreams_error_or_exact(sample_10):
    counts = run_fuzz("ours", 1, 400, first_slice(sample_10))
    # Our checksum catches every change that would alter the pixels.
    assert counts["different"] == 0, counts
    assert counts["error"] > 300 and sum(counts.values()) - counts["crash_reported"] == 400


def test_fuzz_foreign_codestreams_never_crash(sample_10):
    # imagecodecs' codestreams carry no checksum: altered entropy-coded data can decode to
    # other pixels (nothing in JPEG 2000 can tell), but the interpreter must survive.
    counts = run_fuzz("foreign", 2, 300, first_slice(sample_10))
    assert counts["error"] > 150 and sum(counts.values()) - counts["crash_reported"] == 300, counts


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\x4f", b"\xff\x4f\xff\x51\x00", bytes(range(256)) * 4])
def test_garbage_raises_codec_error(data):
    with pytest.raises(CodecError):
        imdecode_jph(data)


def test_codec_error_is_a_dicube_error():
    with pytest.raises(DicomCubeError):
        imdecode_jph(b"not a codestream")


def test_values_beyond_bits_stored_are_refused_not_truncated():
    image = np.array([[0, 4095], [4096, 1]], dtype=np.uint16)
    with pytest.raises(CodecError, match=r"\[0, 4096\].*12-bit unsigned"):
        imencode_jph(image, bits_stored=12)
    with pytest.raises(CodecError, match="-2049"):
        imencode_jph(np.array([[-2049, 0]], dtype=np.int16), bits_stored=12)
    with pytest.raises(CodecError, match="frame 1"):
        encode_batch(np.stack([image % 4096, image]), bits_stored=12)


@pytest.mark.parametrize(
    "image,kwargs",
    [
        (np.zeros((4, 4), np.float32), {}),
        (np.zeros((4, 4), np.int64), {}),
        (np.zeros((4, 4), bool), {}),
        (np.zeros((4, 4, 4), np.uint8), {}),
        (np.zeros(16, np.uint8), {}),
        (np.zeros((0, 4), np.uint8), {}),
        (np.zeros((4, 4), np.uint8), {"bits_stored": 9}),
        (np.zeros((4, 4), np.uint8), {"bits_stored": 0}),
        (np.zeros((4, 4), np.uint8), {"progression": "XYZW"}),
        (np.zeros((4, 4), np.uint8), {"block_size": (64, 128)}),
        (np.zeros((4, 4), np.uint32) + (1 << 22), {}),
    ],
)
def test_bad_encode_arguments(image, kwargs):
    with pytest.raises(CodecError):
        imencode_jph(image, **kwargs)


def test_out_array_must_match():
    data = imencode_jph(np.zeros((8, 8), np.uint16))
    for bad in (np.zeros((8, 9), np.uint16), np.zeros((8, 8), np.int16), np.zeros((8, 8), np.uint16).T[:, ::1][::2]):
        with pytest.raises(CodecError):
            imdecode_jph(data, out=bad)
    ro = np.zeros((8, 8), np.uint16)
    ro.flags.writeable = False
    with pytest.raises(CodecError):
        imdecode_jph(data, out=ro)


def test_batch_names_the_corrupt_frame():
    frames = encode_batch(np.arange(5 * 32 * 32, dtype=np.uint16).reshape(5, 32, 32))
    frames[3] = frames[3][:-10]
    with pytest.raises(CodecError, match="frame 3: checksum mismatch"):
        decode_batch(frames, num_threads=2)


def test_mismatched_frames_in_a_batch():
    a = imencode_jph(np.zeros((8, 8), np.uint16))
    b = imencode_jph(np.zeros((8, 10), np.uint16))
    with pytest.raises(CodecError, match="frame 1"):
        decode_batch([a, b])


def test_isolated_decode_survives_and_matches():
    image = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    data = imencode_jph(image, checksum=False)
    np.testing.assert_array_equal(imdecode_jph(data, isolate=True), image)
    np.testing.assert_array_equal(imdecode_jph(data, isolate=False), image)
    with pytest.raises(CodecError):
        imdecode_jph(data[: len(data) // 2], isolate=True)


@pytest.mark.parametrize("dtype,bits,declared", [
    (np.uint8, 8, 4), (np.int8, 8, 4), (np.uint16, 16, 12), (np.int16, 16, 12),
    (np.uint32, 20, 12), (np.int32, 20, 12)])
def test_decoded_values_beyond_the_declared_precision_are_corruption(dtype, bits, declared):
    """A SIZ claiming fewer bits than the samples have (checksum recomputed): every sample type
    of the decoder's row store (the AVX2 one included) refuses, no value is truncated."""
    from crafting import set_codestream_byte

    info = np.iinfo(dtype)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if info.min < 0 else (0, (1 << bits) - 1)
    image = np.random.default_rng(0).integers(lo, hi, (64, 96), dtype=dtype, endpoint=True)
    cs = imencode_jph(image, bits_stored=bits)
    ssiz = cs.index(b"\xff\x51") + 40  # SIZ: marker, length, Rsiz, 8 x 4 bytes, Csiz; then Ssiz
    assert (cs[ssiz] & 0x7F) + 1 == bits
    bad = set_codestream_byte(cs, ssiz, (cs[ssiz] & 0x80) | (declared - 1))
    with pytest.raises(CodecError, match="outside the declared precision"):
        imdecode_jph(bad)
    np.testing.assert_array_equal(imdecode_jph(cs), image)
