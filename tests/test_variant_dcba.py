"""The lossless archive variant (.dcba): JPEG XL frames behind the DCMCUBEA magic."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import dicube
from dicube.codecs import jxl
from dicube.dicom.streaming import DcbStreamingReader
from dicube.exceptions import CodecError, CodecUnavailableError, CorruptFileError
from dicube.storage.reader import DcbsReader
from tests.crafting import Crafted
from tests.dcba_cases import sample_10_files

pytest.importorskip("imagecodecs")


@pytest.fixture(scope="module")
def ct(sample_10):
    return sample_10_files(sample_10)["img"]


@pytest.fixture(scope="module")
def pair(sample_10):
    f = sample_10_files(sample_10)
    return f["a"], f["s"], {"a": f["a"].stat().st_size, "s": f["s"].stat().st_size}


def _same_meta(x, y):
    assert x.dicom_meta.to_json() == y.dicom_meta.to_json()
    assert x.space.to_json() == y.space.to_json()
    assert x.pixel_header.to_json() == y.pixel_header.to_json()


def test_round_trip_exact_and_smaller(ct, pair):
    a, s, sizes = pair
    assert a.read_bytes()[:8] == b"DCMCUBEA" and s.read_bytes()[:8] == b"DCMCUBES"
    back = dicube.load(a)
    assert back.raw_image.dtype == ct.raw_image.dtype
    np.testing.assert_array_equal(back.raw_image, ct.raw_image)
    _same_meta(back, ct)
    # sample_10: 1267097 vs 1525851 bytes (0.830); sample_200: 25276853 vs 30477340 (0.829)
    assert sizes["a"] < 0.9 * sizes["s"], sizes
    meta = dicube.load_meta(a)
    assert meta.to_json() == ct.dicom_meta.to_json()
    with DcbsReader(a) as r:
        assert r.layout.header.variant == "a" and r.frame_codec == 4


def test_file_type_explicit_and_inferred(pair, tmp_path):
    ct = dicube.load(pair[1], frames=[0, 1])
    p = tmp_path / "x.bin"
    dicube.save(ct, p, file_type="a")
    assert p.read_bytes()[:8] == b"DCMCUBEA"
    q = tmp_path / "y.dcbs"
    dicube.save(ct, q)
    assert q.read_bytes()[:8] == b"DCMCUBES"


def test_frames_subset(ct, pair):
    sub = dicube.load(pair[0], frames=[7, 2, 9])
    np.testing.assert_array_equal(sub.raw_image, ct.raw_image[[7, 2, 9]])


def test_streaming_uncompressed_matches_dcbs(pair):
    a, s, _ = pair
    with DcbStreamingReader(a) as ra, DcbStreamingReader(s) as rs:
        for i in (0, 5):
            da = ra.get_dicom_for_frame(i, force_uncompressed=True)
            assert da == rs.get_dicom_for_frame(i, force_uncompressed=True)
            ds = pydicom.dcmread(__import__("io").BytesIO(da))
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            np.testing.assert_array_equal(ds.pixel_array, dicube.load(s, frames=[i]).raw_image[0])


def test_export_folder(ct, pair, tmp_path):
    back = dicube.load(pair[0])
    dicube.save_to_dicom_folder(back, tmp_path / "out")
    again = dicube.load_from_dicom_folder(tmp_path / "out")
    np.testing.assert_array_equal(again.raw_image, ct.raw_image)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm",
                                  "SC_rgb_dcmtk_+eb+cy+np.dcm"])
def test_pydicom_images(name, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder)
    img = dicube.load_from_dicom_folder(folder)
    dicube.save(img, tmp_path / "x.dcba")
    back = dicube.load(tmp_path / "x.dcba")
    assert back.raw_image.dtype == img.raw_image.dtype
    np.testing.assert_array_equal(back.raw_image, img.raw_image)
    assert back.dicom_meta.to_json() == img.dicom_meta.to_json()


def test_flipped_frame_byte_is_caught_by_crc(pair, tmp_path):
    data = bytearray(pair[0].read_bytes())
    with DcbsReader(pair[0]) as r:
        off = r.layout.header.frames_offset + int(r.layout.index["offset"][3]) + 100
    data[off] ^= 0x40
    bad = tmp_path / "bad.dcba"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="frame 3"):
        dicube.load(bad)
    np.testing.assert_array_equal(dicube.load(bad, frames=[1]).raw_image,
                                  dicube.load(pair[0], frames=[1]).raw_image)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_shape", "empty_header"])
def test_damaged_codestream_with_valid_crc_is_codec_error(pair, tmp_path, damage):
    c = Crafted.read(pair[0])
    f = bytes(c.frames[4])
    if damage == "truncated":
        c.frames[4] = f[: len(f) // 3]
    elif damage == "garbage":
        c.frames[4] = b"\xff\x0a" + bytes(range(256)) * 4
    elif damage == "other_shape":
        c.frames[4] = jxl.encode_batch(np.zeros((1, 16, 16), np.uint16))[0]
    else:
        c.frames[4] = f[:8]
    bad = c.write(tmp_path / "bad.dcba")
    with pytest.raises(CodecError, match="frame 4"):
        dicube.load(bad)


def test_missing_backend(ct, pair, tmp_path, monkeypatch):
    def gone():
        raise CodecUnavailableError("JPEG XL frames need imagecodecs: pip install 'dicube[archive]'")

    monkeypatch.setattr(jxl, "backend", gone)
    with pytest.raises(CodecUnavailableError, match="archive") as e:
        dicube.save(ct, tmp_path / "x.dcba")
    assert "x.dcba" in str(e.value)
    with pytest.raises(CodecUnavailableError, match="archive"):
        dicube.load(pair[0])
    assert dicube.load_meta(pair[0]) is not None  # the head needs no codec


def test_floats_refused(tmp_path):
    from dicube.core.image import DicomCubeImage
    from dicube.exceptions import DataConsistencyError

    with pytest.raises(DataConsistencyError, match="archive"):
        dicube.save(DicomCubeImage(np.zeros((2, 4, 4), np.float32)), tmp_path / "f.dcba")


def test_info_records_codec_params(pair):
    with DcbsReader(pair[0]) as r:
        info = r.section_json(b"INFO")["codec"]
        htj2k_frames = int(DcbsReader(pair[1]).layout.index["length"].sum())
    assert {k: info[k] for k in ("name", "effort", "bits", "signed_offset")} == \
        {"name": "jxl", "effort": 5, "bits": 16, "signed_offset": 0}
    assert info["library"].startswith("libjxl ")
    assert info["htj2k_bytes"] == htj2k_frames  # what the .dcbs frames take


def test_signed_offset_recorded(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder)
    dicube.save(dicube.load_from_dicom_folder(folder), tmp_path / "x.dcba")
    with DcbsReader(tmp_path / "x.dcba") as r:
        assert r.section_json(b"INFO")["codec"]["signed_offset"] == 32768


def _inflate_jxl(monkeypatch):
    """JPEG XL wins on every image tried (uniform noise of 8, 12 and 16 bits, stripes,
    checkerboards, 1x1 and 4x4 images): make its frames count 10x so the HTJ2K fallback
    is taken."""
    real = jxl._stored_size

    def size(frames):
        is_jxl = bytes(frames[0][:2]) == b"\xff\x0a" or bytes(frames[0][4:8]) == b"JXL "
        return real(frames) * (10 if is_jxl else 1)

    monkeypatch.setattr(jxl, "_stored_size", size)


def test_never_larger_than_dcbs(pair, tmp_path, monkeypatch):
    ct = dicube.load(pair[1], frames=[0, 1, 2])
    dcbs = tmp_path / "three.dcbs"
    dcbs_size = dicube.save(ct, dcbs)
    _inflate_jxl(monkeypatch)
    path = tmp_path / "fallback.dcba"
    with pytest.warns(jxl.ArchiveFallbackWarning, match="HTJ2K"):
        size = dicube.save(ct, path)
    assert size == dcbs_size  # the .dcbs with another magic
    with DcbsReader(path) as r, DcbsReader(dcbs) as s:
        assert r.layout.header.variant == "a" and r.frame_codec == 1
        assert "codec" not in r.section_json(b"INFO")
        assert [r.codestream(i) for i in range(3)] == [s.codestream(i) for i in range(3)]
    np.testing.assert_array_equal(dicube.load(path).raw_image, ct.raw_image)
    with DcbStreamingReader(path) as st, DcbStreamingReader(dcbs) as ss:  # served as stored HTJ2K
        assert jxl.TRANSFER_SYNTAX not in st.available_transfer_syntaxes()
        assert st.get_dicom_for_frame(2) == ss.get_dicom_for_frame(2)


def test_tiny_image_where_the_info_entry_outweighs_the_gain(tmp_path):
    """A 1x1 frame: JPEG XL saves ~85 bytes, less than its INFO entry: HTJ2K is kept."""
    from dicube.core.image import DicomCubeImage

    img = DicomCubeImage(np.full((1, 1, 1), 5, np.uint16))
    with pytest.warns(jxl.ArchiveFallbackWarning):
        a = dicube.save(img, tmp_path / "t.dcba")
    assert a <= dicube.save(img, tmp_path / "t.dcbs")
    np.testing.assert_array_equal(dicube.load(tmp_path / "t.dcba").raw_image, img.raw_image)


def test_info_command_shows_codec(pair, capsys):
    import json

    from cli_helpers import run_cli

    code, out, _ = run_cli(capsys, "info", pair[0])
    assert code == 0 and "JPEG XL lossless, effort 5, 16 bits, libjxl" in out
    assert "0.83" in out  # x the HTJ2K frames of a .dcbs (sample_10: 0.830)
    code, out, _ = run_cli(capsys, "info", "--json", pair[0])
    assert json.loads(out)["codec"]["name"] == "jxl"
    code, out, _ = run_cli(capsys, "info", "--json", pair[1])
    assert json.loads(out)["codec"] is None


def test_the_written_file_is_checked(pair, tmp_path, monkeypatch):
    """Frames each right but stored in the wrong order (a writer bug, not an encoder one):
    only decoding the written file catches it; the target is left as it was."""
    ct = dicube.load(pair[1], frames=[0, 1, 2])
    real = jxl.archive_frames

    def shuffled(*a, **k):
        done = real(*a, **k)
        return done._replace(frames=done.frames[::-1])

    monkeypatch.setattr(jxl, "archive_frames", shuffled)
    target = tmp_path / "t.dcba"
    target.write_bytes(b"old")
    with pytest.raises(CodecError, match="frame 0 differs") as e:
        dicube.save(ct, target)
    assert "t.dcba" in str(e.value)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["t.dcba"]


def test_lossy_encoder_is_caught(pair, tmp_path, monkeypatch):
    ct = dicube.load(pair[1], frames=[0, 1])
    real = jxl.encode_batch
    monkeypatch.setattr(jxl, "encode_batch", lambda vol, *a, **k: real(vol // 2 * 2, *a, **k))
    with pytest.raises(CodecError, match="not exact"):
        dicube.save(ct, tmp_path / "l.dcba")
    assert not (tmp_path / "l.dcba").exists()
