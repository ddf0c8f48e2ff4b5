"""The lossy variant with a guaranteed error bound (.dcbl): quantised frames behind the
DCMCUBEL magic, the bound proven on every pixel of the shared CT and pydicom's images, the
saved file checked before it replaces anything, the LOSS section validated on read, the
DICOM lossy attributes, independent decoders and hostile files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from cli_helpers import run_cli
from pydicom.data import get_testdata_file

import dicube
from dicube.codecs import bounded, jxl
from dicube.core.image import DicomCubeImage
from dicube.core.pixel_header import PixelDataHeader
from dicube.exceptions import (
    CodecError,
    CodecUnavailableError,
    DataConsistencyError,
    DicomCubeError,
    ErrorBoundError,
    InvalidCubeFileError,
)
from dicube.storage.reader import DcbsReader
from tests.crafting import Crafted

imagecodecs = pytest.importorskip("imagecodecs")


@pytest.fixture(scope="module")
def ct(sample_10):
    return dicube.load_from_dicom_folder(sample_10)


@pytest.fixture(scope="module")
def files(ct, tmp_path_factory):
    d = tmp_path_factory.mktemp("dcbl")
    out = {"l": d / "ct.dcbl", "s": d / "ct.dcbs"}
    sizes = {k: dicube.save(ct, p) for k, p in out.items()}
    return out, sizes


def error(a, b) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def loss_of(path) -> dict:
    with DcbsReader(path) as r:
        return r.section_json(b"LOSS")


def test_bound_on_every_pixel_and_size(ct, files):
    (paths, sizes) = files
    assert paths["l"].read_bytes()[:8] == b"DCMCUBEL"
    back = dicube.load(paths["l"])
    assert back.raw_image.dtype == ct.raw_image.dtype and back.raw_image.shape == ct.raw_image.shape
    assert error(back.raw_image, ct.raw_image) == 3  # RescaleSlope 1: 3 HU, used, not only met
    lowest = ct.raw_image == ct.raw_image.min()  # air/padding exact
    np.testing.assert_array_equal(back.raw_image[lowest], ct.raw_image[lowest])
    assert back.raw_image.max() <= ct.raw_image.max()  # never beyond the source's range
    # the issue asks at most 0.4x the .dcbs: sample_10 0.398 (frames 0.395; both files carry
    # the same ~7 KB head); all 200 slices 0.395 (benchmarks/bench_bound.py)
    frames = {k: sum(len(f) for f in Crafted.read(p).frames) for k, p in paths.items()}
    assert frames["l"] <= 0.40 * frames["s"], frames["l"] / frames["s"]
    assert sizes["l"] <= 0.40 * sizes["s"] + 2000, sizes["l"] / sizes["s"]
    loss = loss_of(paths["l"])
    assert {k: loss[k] for k in ("bound", "step", "offset", "inner", "units", "real_bound")} == \
        {"bound": 3, "step": 7, "offset": int(ct.raw_image.min()), "inner": "jxl", "units": "HU",
         "real_bound": 3.0}
    assert loss["ratio"] == pytest.approx(ct.raw_image.nbytes / sum(
        len(f) for f in Crafted.read(paths["l"]).frames), abs=1e-3)
    with DcbsReader(paths["l"]) as r:
        assert (r.layout.header.variant, r.frame_codec, r.layout.header.bits_stored) == ("l", 5, loss["bits"])
    sub = dicube.load(paths["l"], frames=[7, 2])
    np.testing.assert_array_equal(sub.raw_image, back.raw_image[[7, 2]])
    assert dicube.load_meta(paths["l"]).to_json() == back.dicom_meta.to_json()
    from dicube.data import DcbsDataset

    s = DcbsDataset([paths["l"]], mode="slice", random=False)[4]
    np.testing.assert_array_equal(s.image, back.raw_image[4])


def test_info_shows_variant_codec_bound_ratio(files, capsys):
    paths, _ = files
    rc, out, _ = run_cli(capsys, "info", paths["l"])
    assert rc == 0
    assert ".dcbl v2, bounded frames" in out
    assert "maximum error 3 HU on every pixel (3 stored, steps of 7), inner codec jxl" in out
    rc, out, _ = run_cli(capsys, "info", "--json", paths["l"])
    d = json.loads(out)
    assert (d["variant"], d["frame_codec"]) == ("l", "bounded")
    assert {k: d["loss"][k] for k in ("bound", "units", "inner_codec")} == \
        {"bound": 3.0, "units": "HU", "inner_codec": "jxl"}
    assert d["loss"]["ratio"] > 8
    rc, out, _ = run_cli(capsys, "info", "--json", paths["s"])
    assert json.loads(out)["loss"] is None


def _image(vol, slope=1.0, intercept=0.0):
    ph = PixelDataHeader(RescaleSlope=slope, RescaleIntercept=intercept,
                         OriginalPixelDtype=str(vol.dtype), PixelDtype=str(vol.dtype))
    return DicomCubeImage(vol, ph)


def test_bound_in_real_units(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 3000, (3, 40, 50)).astype(np.int16)
    # slope 2.5: 6 real units -> 2 stored units (5.0 real guaranteed)
    dicube.save(_image(vol, 2.5, -100.0), tmp_path / "a.dcbl", bound=6)
    loss = loss_of(tmp_path / "a.dcbl")
    assert (loss["bound"], loss["real_bound"], loss["units"]) == (2, 5.0, "rescaled")
    assert error(dicube.load(tmp_path / "a.dcbl").raw_image, vol) == 2
    # per-slice slopes: the largest decides, so the bound holds on every slice
    dicube.save(_image(vol, [1.0, 2.0, 1.0], [0.0, 0.0, 0.0]), tmp_path / "b.dcbl", bound=3)
    assert loss_of(tmp_path / "b.dcbl")["bound"] == 1
    # no rescale: stored units, whole numbers
    dicube.save(_image(vol), tmp_path / "c.dcbl", bound=np.int64(4))  # numpy numbers too
    assert (loss_of(tmp_path / "c.dcbl")["units"], loss_of(tmp_path / "c.dcbl")["bound"]) == ("stored", 4)
    with pytest.raises(DataConsistencyError, match="whole number"):
        dicube.save(_image(vol), tmp_path / "d.dcbl", bound=2.5)
    with pytest.raises(DataConsistencyError, match="below one stored unit"):
        dicube.save(_image(vol, 2.5), tmp_path / "d.dcbl", bound=2)
    for bad in (0, -1, float("nan"), "3", True):
        with pytest.raises(DataConsistencyError, match="bound"):
            dicube.save(_image(vol), tmp_path / "d.dcbl", bound=bad)
    with pytest.raises(DicomCubeError, match="file_type 'l'"):
        dicube.save(_image(vol), tmp_path / "d.dcbs", bound=3)
    with pytest.raises(CodecError):
        dicube.save(DicomCubeImage(np.zeros((2, 4, 4), np.float32)), tmp_path / "f.dcbl")
    assert not any(p.name.startswith("d.") or p.name.startswith("f.") for p in tmp_path.iterdir())
    dicube.save(_image(vol), tmp_path / "e.bin", file_type="l", inner="htj2k")
    assert (tmp_path / "e.bin").read_bytes()[:8] == b"DCMCUBEL"
    assert loss_of(tmp_path / "e.bin")["inner"] == "htj2k"


def test_rebuilt_values_stay_in_the_source_range(tmp_path):
    """12-bit data from 1 to 4095 at N = 3: 4095 is q = 585, which alone would rebuild as
    1 + 7 * 585 = 4096, beyond BitsStored 12; the recorded maximum clips it back."""
    vol = np.array([[[1, 4095, 4094, 2000], [4093, 4095, 1, 7]]], np.uint16)
    dicube.save(_image(vol), tmp_path / "x.dcbl", bound=3)
    back = dicube.load(tmp_path / "x.dcbl").raw_image
    assert back.max() == 4095 and back.min() == 1 and error(back, vol) <= 3


@pytest.mark.parametrize("name, bound", [("CT_small.dcm", 1), ("MR_small.dcm", 2),
                                         ("examples_overlay.dcm", 5), ("SC_rgb_small_odd.dcm", 1),
                                         ("examples_palette.dcm", 3)])
def test_pydicom_images(name, bound, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder)
    img = dicube.load_from_dicom_folder(folder)
    dicube.save(img, tmp_path / "x.dcbl", bound=bound)
    back = dicube.load(tmp_path / "x.dcbl")
    assert back.raw_image.dtype == img.raw_image.dtype
    assert 0 < error(back.raw_image, img.raw_image) <= bound
    assert back.dicom_meta.get_values("LossyImageCompression") == ["01"]


@pytest.fixture(scope="module")
def small(ct):
    """3 cropped CT slices with the CT's rescale (quick to save)."""
    return _image(ct.raw_image[:3, 128:384, 128:384].copy(), 1.0, -1024.0)


