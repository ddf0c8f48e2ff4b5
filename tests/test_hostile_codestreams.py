"""Crafted codestreams whose checksums all match never crash the interpreter (issue 11).

Every decode of a hostile input runs in a child process, so a crash fails the test
instead of ending pytest: the reproductions from the issue through every command and
API, a fast subset of the fuzz corpus (benchmarks/fuzz_hostile.py runs the full one),
and crafted zstd-plane frames.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crafting import Crafted, fix_codestream_checksum, set_codestream_byte, set_codestream_bytes
from hostile import Corpus, run_cases, split_tile_parts, with_tlm

from dicube import _native
from dicube.codecs.jph import decode_batch, encode_batch, imdecode_jph, imencode_jph, read_header
from dicube.exceptions import CodecError, DicomCubeError

# The two reproductions: (offset in frame 1, bytes). Byte 66 (in the words
# QCD Sqcd; in today's layout a COD code-block exponent) makes OpenJPH 0.9 fail the
# assertion 'num_bits <= 32' (SIGABRT); SIZ YTsiz = 0xFFFFFFFF makes it segfault.
CRAFTS = {"byte66": (66, b"\x00"), "ytsiz": (28, b"\xff\xff\xff\xff")}


def crafted_dcbs(src: Path, tmp_path: Path, craft: str, frames=(1,)) -> Path:
    offset, value = CRAFTS[craft]
    c = Crafted.read(src)
    for k in frames:
        c.frames[k] = set_codestream_bytes(bytes(c.frames[k]), offset, value)
    return c.write(tmp_path / f"{craft}.dcbs")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parent)


def run_script(*args) -> subprocess.CompletedProcess:
    """``dicube ARGS`` in a child process of this interpreter."""
    return subprocess.run([sys.executable, "-m", "dicube", *map(os.fspath, args)], capture_output=True, text=True,
                          timeout=300)


def assert_survived(proc: subprocess.CompletedProcess, expect: str) -> None:
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-1500:]}"
    assert expect in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def s10(dcbs_samples) -> Path:
    return dcbs_samples["sample_10"]


# --- the reproductions, through every API and command -------------------------------

@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_load_read_and_stream_give_typed_errors(s10, tmp_path, craft):
    path = crafted_dcbs(s10, tmp_path, craft)
    proc = run_python(f"""
        import dicube
        from dicube.dicom.streaming import DcbStreamingReader
        from dicube.exceptions import CodecError
        from dicube.storage.reader import DcbsReader
        path = {os.fspath(path)!r}
        def typed(what, fn):
            try:
                fn()
            except CodecError as exc:
                assert path in str(exc) and "frame" in str(exc), exc
                print(what, "CodecError")
        typed("load", lambda: dicube.load(path))
        typed("selection", lambda: dicube.load(path, frames=[1]))
        with DcbsReader(path) as r:
            typed("verify=False", lambda: r.read_frames([0, 1], verify=False))
        with DcbStreamingReader(path) as s:
            s.get_dicom_for_frame(1)  # HTJ2K: passed on undecoded
            typed("stream", lambda: s.get_dicom_for_frame(1, force_uncompressed=True))
            s.get_dicom_for_frame(0, force_uncompressed=True)
    """)
    assert_survived(proc, "load CodecError\nselection CodecError\nverify=False CodecError\nstream CodecError")


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_commands_report_the_frame(s10, tmp_path, craft):
    path = crafted_dcbs(s10, tmp_path, craft)
    proc = run_script("verify", path)
    assert_survived(proc, "frame 1")
    assert proc.returncode != 0
    proc = run_script("export", path, tmp_path / "out")
    assert_survived(proc, "frame 1")
    assert proc.returncode != 0
    for cmd in (("mosaic", path, tmp_path / "m.webp"), ("get-image", "-p", "0.5", path, tmp_path / "g.webp")):
        proc = run_script(*cmd)
        assert proc.returncode >= 0, proc.stderr


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_preview_of_a_crafted_htj2k_dicom_folder(s10, tmp_path, craft):
    """A DICOM folder exported with -t htj2k, every frame crafted and its COM checksum recomputed."""
    folder = tmp_path / "dicom"
    assert run_script("export", "-t", "htj2k", s10, folder).returncode == 0
    offset, value = CRAFTS[craft]
    crafted = 0
    for f in folder.rglob("*"):
        data = f.read_bytes() if f.is_file() else b""
        if b"\xff\x4f\xff\x51" not in data:
            continue  # the export's manifest
        crafted += 1
        start = data.index(b"\xff\x4f\xff\x51")
        end = data.index(b"\xff\xd9", start) + 2
        cs = set_codestream_bytes(data[start:end], offset, value)
        f.write_bytes(data[:start] + cs + data[end:])
    assert crafted == 10
    for cmd in (("mosaic", folder, tmp_path / "m.webp"), ("get-image", "-p", "0.5", folder, tmp_path / "g.webp")):
        proc = run_script(*cmd)
        assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-1500:]}"


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_codec_api_gives_codec_error(s10, tmp_path, craft):
    offset, value = CRAFTS[craft]
    path = tmp_path / "frame.j2c"
    path.write_bytes(set_codestream_bytes(bytes(Crafted.read(s10).frames[1]), offset, value))
    proc = run_python(f"""
        from pathlib import Path
        from dicube.codecs.jph import decode_batch, imdecode_jph
        from dicube.exceptions import CodecError
        cs = Path({os.fspath(path)!r}).read_bytes()
        for what, fn in (("imdecode", lambda: imdecode_jph(cs)), ("unverified", lambda: imdecode_jph(cs, verify=False)),
                         ("batch", lambda: decode_batch([cs, cs], num_threads=2)),
                         ("isolated", lambda: imdecode_jph(cs, isolate=True))):
            try:
                fn()
            except CodecError as exc:
                print(what, "CodecError")
    """)
    assert_survived(proc, "imdecode CodecError\nunverified CodecError\nbatch CodecError\nisolated CodecError")


# --- the profile: what is decoded in-process ---------------------------------------------------

def test_our_codestreams_are_in_profile():
    rng = np.random.default_rng(5)
    for shape, dtype, bits in (((37, 90), np.uint16, 12), ((64, 64), np.int16, 16), ((5, 300), np.uint8, 8),
                               ((33, 17), np.int32, 21), ((40, 30, 3), np.uint8, 8)):
        lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if np.dtype(dtype).kind == "i" else (0, 1 << bits)
        img = rng.integers(lo, hi, shape).astype(dtype)
        for progression in ("LRCP", "RLCP", "RPCL", "PCRL", "CPRL"):
            for block in ((64, 64), (4, 4), (16, 256)):
                for levels in (None, 1, 3):
                    cs = imencode_jph(img, bits_stored=bits, progression=progression, block_size=block, levels=levels,
                                      color_transform=img.ndim == 3)
                    assert _native.profile_violation(cs) is None, (shape, progression, block, levels)
    # The helpers below expect one tile-part, as OpenJPH 0.9 writes (tlm=False with newer ones).
    base = imencode_jph(np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), tlm=False)
    assert _native.profile_violation(with_tlm(base)) is None  # TLM, as newer OpenJPH writes
    assert _native.profile_violation(split_tile_parts(base)) is None


def cut_tile_part(cs: bytes, n: int) -> bytes:
    """``cs`` with the last ``n`` bytes of its one tile-part removed and Psot saying so:
    the tile-part chain is consistent, the packets' code-block lengths are not."""
    sot = cs.index(b"\xff\x90", 2)
    psot = int.from_bytes(cs[sot + 6:sot + 10], "big") - n
    return cs[:sot + 6] + psot.to_bytes(4, "big") + cs[sot + 10:-2 - n] + b"\xff\xd9"


