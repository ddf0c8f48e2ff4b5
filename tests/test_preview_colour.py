"""Previews show what a viewer shows: YBR and palette colour as RGB, MONOCHROME1 inverted,
from a .dcbs and from its DICOM folder alike (pydicom's colour test files)."""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

import dicube
from dicube.preview import apply_window, get_image, mosaic
from dicube.preview.colour import _YBR_PARTIAL, Photometric, photometric, to_display


def _sources(name: str, tmp_path) -> tuple:
    """(DICOM folder holding pydicom's test file ``name``, the .dcbs converted from it)."""
    folder = tmp_path / name.replace(".dcm", "")
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder / name)
    path = tmp_path / (folder.name + ".dcbs")
    dicube.save(dicube.load_from_dicom_folder(folder), path)
    return folder, path


def _viewer_rgb(name: str) -> np.ndarray:
    """What a viewer shows: pydicom's samples converted to RGB, (frames, rows, cols, 3)."""
    ds = pydicom.dcmread(get_testdata_file(name))
    arr = pixel_array(ds, as_rgb=False)
    if ds.PhotometricInterpretation.startswith("YBR_FULL"):
        arr = convert_color_space(arr, ds.PhotometricInterpretation, "RGB")
    return arr.reshape((-1,) + arr.shape[-3:]).astype(np.int16)


def test_ybr_full_jpeg_red_bar_is_red(tmp_path):
    """SC_rgb_jpeg_dcmtk (JPEG baseline, YBR_FULL): the red bar used to come out as
    (76, 85, 255), its Y, Cb, Cr shown as R, G, B."""
    ref = _viewer_rgb("SC_rgb_jpeg_dcmtk.dcm")[0]
    assert tuple(ref[5, 50]) == (254, 0, 0)  # the top bar is red
    for source in _sources("SC_rgb_jpeg_dcmtk.dcm", tmp_path):
        out = tmp_path / f"{source.name}.png"
        p = get_image(source, out, position=0.0, image_width=100)
        img = np.asarray(Image.open(out)).astype(np.int16)
        assert np.array_equal(img, np.asarray(p.image))  # PNG: lossless
        assert p.image.mode == "RGB" and p.window_source == "full range"
        assert np.abs(img - ref).max() <= 1, source  # pydicom rounds, we round once later
        r, g, b = img[2:9, 10:90].reshape(-1, 3).mean(axis=0)
        assert r > 240 and g < 10 and b < 10, (source, r, g, b)
        jpg = tmp_path / f"{source.name}.jpg"  # lossy output keeps the colour too
        get_image(source, jpg, position=0.0, image_width=100, quality=90)
        r, g, b = np.asarray(Image.open(jpg))[2:9, 10:90].reshape(-1, 3).mean(axis=0)
        assert r > 200 and g < 40 and b < 40, (source, r, g, b)


def test_ybr_full_422_cine_mosaic(tmp_path):
    """pydicom's 30-frame ultrasound (204_US_S1 when converted; YBR_FULL_422 JPEG): tiles
    equal the frames a viewer shows, first and last frame, from both sources (it
    rendered cyan)."""
    ref = _viewer_rgb("examples_ybr_color.dcm")
    for source in _sources("examples_ybr_color.dcm", tmp_path):
        m = mosaic(source, tile_width=2, tile_height=1, image_width=320)
        assert m.slices == [0, 29] and m.image.mode == "RGB"
        img = np.asarray(m.image).astype(np.int16)
        for k, frame in enumerate(m.slices):
            tile = img[:, k * 320:(k + 1) * 320]
            assert np.abs(tile - ref[frame]).max() <= 1, (source, frame)
        # reduced-resolution tiles (decoded at 1/4 from the .dcbs) keep the colours
        small = np.asarray(mosaic(source, tile_width=2, tile_height=1, image_width=80).image)
        means = ref[0].reshape(60, 4, 80, 4, 3).mean(axis=(1, 3))
        assert np.abs(small[:, :80].astype(float) - means).mean() < 6, source


def test_uncompressed_ybr_full_422(tmp_path):
    ref = _viewer_rgb("SC_ybr_full_422_uncompressed.dcm")[0]
    for source in _sources("SC_ybr_full_422_uncompressed.dcm", tmp_path):
        img = np.asarray(get_image(source, position=0.0, image_width=100).image).astype(np.int16)
        assert np.abs(img - ref).max() <= 1, source


