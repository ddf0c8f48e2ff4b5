""".dcba frames checked from outside: ``dicube verify`` decodes them and checks the INFO
codec record, datasets read them, two independent JPEG XL decoders (imagecodecs'
jpegxl_decode, Debian's djxl 0.7) give the stored values bit for bit, and hostile frames
with valid CRCs end in typed errors, never a crash."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from cli_helpers import run_cli
from streaming_cases import require_tool

import dicube
from dicube.codecs import jxl
from dicube.data import DcbsDataset
from dicube.dicom import DcbStreamingReader
from dicube.exceptions import CodecError, CodecUnavailableError, CorruptFileError
from dicube.storage.reader import DcbsReader
from tests.crafting import Crafted
from tests.dcba_cases import sample_10_files

imagecodecs = pytest.importorskip("imagecodecs")


@pytest.fixture(scope="module")
def files(sample_10):
    f = sample_10_files(sample_10)
    return f["a"], f["s"], f["img"]


def _verify(capsys, path):
    code, out, _ = run_cli(capsys, "verify", path)
    return code, out


def test_verify_decodes_dcba(files, capsys):
    code, out = _verify(capsys, files[0])
    assert code == 0 and "OK (v2, 10 frames decoded" in out


def test_verify_names_a_bad_frame_with_valid_crc(files, tmp_path, capsys):
    c = Crafted.read(files[0])
    f = bytes(c.frames[6])
    c.frames[6] = f[:len(f) // 2]  # CRCs recomputed by Crafted
    bad = c.write(tmp_path / "bad.dcba")
    code, out = _verify(capsys, bad)
    assert code == 1 and "FAILED" in out and "frame 6" in out
    assert out.count("frame ") == 1  # only the damaged frame


def test_verify_checks_the_info_codec_record(files, tmp_path, capsys):
    c = Crafted.read(files[0])
    info = json.loads(c.section(b"INFO").raw)
    info["codec"]["bits"] = 12
    c.set_section(b"INFO", json.dumps(info).encode())
    code, out = _verify(capsys, c.write(tmp_path / "info.dcba"))
    assert code == 1 and "INFO codec" in out and "'bits': 12" in out


def test_verify_without_the_decoder_still_checks_crcs(files, tmp_path, capsys, monkeypatch):
    data = bytearray(files[0].read_bytes())
    with DcbsReader(files[0]) as r:
        data[r.layout.header.frames_offset + int(r.layout.index["offset"][2]) + 50] ^= 1
    (tmp_path / "flip.dcba").write_bytes(bytes(data))

    def gone():
        raise CodecUnavailableError("JPEG XL frames need imagecodecs: pip install 'dicube[archive]'")

    monkeypatch.setattr(jxl, "backend", gone)
    code, out = _verify(capsys, files[0])
    assert code == 1 and "not decoded" in out and "dicube[archive]" in out
    code, out = _verify(capsys, tmp_path / "flip.dcba")
    assert code == 1 and "checksum mismatch in frame 2" in out


def test_dataset_reads_dcba(files):
    a, s, img = files
    da = DcbsDataset([a], mode="slice", random=False)
    ds = DcbsDataset([s], mode="slice", random=False)
    assert len(da) == len(ds) == 10
    for k in (0, 7):
        np.testing.assert_array_equal(da[k].image, img.raw_image[k])
        np.testing.assert_array_equal(da[k].affine, ds[k].affine)
    vol = DcbsDataset.from_folder(a.parent, pattern="*.dcba", rescale=True)[0]
    np.testing.assert_array_equal(vol.image, DcbsDataset([s], rescale=True)[0].image)


def test_imagecodecs_decodes_stored_frames(files):
    a, _, img = files
    with DcbsReader(a) as r:
        for k in range(r.frame_count):
            np.testing.assert_array_equal(imagecodecs.jpegxl_decode(r.codestream(k)),
                                          img.raw_image[k])


def test_djxl_decodes_stored_frames(files, tmp_path):
    """Debian's djxl (libjxl 0.7), a decoder independent of the imagecodecs build that
    wrote the frames, reads the stored frames (16-bit level-10 containers) bit for bit."""
    djxl = require_tool("djxl")
    a, _, img = files
    with DcbsReader(a) as r:
        for k in (0, 5, 9):
            src, dst = tmp_path / f"{k}.jxl", tmp_path / f"{k}.pgm"
            src.write_bytes(r.codestream(k))
            subprocess.run([djxl, str(src), str(dst), "--quiet"], check=True,
                           capture_output=True, timeout=120)
            head, body = dst.read_bytes().split(b"\n", 3)[:3], dst.read_bytes().split(b"\n", 3)[3]
            w, h = map(int, head[1].split())
            assert head[2] == b"65535"
            np.testing.assert_array_equal(np.frombuffer(body, ">u2").reshape(h, w), img.raw_image[k])


HOSTILE = {
    "truncated": lambda f: f[: len(f) // 3],
    "garbage": lambda f: b"\xff\x0a" + bytes(range(256)) * 4,
    "container_only": lambda f: f[:40],
    "bytes_flipped": lambda f: f[:60] + bytes(b ^ 0x5A for b in f[60:200]) + f[200:],
    "huge_declared": lambda f: jxl.encode_batch(np.zeros((1, 1, 3000), np.uint16))[0],
    "foreign_jpeg": lambda f: b"\xff\xd8\xff\xe0" + f[4:],
}


@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_hostile_frames_with_valid_crc(files, tmp_path, damage):
    """Every read path (load, one frame, streaming default/.110/native, verify) gives a
    typed error naming the frame, or (bytes changed inside the entropy-coded data) other
    pixels: JPEG XL has no checksum of its own, the container's CRC is the guard."""
    c = Crafted.read(files[0])
    c.frames[3] = HOSTILE[damage](bytes(c.frames[3]))
    bad = c.write(tmp_path / "bad.dcba")
    try:
        got = dicube.load(bad, frames=[3]).raw_image
    except CodecError as exc:
        assert "frame" in str(exc) and "bad.dcba" in str(exc)
    else:  # decoded to something: only possible when the stream still parses
        assert damage == "bytes_flipped"
        assert got.shape == files[2].raw_image[3:4].shape
    with DcbStreamingReader(bad) as st:
        for ts in (None, "1.2.840.10008.1.2.1"):
            try:
                st.get_dicom_for_frame(3, transfer_syntax=ts)
            except CodecError as exc:
                assert "frame 3" in str(exc)
        st.get_dicom_for_frame(3, transfer_syntax=jxl.TRANSFER_SYNTAX)  # served as stored
        assert st.get_dicom_for_frame(2)  # other frames unaffected
    np.testing.assert_array_equal(dicube.load(bad, frames=[4]).raw_image, files[2].raw_image[4:5])


def test_crc_mismatch_is_corrupt_file_error_everywhere(files, tmp_path):
    data = bytearray(files[0].read_bytes())
    with DcbsReader(files[0]) as r:
        data[r.layout.header.frames_offset + int(r.layout.index["offset"][8]) + 9] ^= 0x10
    bad = tmp_path / "crc.dcba"
    bad.write_bytes(bytes(data))
    with DcbStreamingReader(bad) as st:
        for ts in st.available_transfer_syntaxes():
            with pytest.raises(CorruptFileError, match="frame 8"):
                st.get_dicom_for_frame(8, transfer_syntax=ts)