def test_a_broken_bound_leaves_no_file_and_the_old_one_untouched(small, tmp_path, monkeypatch):
    target = tmp_path / "ct.dcbl"
    target.write_bytes(b"old content")
    real = jxl.encode_batch

    def lossy_encoder(q, *a, **kw):  # an encoder that loses precision on one pixel
        q = q.copy()
        q[2, 100, 200] += 1
        return real(q, *a, **kw)

    monkeypatch.setattr(jxl, "encode_batch", lossy_encoder)
    with pytest.raises(ErrorBoundError, match=r"frame 2, pixel \(100, 200\)") as e:
        dicube.save(small, target)
    assert "ct.dcbl" in str(e.value)
    assert target.read_bytes() == b"old content"
    with pytest.raises(ErrorBoundError):
        dicube.save(small, tmp_path / "new.dcbl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.dcbl"]


def test_the_saved_file_is_what_is_checked(small, tmp_path, monkeypatch):
    """Frames right, file wrong (its LOSS section records another offset): the check decodes
    the written file, so this is caught too."""
    real = bounded.loss_document

    def wrong(params, *a):
        return {**real(params, *a), "offset": params.offset + 4}

    monkeypatch.setattr(bounded, "loss_document", wrong)
    with pytest.raises(ErrorBoundError):
        dicube.save(small, tmp_path / "x.dcbl")
    assert list(tmp_path.iterdir()) == []


