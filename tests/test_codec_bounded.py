"""Bounded-error frames (dicube.codecs.bounded), the lossy variant's codec: the bound proven
on every pixel of the shared CT for N = 1, 2, 3, 5, the size goal at the default bound,
independent decoding of the quantised frames, typed errors for broken bounds and damage."""
from __future__ import annotations

import numpy as np
import pytest

import dicube
from dicube.codecs import bounded, jph, jxl
from dicube.exceptions import CodecError, ErrorBoundError

imagecodecs = pytest.importorskip("imagecodecs")


@pytest.fixture(scope="module")
def ct20(sample_200) -> np.ndarray:
    """Every 20th slice of the shared 200-slice CT (uint16, RescaleSlope 1: stored units are HU)."""
    return dicube.load_from_dicom_folder(sample_200).raw_image[::20].copy()


@pytest.fixture(scope="module")
def htj2k_size(ct20) -> int:
    return sum(map(len, jph.encode_batch(ct20, bits_stored=16)))


def proven(vol, params, frames) -> np.ndarray:
    """Decode, then check the bound on every pixel ourselves (not only via verify_batch)."""
    out = np.empty_like(vol)
    bounded.decode_batch(frames, params, out)
    err = np.abs(out.astype(np.int32) - vol.astype(np.int32))
    assert err.max() <= params.bound
    assert err.max() == params.bound  # the bound is used, not just met: the test is not vacuous
    np.testing.assert_array_equal(bounded.verify_batch(frames, params, vol), out)
    return out


# Size relative to HTJ2K lossless measured on every 10th slice (docs/variants.md):
# 0.566 / 0.457 / 0.394 / 0.323; the issue asked at most 0.4 at the default bound 3.
@pytest.mark.parametrize("n, most", [(1, 0.60), (2, 0.49), (3, 0.40), (5, 0.34)])
def test_ct_bound_on_every_pixel_and_size(ct20, htj2k_size, n, most):
    params, frames = bounded.encode_batch(ct20, n)
    assert (params.bound, params.step, params.inner) == (n, 2 * n + 1, "jxl")
    rebuilt = proven(ct20, params, frames)
    size = sum(map(len, frames))
    assert size <= most * htj2k_size, (n, size / htj2k_size)
    # padding / air at the volume's minimum comes back exact
    lowest = ct20 == ct20.min()
    np.testing.assert_array_equal(rebuilt[lowest], ct20[lowest])


def test_htj2k_inner_codec_bound_and_independent_decoder(ct20):
    """The HTJ2K fallback: bound proven; imagecodecs' own OpenJPH decodes the quantised
    frames to the same q (a standard lossless HTJ2K image with the step in RescaleSlope)."""
    vol = ct20[:3]
    params, frames = bounded.encode_batch(vol, 3, inner="htj2k")
    proven(vol, params, frames)
    q, _ = bounded.quantise(vol, 3)
    for k, data in enumerate(frames):
        np.testing.assert_array_equal(imagecodecs.htj2k_decode(data), q[k])
    slope, intercept = bounded.dicom_rescale(params, 1.0, -1024.0)
    real = slope * q.astype(np.float64) + intercept
    assert np.abs(real - (vol.astype(np.float64) - 1024.0)).max() <= 3


def test_signed_and_colour_images_keep_the_bound():
    from pydicom.data import get_testdata_file
    import pydicom

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array[None]  # int16
    for inner in bounded.INNER_CODECS:
        params, frames = bounded.encode_batch(ct, 2, inner=inner)
        assert params.dtype == "<i2" and params.offset == int(ct.min())
        proven(ct, params, frames)
    rgb = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm")).pixel_array[None]
    params, frames = bounded.encode_batch(rgb, 1)
    proven(rgb, params, frames)


def test_extremes_of_the_type_stay_within_bound():
    """Rebuilt values are clipped to the stored type, never wrapped."""
    vol = np.array([[[0, 1, 65534, 65535], [32767, 2, 3, 65533]]], np.uint16)
    params, frames = bounded.encode_batch(vol, 5, inner="htj2k")
    out = bounded.decode_batch(frames, params, np.empty_like(vol))
    assert np.abs(out.astype(np.int64) - vol).max() <= 5


def test_broken_bound_is_a_typed_error(ct20):
    vol = ct20[:2, 224:288, 224:288]
    params, frames = bounded.encode_batch(vol, 2, inner="htj2k")
    rebuilt = bounded.decode_batch(frames, params, np.empty_like(vol))
    rebuilt[1, 10, 20] = vol[1, 10, 20] + 3
    with pytest.raises(ErrorBoundError, match=r"frame 1, pixel \(10, 20\)"):
        bounded.check_bound(vol, rebuilt, 2)
    # frames that rebuild another image fail verify_batch (e.g. a wrong recorded offset)
    shifted = bounded.BoundedParams(**{**params.to_dict(), "offset": params.offset + 3})
    with pytest.raises(ErrorBoundError):
        bounded.verify_batch(frames, shifted, vol)


def test_bad_arguments_and_recorded_parameters(ct20):
    for n in (0, -1, 2.5, True, bounded.MAX_BOUND + 1):
        with pytest.raises(CodecError, match="bound"):
            bounded.quantise(ct20[:1], n)
    with pytest.raises(CodecError, match="inner"):
        bounded.quantise(ct20[:1], 1, inner="jpegls")
    with pytest.raises(CodecError):
        bounded.quantise(ct20[:1].astype(np.float32), 1)
    good = bounded.quantise(ct20[:1], 3)[1].to_dict()
    assert bounded.BoundedParams.from_dict(good).to_dict() == good
    for change in ({"step": 8}, {"bound": 0, "step": 1}, {"bits": 17}, {"inner": "x"},
                   {"dtype": "<f4"}, {"offset": "0"}, {"dtype": 3}):
        with pytest.raises(CodecError, match="bounded-error parameters"):
            bounded.BoundedParams.from_dict({**good, **change})
    with pytest.raises(CodecError):
        bounded.BoundedParams.from_dict({"bound": 1})
    q, params = bounded.quantise(ct20[:1], 3)
    with pytest.raises(CodecError, match="C-contiguous"):  # a strided out would lose the values
        bounded.dequantise(q, params, np.empty((1, 512, 1024), np.uint16)[:, :, ::2])


def test_damaged_frames_and_foreign_values_are_codec_errors(ct20):
    vol = ct20[:2, 224:288, 224:288]
    out = np.empty_like(vol)
    params, frames = bounded.encode_batch(vol, 1)
    with pytest.raises(CodecError):
        bounded.decode_batch([frames[0], frames[1][:40]], params, out)
    with pytest.raises(CodecError, match="type"):
        bounded.decode_batch(frames, params, np.empty(vol.shape, np.int16))
    # frames holding values beyond the recorded bits (a 16-bit image) are refused
    wide = jxl.encode_batch(vol)
    narrow = bounded.BoundedParams(**{**params.to_dict(), "bits": 9})
    with pytest.raises(CodecError):
        bounded.decode_batch(wide, narrow, out)
    hparams, hframes = bounded.encode_batch(vol, 1, inner="htj2k")
    with pytest.raises(CodecError):
        bounded.decode_batch([hframes[0], b"\xff\x4f\xff\x51" + b"\x00" * 30], hparams, out)
