"""Streaming .dcba frames: HTJ2K Lossless re-encoded on the fly by default (byte for byte
what a .dcbs of the same series serves), native syntaxes on request, JPEG XL Lossless
(.110, the stored codestream) only when asked; signed samples relabelled as unsigned
with the rescale intercept moved (PS3.5 8.2.15); typed errors for syntaxes a file cannot
give."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pydicom
import pytest
from helpers_dicom import dataset_differences
from pydicom.data import get_testdata_file
from streaming_cases import (
    BUILD_HTJ2K_SYNTAX,
    EXPLICIT_LE,
    dciodvfy_errors,
    gdcm_pixels,
    read,
)

import dicube
from dicube.dicom import DcbStreamingReader
from dicube.exceptions import UnsupportedTransferSyntaxError
from dicube.storage.reader import DcbsReader
from tests.dcba_cases import sample_10_files

imagecodecs = pytest.importorskip("imagecodecs")

IMPLICIT_LE = "1.2.840.10008.1.2"
JXL = "1.2.840.10008.1.2.4.110"
HTJ2K_SYNTAXES = {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}


@pytest.fixture(scope="module")
def files_10(sample_10):
    """sample_10 as .dcba, .dcbs and zstd-plane .dcbs."""
    return sample_10_files(sample_10)


def _one_file(name, tmp_path, suffix=".dcba"):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder)
    path = tmp_path / f"x{suffix}"
    dicube.save(dicube.load_from_dicom_folder(folder), path)
    return path, pydicom.dcmread(get_testdata_file(name))


def _fragment(data: bytes) -> bytes:
    """The one fragment of an encapsulated single-frame instance."""
    from pydicom.encaps import generate_fragments

    frags = list(generate_fragments(read(data).PixelData))
    assert frags[0] in (b"", b"\0\0\0\0") and len(frags) == 2
    return frags[1]


def test_available_syntaxes(files_10):
    with DcbStreamingReader(files_10["a"]) as a, DcbStreamingReader(files_10["s"]) as s, \
            DcbStreamingReader(files_10["z"]) as z:
        assert a.available_transfer_syntaxes()[0] == BUILD_HTJ2K_SYNTAX
        assert {JXL, EXPLICIT_LE, IMPLICIT_LE} <= set(a.available_transfer_syntaxes())
        assert s.available_transfer_syntaxes() == (BUILD_HTJ2K_SYNTAX, EXPLICIT_LE, IMPLICIT_LE) \
            or s.available_transfer_syntaxes()[:2] == (BUILD_HTJ2K_SYNTAX, "1.2.840.10008.1.2.4.201")
        assert z.available_transfer_syntaxes() == (EXPLICIT_LE, IMPLICIT_LE)


def test_default_is_htj2k_identical_to_dcbs(files_10, sample_10, tmp_path):
    """Every frame of the .dcba is served as the very bytes the .dcbs serves (same HTJ2K
    encoder and precision, same data set); pydicom (pylibjpeg) and GDCM decode them."""
    with DcbStreamingReader(files_10["a"]) as a, DcbStreamingReader(files_10["s"]) as s:
        for i in range(len(a)):
            got = a.get_dicom_for_frame(i)
            assert got == s.get_dicom_for_frame(i), i
            assert a.get_dicom_for_frame(i, transfer_syntax=EXPLICIT_LE) == \
                s.get_dicom_for_frame(i, force_uncompressed=True)
        ds = read(got, plugin="pylibjpeg")
        assert ds.file_meta.TransferSyntaxUID == BUILD_HTJ2K_SYNTAX
        src = pydicom.dcmread(sample_10 / a.meta.filenames[i])
        assert dataset_differences(src, ds) == []
        np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)
        (tmp_path / "f.dcm").write_bytes(got)
        np.testing.assert_array_equal(gdcm_pixels(tmp_path / "f.dcm"), src.pixel_array)
        # this dciodvfy does not know HTJ2K: it checks the native instance
        (tmp_path / "u.dcm").write_bytes(a.get_dicom_for_frame(i, transfer_syntax=EXPLICIT_LE))
        assert not dciodvfy_errors(tmp_path / "u.dcm") - dciodvfy_errors(sample_10 / a.meta.filenames[i])


def test_implicit_vr(files_10):
    with DcbStreamingReader(files_10["a"]) as a:
        data = a.get_dicom_for_frame(2, transfer_syntax=IMPLICIT_LE)
    ds = read(data)
    assert ds.file_meta.TransferSyntaxUID == IMPLICIT_LE and ds.is_implicit_VR
    np.testing.assert_array_equal(ds.pixel_array, dicube.load(files_10["s"], frames=[2]).raw_image[0])


def test_jxl_on_request_is_the_stored_codestream(files_10):
    with DcbStreamingReader(files_10["a"]) as a, DcbsReader(files_10["a"]) as raw:
        for i in (0, 9):
            data = a.get_dicom_for_frame(i, transfer_syntax=JXL)
            frag = _fragment(data)
            stored = raw.codestream(i)
            assert frag[:len(stored)] == stored and frag[len(stored):] in (b"", b"\0")
            ds = read(data)
            assert ds.file_meta.TransferSyntaxUID == JXL
            assert (ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 15, 0)
            np.testing.assert_array_equal(imagecodecs.jpegxl_decode(stored),
                                          dicube.load(files_10["s"], frames=[i]).raw_image[0])
            full = read(data)
            del full.PixelData
            assert dataset_differences(full, a.get_dataset(i, transfer_syntax=JXL)) == []


def test_signed_ct_as_jxl_keeps_real_values(tmp_path):
    """CT_small (int16, RescaleIntercept -1024): the stored stream holds x + 32768, served as
    unsigned with RescaleIntercept -33792, so every rescaled value (HU) is unchanged."""
    path, src = _one_file("CT_small.dcm", tmp_path)
    with DcbStreamingReader(path) as a:
        assert JXL in a.available_transfer_syntaxes()
        jxl_bytes = a.get_dicom_for_frame(0, transfer_syntax=JXL)
        default = read(a.get_dicom_for_frame(0), plugin="pylibjpeg")
    ds = read(jxl_bytes)
    assert ds.PixelRepresentation == 0 and ds.BitsStored == 16
    assert float(ds.RescaleIntercept) == float(src.RescaleIntercept) - 32768
    decoded = imagecodecs.jpegxl_decode(_fragment(jxl_bytes))
    assert decoded.dtype == np.uint16
    real = decoded * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(real, src.pixel_array * float(src.RescaleSlope)
                                  + float(src.RescaleIntercept))
    # the default (HTJ2K) keeps the source's signed description
    assert default.PixelRepresentation == 1
    np.testing.assert_array_equal(default.pixel_array, src.pixel_array)


def test_signed_without_rescale_refuses_jxl(tmp_path):
    """MR_small (int16, no RescaleIntercept): no standard way to say the stored offset."""
    path, src = _one_file("MR_small.dcm", tmp_path)
    with DcbStreamingReader(path) as a:
        assert JXL not in a.available_transfer_syntaxes()
        assert a.available_transfer_syntaxes()[0] in HTJ2K_SYNTAXES
        with pytest.raises(UnsupportedTransferSyntaxError, match="110") as e:
            a.get_dicom_for_frame(0, transfer_syntax=JXL)
        assert "x.dcba" in str(e.value)
        np.testing.assert_array_equal(read(a.get_dicom_for_frame(0), "pylibjpeg").pixel_array,
                                      src.pixel_array)


def test_rgb_as_jxl(tmp_path):
    path, src = _one_file("SC_rgb_small_odd.dcm", tmp_path)
    with DcbStreamingReader(path) as a:
        ds = read(a.get_dicom_for_frame(0, transfer_syntax=JXL))
        assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0
        np.testing.assert_array_equal(
            imagecodecs.jpegxl_decode(_fragment(a.get_dicom_for_frame(0, transfer_syntax=JXL))),
            src.pixel_array)
        np.testing.assert_array_equal(read(a.get_dicom_for_frame(0), "pylibjpeg").pixel_array,
                                      src.pixel_array)


def test_unavailable_syntaxes_are_typed_errors(files_10):
    with DcbStreamingReader(files_10["s"]) as s, DcbStreamingReader(files_10["z"]) as z, \
            DcbStreamingReader(files_10["a"]) as a:
        with pytest.raises(UnsupportedTransferSyntaxError, match="ct.dcbs"):
            s.get_dicom_for_frame(0, transfer_syntax=JXL)
        with pytest.raises(UnsupportedTransferSyntaxError, match="available"):
            z.get_dicom_for_frame(0, transfer_syntax=BUILD_HTJ2K_SYNTAX)
        with pytest.raises(UnsupportedTransferSyntaxError):
            a.get_dataset(0, transfer_syntax="1.2.840.10008.1.2.4.50")
        with pytest.raises(ValueError, match="force_uncompressed"):
            a.get_dicom_for_frame(0, force_uncompressed=True, transfer_syntax=JXL)
        # force_uncompressed keeps its meaning for every variant
        assert read(a.get_dicom_for_frame(1, True)).file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_without_a_jxl_decoder_only_the_stored_frames_go_out(files_10, tmp_path, monkeypatch):
    from dicube.codecs import jxl
    from dicube.exceptions import CodecUnavailableError

    def gone():
        raise CodecUnavailableError("JPEG XL frames need imagecodecs: pip install 'dicube[archive]'")

    path, _ = _one_file("MR_small.dcm", tmp_path)  # signed without a rescale: nothing to serve
    monkeypatch.setattr(jxl, "backend", gone)
    with DcbStreamingReader(files_10["a"]) as a:
        assert a.available_transfer_syntaxes() == (JXL,)
        assert read(a.get_dicom_for_frame(1)).file_meta.TransferSyntaxUID == JXL
        with pytest.raises(UnsupportedTransferSyntaxError):
            a.get_dicom_for_frame(1, transfer_syntax=EXPLICIT_LE)
    with DcbStreamingReader(path) as m:
        with pytest.raises(CodecUnavailableError, match="archive") as e:
            m.available_transfer_syntaxes()
        assert "x.dcba" in str(e.value)


def test_metadata_needs_no_decode(files_10, monkeypatch):
    """The precision of the re-encoded frames is recorded (INFO codec.htj2k_bits): data sets
    and DICOM JSON of the default syntax come without decoding a JPEG XL frame."""
    from dicube.codecs import jxl
    from dicube.exceptions import CodecError

    with DcbsReader(files_10["a"]) as r:
        assert r.section_json(b"INFO")["codec"]["htj2k_bits"] == 16
    with DcbStreamingReader(files_10["s"]) as s:
        want = [s.get_json(i) for i in range(3)]

    def no_decode(*a, **k):
        raise CodecError("decoded")

    monkeypatch.setattr(jxl, "decode_batch", no_decode)
    with DcbStreamingReader(files_10["a"]) as a:
        assert [a.get_json(i) for i in range(3)] == want
        assert a.get_dataset(1).file_meta.TransferSyntaxUID == BUILD_HTJ2K_SYNTAX
        with pytest.raises(CodecError, match="decoded"):
            a.get_dicom_for_frame(1)


def test_12_bit_series_reencoded_at_12_bits(sample_10, tmp_path):
    """BitsStored 12: the .dcba records 12 and serves what the .dcbs serves, byte for byte."""
    folder = tmp_path / "s12"
    folder.mkdir()
    for k, p in enumerate(sorted(sample_10.iterdir())[:2]):
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.save_as(folder / f"{k}.dcm")
    img = dicube.load_from_dicom_folder(folder)
    dicube.save(img, tmp_path / "x.dcba")
    dicube.save(img, tmp_path / "x.dcbs")
    with DcbStreamingReader(tmp_path / "x.dcba") as a, DcbStreamingReader(tmp_path / "x.dcbs") as s:
        for i in range(2):
            assert a.get_dicom_for_frame(i) == s.get_dicom_for_frame(i)
        assert read(a.get_dicom_for_frame(0)).BitsStored == 12


def test_recorded_precision_that_does_not_fit_is_a_codec_error(files_10, tmp_path):
    import json

    from dicube.exceptions import CodecError
    from tests.crafting import Crafted

    c = Crafted.read(files_10["a"])
    info = json.loads(c.section(b"INFO").raw)
    info["codec"]["htj2k_bits"] = 8  # the CT goes up to 4095
    c.set_section(b"INFO", json.dumps(info).encode())
    bad = c.write(tmp_path / "bits.dcba")
    with DcbStreamingReader(bad) as a:
        assert a.get_dataset(0).BitsStored == 8  # metadata as recorded...
        with pytest.raises(CodecError, match="do not fit the 8 bits") as e:
            a.get_dicom_for_frame(0)  # ...but no instance that would contradict it
        assert "bits.dcba" in str(e.value)


@pytest.mark.parametrize("kind", ["s", "a"])
def test_damaged_frame_0_leaves_the_other_frames_servable(files_10, tmp_path, kind):
    """The syntaxes offered are found once; a bad first frame fails only itself (for a
    .dcbs, HTJ2K Lossless .201 is offered then: every dicube HTJ2K frame meets it)."""
    from dicube.exceptions import CorruptFileError

    data = bytearray(files_10[kind].read_bytes())
    with DcbsReader(files_10[kind]) as r:
        data[r.layout.header.frames_offset + 30] ^= 0x01
    bad = tmp_path / f"bad0.dcb{kind}"
    bad.write_bytes(bytes(data))
    with DcbStreamingReader(bad) as st, DcbStreamingReader(files_10["s"]) as good:
        assert st.available_transfer_syntaxes()[0] in HTJ2K_SYNTAXES
        assert st.get_dicom_for_frame(3) == good.get_dicom_for_frame(3)
        with pytest.raises(CorruptFileError, match="frame 0"):
            st.get_dicom_for_frame(0)
