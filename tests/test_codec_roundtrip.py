"""HTJ2K codec: bit-exact round trips, checked against independent decoders and encoders."""
from __future__ import annotations

import struct

import imagecodecs
import numpy as np
import openjpeg
import pytest

from dicube.exceptions import CodecError

from codec_cases import ct_slices, synthetic_images
from dicube.codecs.jph import (
    HAS_TLM,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    decode_batch,
    encode_batch,
    imdecode_jph,
    imencode_jph,
    read_header,
)

CASES = synthetic_images()


def tile_parts(cs: bytes) -> int:
    """Number of tile-parts (SOT segments, followed through their Psot lengths)."""
    pos, count = cs.find(b"\xff\x90", 2), 0
    while cs[pos:pos + 2] == b"\xff\x90":
        count += 1
        pos += struct.unpack_from(">I", cs, pos + 6)[0] or len(cs) - 2 - pos
    assert cs[pos:] == b"\xff\xd9"
    return count


def imagecodecs_decode(data: bytes, shape) -> np.ndarray:
    """imagecodecs returns colour images as (samples, rows, columns); bring samples last."""
    arr = imagecodecs.htj2k_decode(data)
    if len(shape) == 3 and arr.shape == (shape[2],) + tuple(shape[:2]):
        arr = np.moveaxis(arr, 0, -1)
    return arr


@pytest.mark.parametrize("name,image,bits", CASES, ids=[c[0] for c in CASES])
def test_synthetic_round_trip_and_oracles(name, image, bits):
    data = imencode_jph(image, bits_stored=bits)
    info = read_header(data)
    assert info.reversible and info.high_throughput and info.progression == "RPCL"
    assert info.bits_stored == (bits or (image.dtype.itemsize * 8 if image.dtype.itemsize < 4 else info.bits_stored))
    assert info.signed == (image.dtype.kind == "i")

    ours = imdecode_jph(data)
    assert ours.dtype == image.dtype and ours.shape == image.shape
    np.testing.assert_array_equal(ours, image)

    # A separate OpenJPH build (imagecodecs) and OpenJPEG (pylibjpeg-openjpeg) agree bit for bit.
    np.testing.assert_array_equal(imagecodecs_decode(data, image.shape).reshape(image.shape), image)
    np.testing.assert_array_equal(openjpeg.decode(data).reshape(image.shape), image)


def test_real_ct_slices_decode_identically_everywhere(sample_200):
    for name, image, bits in ct_slices(sample_200, count=4):
        data = imencode_jph(image, bits_stored=bits)
        info = read_header(data)
        # With TLM (OpenJPH > 0.9): one tile-part per resolution, listed in TLM, hence .202.
        assert info.transfer_syntax == (HTJ2K_LOSSLESS_RPCL if HAS_TLM else HTJ2K_LOSSLESS)
        assert info.tlm is HAS_TLM
        assert info.tlm_tile_parts == (info.levels + 1 if HAS_TLM else 0)
        assert tile_parts(data) == (info.levels + 1 if HAS_TLM else 1)
        np.testing.assert_array_equal(imdecode_jph(data), image, err_msg=name)
        np.testing.assert_array_equal(imagecodecs.htj2k_decode(data), image, err_msg=name)
        np.testing.assert_array_equal(openjpeg.decode(data), image, err_msg=name)


def test_tight_bits_stored_on_ct(sample_10):
    _, image, _ = ct_slices(sample_10, count=1)[0]
    bits = int(image.max()).bit_length()
    tight = imencode_jph(image, bits_stored=bits)
    assert read_header(tight).bits_stored == bits
    np.testing.assert_array_equal(imdecode_jph(tight), image)
    np.testing.assert_array_equal(openjpeg.decode(tight), image)


@pytest.mark.parametrize("name,image,bits", [c for c in CASES if c[1].ndim == 2 and c[1].dtype.itemsize <= 2][:6])
def test_we_read_imagecodecs_codestreams(name, image, bits):
    # imagecodecs' bundled OpenJPH initialises tables unsafely across threads: encode single-threaded.
    levels = min(5, int(np.ceil(np.log2(max(image.shape)))))
    data = imagecodecs.htj2k_encode(image, resolutions=levels)  # imagecodecs' "resolutions" are levels
    np.testing.assert_array_equal(imdecode_jph(data), image)