@pytest.mark.parametrize("change, reason", [
    (lambda cs: cs[:28] + b"\xff\xff\xff\xff" + cs[32:], "more than one tile"),
    (lambda cs: set_codestream_byte(cs, cs.index(b"\xff\x52") + 4, 2), "Scod"),  # SOP markers announced
    (lambda cs: cs[:-2], "EOC"),
    (lambda cs: cut_tile_part(cs, 40), "past its tile-part"),
])
def test_out_of_profile_codestreams_are_foreign(change, reason):
    cs = imencode_jph(np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) % 3000, tlm=False)
    assert reason in _native.profile_violation(fix_codestream_checksum(change(cs)))


def test_foreign_codestreams_decode_isolated_and_correctly():
    """A valid codestream outside the profile (a TLM that disagrees with the tile-parts,
    which OpenJPH ignores) is decoded, in a child process, to the right pixels."""
    img = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 7) % 4096
    cs = with_tlm(imencode_jph(img, tlm=False))
    at = cs.index(b"\xff\x55") + 7  # last byte of the TLM's first Ptlm
    foreign = set_codestream_byte(cs, at, cs[at] ^ 1)
    assert "TLM" in _native.profile_violation(foreign)
    assert np.array_equal(imdecode_jph(foreign), img)
    assert np.array_equal(decode_batch([foreign, cs]), np.stack([img, img]))