def test_ybr_rct_samples_are_already_rgb(tmp_path):
    """JPEG 2000 YBR_RCT: the decoder undid the transform; the samples are shown as they are."""
    ds = pydicom.dcmread(get_testdata_file("examples_jpeg2k.dcm"))
    ref = ds.pixel_array.astype(np.int16)
    for source in _sources("examples_jpeg2k.dcm", tmp_path):
        img = np.asarray(get_image(source, position=0.0, image_width=640).image).astype(np.int16)
        assert np.array_equal(img, ref), source


def test_palette_colour(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    rgb16 = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    ref = apply_window(rgb16, 65536, 32768).astype(np.int16)  # 16-bit table, full range
    assert ref.max() > 200 and len(np.unique(ref.reshape(-1, 3), axis=0)) > 50
    for source in _sources("examples_palette.dcm", tmp_path):
        p = get_image(source, position=0.0, image_width=800)
        assert p.image.mode == "RGB" and p.window == (65536.0, 32768.0)
        assert np.array_equal(np.asarray(p.image).astype(np.int16), ref), source
        # small tiles: indices are looked up at full resolution, then resized
        small = np.asarray(get_image(source, position=0.0, image_width=200).image, float)
        expect = Image.fromarray(ref.astype(np.uint8)).resize((200, 88), Image.LANCZOS)
        assert np.abs(small - np.asarray(expect, float)).mean() < 3


def test_monochrome1_is_inverted(sample_10, tmp_path):
    name = sorted(os.listdir(sample_10))[0]
    ds = pydicom.dcmread(os.path.join(sample_10, name))
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.PhotometricInterpretation = "MONOCHROME1"
    folder = tmp_path / "m1"
    folder.mkdir()
    ds.save_as(folder / name)
    path = tmp_path / "m1.dcbs"
    dicube.save(dicube.load_from_dicom_folder(folder), path)
    for source in (folder, path):
        p = get_image(source, position=0.0, image_width=512, contrast="350,50")
        assert p.image.mode == "L"
        assert np.array_equal(np.asarray(p.image), 255 - apply_window(values, 350, 50)), source


def test_ybr_partial_inverse():
    """YBR_PARTIAL_422/420 back to RGB by the inverse of PS3.3's equations."""
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.float64)
    ybr = rgb @ _YBR_PARTIAL.T + [16, 128, 128]
    for name in ("YBR_PARTIAL_422", "YBR_PARTIAL_420"):
        back = to_display(ybr.astype(np.float32), Photometric(name, 8))
        assert np.abs(back - rgb).max() < 0.05
    full = convert_color_space(rgb.astype(np.uint8), "RGB", "YBR_FULL")
    back = to_display(full.astype(np.float32), Photometric("YBR_FULL", 8))
    assert np.abs(back - rgb).max() <= 1.5  # pydicom rounded the forward conversion


def test_unusable_palettes_are_grey_and_logged(caplog):
    base = {"00280004": {"vr": "CS", "Value": ["PALETTE COLOR"]},
            "00280101": {"vr": "US", "Value": [8]}}
    desc = {f"0028110{c}": {"vr": "US", "Value": [256, 0, 16]} for c in "123"}
    huge = {f"0028120{c}": {"vr": "OW", "InlineBinary": "AAAA" * 100000} for c in "123"}
    short = {f"0028120{c}": {"vr": "OW", "InlineBinary": "AAAA"} for c in "123"}
    segmented = {f"0028122{c}": {"vr": "OW", "InlineBinary": "AAAA"} for c in "123"}
    with caplog.at_level(logging.WARNING, "dicube.preview"):
        for extra in ({}, {**desc, **huge}, {**desc, **segmented}):
            p = photometric({**base, **extra}, "x.dcm")
            assert p.palette is None and p.name == "PALETTE COLOR"
            values = np.arange(12, dtype=np.float32).reshape(3, 4)
            assert to_display(values, p) is values  # shown in grey
        p = photometric({**base, **desc, **short}, "x.dcm")
        assert p.palette is None or p.palette[0].shape == (256, 3)
    assert caplog.text.count("x.dcm") >= 3