def test_too_many_levels_for_the_image_are_refused_not_misdecoded():
    # imagecodecs writes 5 levels even for an 8x6 image; OpenJPH 0.9 would decode garbage.
    image = np.array([[0, 65535]] * 8, dtype=np.uint16).repeat(3, 1)
    data = imagecodecs.htj2k_encode(image)
    try:
        np.testing.assert_array_equal(imdecode_jph(data), image)
    except CodecError as exc:
        assert "decomposition levels" in str(exc)


def test_we_read_imagecodecs_ct_codestreams(sample_10):
    for name, image, _ in ct_slices(sample_10, count=3):
        data = imagecodecs.htj2k_encode(image)
        assert read_header(data).checksum is None
        np.testing.assert_array_equal(imdecode_jph(data), image, err_msg=name)


def test_batch_matches_single_and_is_thread_count_independent(sample_10):
    volume = np.stack([img for _, img, _ in ct_slices(sample_10, count=6)])
    one = encode_batch(volume, bits_stored=12, num_threads=1)
    two = encode_batch(volume, bits_stored=12, num_threads=2)
    assert one == two
    assert one[2] == imencode_jph(volume[2], bits_stored=12)

    out = np.zeros_like(volume)
    result = decode_batch(two, out, num_threads=2)
    assert result is out
    np.testing.assert_array_equal(out, volume)
    np.testing.assert_array_equal(decode_batch(one, num_threads=1), volume)


def test_rgb_batch():
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_batch(encode_batch(vol)), vol)


def test_colour_transform_is_lossless_and_flagged():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    data = imencode_jph(image, color_transform=True)
    assert read_header(data).color_transform
    np.testing.assert_array_equal(imdecode_jph(data), image)
    np.testing.assert_array_equal(imagecodecs_decode(data, image.shape), image)
    np.testing.assert_array_equal(openjpeg.decode(data), image)


def test_decode_into_out_array():
    image = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    data = imencode_jph(image)
    out = np.empty_like(image)
    assert imdecode_jph(data, out=out) is out
    np.testing.assert_array_equal(out, image)


def test_reduced_resolution_decode():
    yy, xx = np.mgrid[0:256, 0:200]
    image = (1000 + 500 * np.sin(xx / 20) * np.cos(yy / 25)).astype(np.uint16)
    data = imencode_jph(image)
    half = imdecode_jph(data, reduce=1)
    quarter = imdecode_jph(data, reduce=2)
    assert half.shape == (128, 100) and quarter.shape == (64, 50)
    # The 5/3 low-pass band of a smooth image stays close to the samples it is centred on.
    assert np.abs(quarter.astype(float) - image[::4, ::4]).max() < 25
    assert np.abs(half.astype(float) - image[::2, ::2]).max() < 10
    constant = imencode_jph(np.full((64, 64), 321, np.uint16))
    np.testing.assert_array_equal(imdecode_jph(constant, reduce=3), np.full((8, 8), 321))


def test_levels_grow_for_large_images_to_meet_base_resolution():
    image = np.zeros((1, 4100), np.uint8)
    assert read_header(imencode_jph(np.zeros((64, 64), np.uint8))).levels == 5
    big = np.zeros((3000, 2500), np.uint8)
    assert read_header(imencode_jph(big)).levels == 6  # 3000 >> 6 = 46 <= 64
    np.testing.assert_array_equal(imdecode_jph(imencode_jph(image)), image)


def test_checksum_is_optional_and_invisible_to_other_decoders():
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    with_sum, without = imencode_jph(image), imencode_jph(image, checksum=False)
    assert read_header(with_sum).checksum is not None and read_header(without).checksum is None
    assert len(with_sum) == len(without) + 28
    np.testing.assert_array_equal(imagecodecs.htj2k_decode(with_sum), imagecodecs.htj2k_decode(without))