def test_assertion_in_openjph_is_an_error_in_process():
    """In-profile codestreams whose code-block bytes make OpenJPH fail an assert() (a 0xFF
    in the MEL segment followed by a byte above 0x8F): CodecError, the process lives on."""
    assert _native.assert_guard in ("installed", "no-asserts")
    proc = run_python("""
        import numpy as np
        from dicube import _native
        from dicube.codecs.jph import imdecode_jph, imencode_jph
        from dicube.exceptions import CodecError
        cs = imencode_jph((np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 37) % 4096, bits_stored=12)
        asserted = 0
        for p in range(cs.index(b"\\xff\\x93") + 2, len(cs) - 2):
            m = cs[:p] + b"\\xff" + cs[p + 1:]
            if _native.profile_violation(m) is None:
                try:
                    imdecode_jph(m, verify=False, isolate=False)
                except CodecError as exc:
                    asserted += "OpenJPH internal check failed" in str(exc)
        print("asserted", asserted)
    """)
    assert_survived(proc, "asserted")
    if _native.assert_guard == "installed":
        assert int(proc.stdout.split()[-1]) > 0


# --- fuzz: a fast subset of benchmarks/fuzz_hostile.py -----------------------------------------

@pytest.fixture(scope="module")
def corpus(s10, tmp_path_factory) -> Corpus:
    return Corpus(s10, seed=3, workdir=tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("target, count", [("imdecode", 300), ("load", 60), ("stream", 30), ("container", 40),
                                           ("damaged", 40)])
def test_fuzz_subset(corpus, target, count):
    bad = []
    counts = run_cases(lambda i: corpus.case(target, i), range(count), timeout=60,
                       log=lambda i, outcome: bad.append((i, outcome)))
    assert counts["crash"] == counts["hang"] == counts["untyped"] == counts["wrong"] == 0, (counts, bad[:5])
    assert counts["typed"] > 0 and counts["typed"] + counts["decoded"] == count


# --- zstd byte planes ----------------------------------------------------------------------------

def test_crafted_zstd_plane_frames_give_codec_errors(dcbs_zstd_samples, tmp_path):
    import zstandard

    src = dcbs_zstd_samples["sample_10"]
    good = bytes(Crafted.read(src).frames[2])
    raw = zstandard.ZstdDecompressor().decompress(good)
    variants = {
        "short content": zstandard.ZstdCompressor().compress(raw[:-2]),
        "long content": zstandard.ZstdCompressor().compress(raw + b"\0\0"),
        "no content size": zstandard.ZstdCompressor(write_content_size=False).compress(raw),
        "lying content size": good[:4] + b"\x00" + good[5:],
        "two frames": zstandard.ZstdCompressor().compress(raw[:100]) + zstandard.ZstdCompressor().compress(raw[100:]),
        "skippable": b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd",
        "truncated": good[: len(good) // 2],
        "not zstd": b"\xff\x4f\xff\x51" + good[4:],
        "empty": b"",
    }
    for name, frame in variants.items():
        c = Crafted.read(src)
        c.frames[2] = frame
        path = c.write(tmp_path / "z.dcbs")
        proc = run_python(f"""
            import dicube
            try:
                dicube.load({os.fspath(path)!r})
                print("LOADED")
            except dicube.exceptions.CodecError as exc:
                print("CodecError", exc)
            except dicube.exceptions.DicomCubeError as exc:  # the container refuses it first
                print("frame 2", type(exc).__name__, exc)
        """)
        assert proc.returncode == 0, (name, proc.stderr[-1500:])
        assert proc.stdout.startswith(("CodecError", "frame 2")) and "frame 2" in proc.stdout, (name, proc.stdout)


# --- thread counts -------------------------------------------------------------------------------

@pytest.mark.parametrize("threads, message", [(2**31, "out of range"), (2**64, "out of range"), (-1, "out of range"),
                                              (1.5, "must be an integer"), ("2", "must be an integer")])
def test_bad_thread_counts_are_codec_errors(s10, threads, message):
    import dicube

    vol = np.zeros((2, 8, 8), np.uint16)
    with pytest.raises(CodecError, match=message):
        encode_batch(vol, num_threads=threads)
    with pytest.raises(CodecError, match=message):
        decode_batch(encode_batch(vol), num_threads=threads)
    with pytest.raises(DicomCubeError, match=message):
        dicube.load(s10, num_threads=threads)


def test_usual_thread_counts_still_work(s10):
    import dicube

    vol = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    for threads in (None, 0, 1, 3, np.int64(2)):
        assert np.array_equal(decode_batch(encode_batch(vol, num_threads=threads), num_threads=threads), vol)
    assert dicube.load(s10, num_threads=np.int32(2)).raw_image.shape[0] == 10
    assert read_header(encode_batch(vol)[0]).rows == 8


def test_codec_error_names_the_file_frame_of_a_selection(dcbs_samples, tmp_path):
    """A frame that does not decode is named by its number in the file, not in the selection."""
    import dicube

    c = Crafted.read(dcbs_samples["sample_10"])
    cs = c.frames[7]
    c.frames[7] = cs[:len(cs) // 2] + bytes(len(cs) - len(cs) // 2)  # entropy data zeroed, CRCs fixed
    bad = c.write(tmp_path / "f7.dcbs")
    with pytest.raises(CodecError, match="frame 7"):
        dicube.load(bad, frames=[6, 7], num_threads=1)