def _uid(ds, kw):
    return str(getattr(ds, kw))


def test_dicom_export_carries_the_lossy_attributes(ct, files, sample_10, tmp_path):
    import pydicom
    from streaming_cases import dciodvfy_errors, gdcm_pixels

    paths, _ = files
    out = dicube.save_to_dicom_folder(dicube.load(paths["l"]), tmp_path / "out")
    assert len(out) == 10
    series = set()
    for k in (0, 6):
        ds = pydicom.dcmread(out[k])
        src = pydicom.dcmread(sample_10 / ct.dicom_meta.filenames[k])
        assert error(ds.pixel_array, src.pixel_array) <= 3
        assert error(gdcm_pixels(out[k]), src.pixel_array) <= 3
        assert ds.LossyImageCompression == "01"
        assert list(ds.LossyImageCompressionMethod if ds["LossyImageCompressionMethod"].VM > 1
                    else [ds.LossyImageCompressionMethod]) == ["ISO_18181_1"]
        assert float(ds.LossyImageCompressionRatio) > 8
        assert "maximum error 3 HU" in ds.DerivationDescription
        assert ds.ImageType[0] == "DERIVED"
        assert _uid(ds, "SOPInstanceUID").startswith("2.25.")
        assert _uid(ds, "SOPInstanceUID") != _uid(src, "SOPInstanceUID")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert _uid(ds, "SeriesInstanceUID") != _uid(src, "SeriesInstanceUID")
        series.add(_uid(ds, "SeriesInstanceUID"))
        ref = ds.SourceImageSequence[-1]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == src.SOPClassUID
        code = ref.PurposeOfReferenceCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == \
            ("121320", "DCM", "Uncompressed predecessor")
        assert ds.DerivationCodeSequence[-1].CodeValue == "113040"
        # no dciodvfy error the source does not have
        assert not dciodvfy_errors(out[k]) - dciodvfy_errors(sample_10 / ct.dicom_meta.filenames[k])
    assert len(series) == 1
    # deterministic: the same data and bound give the same UIDs
    again = dicube.save(ct, tmp_path / "again.dcbl")
    assert again and dicube.load_meta(tmp_path / "again.dcbl").to_json() == \
        dicube.load_meta(paths["l"]).to_json()


def test_streaming_serves_rebuilt_values(ct, files, sample_10, tmp_path):
    import io

    import pydicom
    from streaming_cases import dciodvfy_errors, gdcm_pixels

    from dicube.dicom.streaming import DcbStreamingReader

    paths, _ = files
    with DcbStreamingReader(paths["l"]) as r:
        syntaxes = r.available_transfer_syntaxes()
        assert syntaxes[0] in ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202")
        assert "1.2.840.10008.1.2.4.110" not in syntaxes  # the q frames are never served
        for ts in (None, "1.2.840.10008.1.2.1"):
            data = r.get_dicom_for_frame(3, transfer_syntax=ts)
            ds = pydicom.dcmread(io.BytesIO(data))
            assert error(ds.pixel_array, ct.raw_image[3]) == 3
            assert ds.LossyImageCompression == "01" and ds.ImageType[0] == "DERIVED"
            assert ds.RescaleSlope == 1 and ds.BitsStored == 16
    f = tmp_path / "f3.dcm"
    f.write_bytes(data)  # the native instance: GDCM and dciodvfy
    assert error(gdcm_pixels(f), ct.raw_image[3]) == 3
    assert not dciodvfy_errors(f) - dciodvfy_errors(sample_10 / ct.dicom_meta.filenames[3])


def test_independent_decoders_read_the_stored_frames(ct, files, tmp_path):
    """The stored frames are standard lossless JPEG XL codestreams of q: imagecodecs and
    Debian's djxl decode them bit-exactly."""
    paths, _ = files
    q, params = bounded.quantise(ct.raw_image, 3)
    with DcbsReader(paths["l"]) as r:
        frames = [r.codestream(k) for k in range(r.frame_count)]
    for k in (0, 9):
        np.testing.assert_array_equal(imagecodecs.jpegxl_decode(frames[k]), q[k])
    djxl = shutil.which("djxl")
    if djxl is None:
        if os.environ.get("CI"):
            pytest.fail("djxl not found (Debian package libjxl-tools)")
        pytest.skip("djxl not found")
    src, dst = tmp_path / "f.jxl", tmp_path / "f.pgm"
    src.write_bytes(frames[5])
    subprocess.run([djxl, str(src), str(dst), "--bits_per_sample=16", "--quiet"],
                   check=True, capture_output=True, timeout=60)
    data = dst.read_bytes()
    head, body = data.split(b"\n", 3)[:3], data.split(b"\n", 3)[3]
    w, h = map(int, head[1].split())
    got = np.frombuffer(body, ">u2").reshape(h, w).astype(np.int64)
    bits = max(params.bits, 9)  # libjxl codes 16-bit samples with at least 9 bits
    np.testing.assert_array_equal((got * ((1 << bits) - 1) + 32767) // 65535, q[5])


def _crafted_with_loss(path, tmp_path, change: dict, name="bad.dcbl"):
    c = Crafted.read(path)
    doc = {**json.loads(c.section(b"LOSS").raw), **change}
    c.set_section(b"LOSS", json.dumps(doc).encode())
    return c.write(tmp_path / name)


@pytest.mark.parametrize("change", [
    {"step": 9}, {"bound": 0}, {"bits": 16}, {"bits": 0}, {"dtype": "<i2"}, {"dtype": "<f4"},
    {"inner": "jpegls"}, {"offset": -5}, {"high": 70000}, {"offset": 5000}, {"offset": "0"},
    {"ratio": float("nan")}, {"ratio": -1}, {"units": ""}, {"units": "x" * 100},
    {"real_bound": None}, {"bound": True, "step": 3},
], ids=lambda c: ",".join(f"{k}={str(v)[:8]}" for k, v in c.items()))
def test_crafted_loss_values_are_codec_errors(files, tmp_path, change):
    bad = _crafted_with_loss(files[0]["l"], tmp_path, change)
    with pytest.raises(CodecError, match="LOSS") as e:
        dicube.load(bad)
    assert "bad.dcbl" in str(e.value)
    from dicube.commands.info import describe

    with pytest.raises(CodecError, match="LOSS"):
        describe(bad)


def test_verify_fails_on_a_crafted_loss(files, tmp_path, capsys):
    bad = _crafted_with_loss(files[0]["l"], tmp_path, {"step": 9})
    rc, out, _ = run_cli(capsys, "verify", files[0]["l"], bad)
    assert rc == 1
    assert "ct.dcbl: OK" in out and "bad.dcbl: FAILED" in out and "LOSS section" in out


def test_hostile_loss_sections(files, tmp_path):
    path = files[0]["l"]
    c = Crafted.read(path)
    c.sections = [s for s in c.sections if s.kind != b"LOSS"]
    with pytest.raises(CodecError, match="without a LOSS section"):
        dicube.load(c.write(tmp_path / "none.dcbl"))
    for raw in (b"[1, 2]", b"null", b'"text"'):
        c = Crafted.read(path)
        c.set_section(b"LOSS", raw)
        with pytest.raises(DicomCubeError):
            dicube.load(c.write(tmp_path / "x.dcbl"))
    c = Crafted.read(path)  # refused by size before it is parsed
    c.set_section(b"LOSS", b" " * 5000 + c.section(b"LOSS").raw)
    with pytest.raises(CodecError, match="at most 4096"):
        dicube.load(c.write(tmp_path / "big.dcbl"))
    c = Crafted.read(path)
    c.set_section(b"LOSS", c.section(b"LOSS").raw, encoding=1)
    with pytest.raises(CodecError, match="encoding"):
        dicube.load(c.write(tmp_path / "z.dcbl"))


def test_header_and_magic_must_agree(files, tmp_path):
    c = Crafted.read(files[0]["l"])
    c.header["magic"] = b"DCMCUBES"
    with pytest.raises(InvalidCubeFileError, match="frame codec 5"):
        dicube.load(c.write(tmp_path / "a.dcbs"))
    c = Crafted.read(files[0]["s"])
    c.header["magic"] = b"DCMCUBEL"
    with pytest.raises(InvalidCubeFileError, match="frame codec 1"):
        dicube.load(c.write(tmp_path / "b.dcbl"))
    c = Crafted.read(files[0]["l"])
    c.header["bits_stored"] = 12
    with pytest.raises(CodecError, match="header declares 12"):
        dicube.load(c.write(tmp_path / "c.dcbl"))


def test_q_frame_beyond_bits_and_damaged_frames(ct, files, tmp_path):
    path = files[0]["l"]
    bits = loss_of(path)["bits"]
    q = bounded.quantise(ct.raw_image[3:4], 3)[0]
    q[0, 10, 10] = 1 << bits  # one value beyond the recorded bits
    c = Crafted.read(path)
    c.frames[3] = jxl.encode_batch(q, bits_stored=16)[0]
    with pytest.raises(CodecError, match="exceed"):
        dicube.load(c.write(tmp_path / "wide.dcbl"))
    c = Crafted.read(path)
    c.frames[4] = bytes(c.frames[4])[:100]
    with pytest.raises(CodecError, match="frame 4"):
        dicube.load(c.write(tmp_path / "cut.dcbl"))
    np.testing.assert_array_equal(dicube.load(tmp_path / "cut.dcbl", frames=[1]).raw_image,
                                  dicube.load(path, frames=[1]).raw_image)


def test_without_imagecodecs(ct, files, tmp_path, monkeypatch, capsys):
    paths, _ = files
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    with pytest.raises(CodecUnavailableError, match=r"dicube\[archive\]") as e:
        dicube.load(paths["l"])
    assert "ct.dcbl" in str(e.value)
    assert dicube.load_meta(paths["l"]) is not None  # the head needs no codec
    rc, out, _ = run_cli(capsys, "info", paths["l"])
    assert rc == 0 and "maximum error 3 HU" in out
    with pytest.raises(CodecUnavailableError):
        dicube.save(ct, tmp_path / "x.dcbl", inner="jxl")
    # by default the quantised values fall back to HTJ2K, which needs no imagecodecs to read
    with pytest.warns(UserWarning, match="HTJ2K instead"):
        dicube.save(ct, tmp_path / "h.dcbl")
    assert loss_of(tmp_path / "h.dcbl")["inner"] == "htj2k"
    assert error(dicube.load(tmp_path / "h.dcbl").raw_image, ct.raw_image) == 3
    monkeypatch.setitem(sys.modules, "imagecodecs",
                        types.SimpleNamespace(JPEGXL=types.SimpleNamespace(available=False)))
    with pytest.raises(CodecUnavailableError, match="no JPEG XL"):
        dicube.load(paths["l"])
