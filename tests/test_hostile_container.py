"""Hostile .dcbs files (every checksum recomputed): declared sizes, decompression bombs,
overlapping frame indexes, deep JSON, folders. Each gives a typed dicube error, and in a
child process limited to 1.5 GB of address space each costs under a second and 200 MB.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zstandard
from crafting import Crafted

import dicube
from dicube.dicom.streaming import DcbStreamingReader
from dicube.exceptions import (
    CodecError,
    CorruptFileError,
    DicomCubeError,
    InvalidCubeFileError,
    MetaDataError,
)
from dicube.storage import limits
from dicube.storage.reader import DcbsReader

GiB = 1 << 30


def zstd_bomb(nbytes: int, content_size=None) -> bytes:
    """One zstd frame of RLE blocks decoding to ``nbytes`` zero bytes (4 bytes per 128 KiB),
    declaring ``content_size`` in its header when given."""
    block = 1 << 17
    if content_size is None:
        head = struct.pack("<IBB", 0xFD2FB528, 0x00, (17 - 10) << 3)  # no content size, 128 KiB window
    else:
        head = struct.pack("<IBBQ", 0xFD2FB528, 0xC0, (17 - 10) << 3, content_size)
    n = -(-nbytes // block)
    body = bytearray()
    for k in range(n):
        size = block if k < n - 1 else nbytes - block * (n - 1)
        body += (size << 3 | 1 << 1 | (k == n - 1)).to_bytes(3, "little") + b"\0"
    return head + bytes(body)


def test_zstd_bomb_is_what_it_says():
    assert len(zstandard.ZstdDecompressor().decompress(zstd_bomb(5 << 20), max_output_size=6 << 20)) \
        == 5 << 20
    assert len(zstd_bomb(16 * GiB)) < 600_000


# ---------------------------------------------------------------------------- version 1
V1 = struct.Struct("<8sI13Q")


def write_v1(path: Path, status: bytes, meta: bytes, space: bytes, pixel: bytes, frames: list,
             offsets=None) -> Path:
    """A dicube 0.3.0 file (docs/format.md "Version 1"); ``offsets`` relative to the frames."""
    n = len(frames)
    pos, pairs = V1.size, []
    for part in (status, meta, space, pixel):
        pairs.append((pos, len(part)))
        pos += len(part)
    pairs += [(pos, 8 * n), (pos + 8 * n, 8 * n)]
    start = pos + 16 * n
    if offsets is None:
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])[:-1]])
    offs = np.asarray(offsets, "<u8") + start
    lens = np.array([len(f) for f in frames], "<u8")
    head = V1.pack(b"DCMCUBES", 1, *(v for p in pairs for v in p), n)
    path.write_bytes(head + status + meta + space + pixel + offs.tobytes() + lens.tobytes()
                     + b"".join(frames))
    return path


def read_v1(path: Path) -> dict:
    data = path.read_bytes()
    f = V1.unpack_from(data)[2:]
    parts = [data[f[k]:f[k] + f[k + 1]] for k in range(0, 8, 2)]
    n = f[12]
    offs = np.frombuffer(data[f[8]:f[8] + 8 * n], "<u8")
    lens = np.frombuffer(data[f[10]:f[10] + 8 * n], "<u8")
    frames = [data[int(o):int(o) + int(ln)] for o, ln in zip(offs, lens)]
    return dict(zip(("status", "meta", "space", "pixel"), parts), frames=frames)


# ------------------------------------------------------------------------------ attacks
def _meta(c: Crafted, stored: bytes, raw_length: int) -> Crafted:
    c.set_section(b"META", b"", stored=stored, raw_length=raw_length)
    return c


def build_attacks(folder: Path, v2: Path, v2_zstd: Path, v1: Path) -> dict:
    """name -> (file, call, expected error type, words in the message)."""
    out = {}

    def add(name, crafted_or_path, call, exc, words):
        p = crafted_or_path if isinstance(crafted_or_path, Path) else \
            crafted_or_path.write(folder / f"{name}.dcbs")
        out[name] = (p, call, exc, words)

    bomb16 = zstd_bomb(16 * GiB)
    add("meta_bomb_raw_length_0", _meta(Crafted.read(v2), bomb16, 0), "load_meta",
        CorruptFileError, ["META", "declared 0"])
    add("meta_raw_length_2_31", _meta(Crafted.read(v2), zstd_bomb(1 << 20), 2**31 - 1), "load_meta",
        InvalidCubeFileError, ["META", "2147483647", "MAX_SECTION_RATIO"])
    add("meta_content_size_lies", _meta(Crafted.read(v2), zstd_bomb(16 << 20, 16 * GiB), 16 << 20),
        "load_meta", CorruptFileError, ["META", "17179869184"])
    add("meta_bomb_beyond_raw_length", _meta(Crafted.read(v2), bomb16, 16 << 20), "load_meta",
        CorruptFileError, ["META", "does not decompress"])
    c = Crafted.read(v2)
    c.set_section(b"QCRP", b"", stored=zstd_bomb(16 * GiB), raw_length=0)
    add("qc_bomb", c, "qc", CorruptFileError, ["QCRP"])
    # the frame index, zstd-compressed: a bomb, or the right size but too few bytes to be real
    for name, raw_length in (("index_bomb", 0), ("index_bomb_sized", 240)):
        add(name, _index_as_zstd(Crafted.read(v2), folder / f"{name}.dcbs", bomb16, raw_length), "reader",
            (InvalidCubeFileError,), ["frame index" if raw_length == 0 else "FIDX"])
    c = Crafted.read(v2)
    c.header_overrides = {"rows": 100000, "columns": 100000}
    add("dims_100000", c, "load", InvalidCubeFileError, ["100000x100000", "65535"])
    c = Crafted.read(v2)
    c.header_overrides = {"dtype": b"O\0\0\0"}
    add("object_dtype", c, "load", InvalidCubeFileError, ["sample type"])
    c = Crafted.read(v2_zstd)
    c.header_overrides = {"rows": 65535, "columns": 65535}
    space = json.loads(c.section(b"SPAC").raw)  # consistent, so that load reaches the frames
    space["shape"][:2] = [65535, 65535]
    c.set_section(b"SPAC", json.dumps(space).encode())
    add("zstd_planes_65535", c, "load", InvalidCubeFileError, ["decompression bomb", "MAX_DECODE_RATIO"])
    c = Crafted.read(v2_zstd)
    c.header_overrides = {"rows": 65535, "columns": 65535}
    add("zstd_planes_65535_one_frame", c, "frame0", InvalidCubeFileError, ["decompression bomb"])
    c = Crafted.read(v2)
    c.header_overrides = {"frame_count": 10**9}
    add("frame_count_1e9", c, "reader", InvalidCubeFileError, ["1000000000 frames"])
    # the frame index: every frame at frame 0; two frames swapped; a gap
    c = Crafted.read(v2)
    idx = _index(c)
    idx["offset"], idx["length"] = 0, idx["length"][0]
    c.index = idx
    add("index_all_frame_0", c, "load", InvalidCubeFileError, ["overlap"])
    c = Crafted.read(v2)
    idx = _index(c)
    idx[[1, 2]] = idx[[2, 1]]
    c.index = idx
    add("index_swapped", c, "load", InvalidCubeFileError, ["out of order"])
    c = Crafted.read(v2)
    c.frames[0] = c.frames[0] + b"\0" * 16
    idx = _index(c)
    idx["length"][0] -= 16
    c.index = idx
    add("index_gap", c, "load", InvalidCubeFileError, ["contiguous"])
    img = dicube.load(v2)  # frame codec 2 (zstd of raw samples): a float series
    img.raw_image = img.raw_image.astype(np.float32)
    f32 = dicube.save(img, folder / "f32.dcbs") and folder / "f32.dcbs"
    for name, bomb in (("zstd_frame_content_size_lies", zstd_bomb(1 << 20, 16 * GiB)),
                       ("zstd_frame_bomb", bomb16)):
        c = Crafted.read(f32)
        c.frames[3] = bomb
        add(name, c, "load", CodecError, ["frame 3"])
    deep = b"[" * 100_000 + b"]" * 100_000
    c = Crafted.read(v2)
    c.set_section(b"PIXH", deep)
    add("deep_json_pixh", c, "section_json:PIXH", MetaDataError, ["PIXH", "nested too deeply"])
    c = Crafted.read(v2)
    c.set_section(b"QCRP", deep)
    add("deep_json_qc", c, "section_json:QCRP", MetaDataError, ["QCRP", "nested too deeply"])

    # version 1
    parts = read_v1(v1)
    doc = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(parts["meta"]))
    doc["slice_count"] = 10**9
    p = dict(parts, meta=zstandard.ZstdCompressor().compress(json.dumps(doc).encode()))
    add("v1_slice_count_1e9", write_v1(folder / "v1_slices.dcbs", **p), "load_meta", MetaDataError,
        ["slice_count", "1000000000", "10 frames"])
    p = dict(parts, meta=bomb16)
    add("v1_meta_bomb", write_v1(folder / "v1_bomb.dcbs", **p), "load_meta", InvalidCubeFileError,
        ["MET1", "more than"])
    p = dict(parts, pixel=b"[1, 2]")
    add("v1_pixh_list", write_v1(folder / "v1_pixh.dcbs", **p), "reader", MetaDataError,
        ["pixel header"])
    add("v1_index_all_frame_0", write_v1(folder / "v1_overlap.dcbs", **dict(parts, frames=[
        parts["frames"][0]] * 10), offsets=[0] * 10), "load", InvalidCubeFileError, ["overlap"])
    p = dict(parts, pixel=json.dumps({"PixelDtype": "object"}).encode())
    add("v1_object_dtype", write_v1(folder / "v1_dtype.dcbs", **p), "reader", InvalidCubeFileError,
        ["sample type"])
    return out


def _index(c: Crafted) -> np.ndarray:
    from crafting import INDEX

    lengths = np.array([len(f) for f in c.frames], np.uint64)
    idx = np.zeros(len(c.frames), INDEX)
    idx["length"] = lengths
    idx["offset"][1:] = np.cumsum(lengths)[:-1]
    return idx


def _index_as_zstd(c: Crafted, path: Path, stored: bytes, raw_length: int) -> Path:
    """``c`` written with its frame index replaced by a zstd section (``stored``)."""
    from crafting import HEADER, HEADER_FIELDS, SECTION
    from dicube.codecs.jph import crc32c

    data = bytearray(c.to_bytes())
    h = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data)))
    n = h["section_count"]
    table = [list(SECTION.unpack_from(data, 128 + 32 * i)) for i in range(n)]
    kind, _enc, off, length, _crc, _raw = table[-1]
    assert kind == b"FIDX"
    head_end = off + len(stored)
    pad = (-head_end) % 8
    frames = bytes(data[h["head_length"]:])
    table[-1] = [kind, 1, off, len(stored), crc32c(stored), raw_length]
    tbytes = b"".join(SECTION.pack(*e) for e in table)
    h.update(head_length=head_end + pad, file_length=head_end + pad + len(frames),
             table_crc=crc32c(tbytes))
    body = HEADER.pack(*(h[k] for k in HEADER_FIELDS[:-1]), 0)[:-4]
    out = body + struct.pack("<I", crc32c(body)) + tbytes + bytes(data[128 + 32 * n:off]) \
        + stored + b"\0" * pad + frames
    path.write_bytes(out)
    return path


def run_call(call: str, path):
    if call == "load":
        return dicube.load(path)
    if call == "load_meta":
        return dicube.load_meta(path)
    if call == "qc":
        return dicube.load_qc_report(path) if hasattr(dicube, "load_qc_report") else \
            DcbsReader(path).section_json(b"QCRP")
    if call == "reader":
        with DcbsReader(path):
            return None
    if call == "frame0":
        with DcbsReader(path) as r:
            return r.read_frames(0)
    if call.startswith("section_json:"):
        with DcbsReader(path) as r:
            return r.section_json(call.split(":")[1].encode())
    raise AssertionError(call)


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM, since ru_maxrss survives exec and would
    report the forking pytest process's size."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def attacks(tmp_path_factory, dcbs_samples, dcbs_zstd_samples, legacy_dcbs) -> dict:
    return build_attacks(tmp_path_factory.mktemp("hostile"), dcbs_samples["sample_10"],
                         dcbs_zstd_samples["sample_10"], legacy_dcbs)


ATTACKS = ["meta_bomb_raw_length_0", "meta_raw_length_2_31", "meta_content_size_lies",
           "meta_bomb_beyond_raw_length", "qc_bomb", "index_bomb", "index_bomb_sized", "dims_100000",
           "object_dtype", "zstd_planes_65535", "zstd_planes_65535_one_frame", "frame_count_1e9",
           "index_all_frame_0", "index_swapped", "index_gap", "zstd_frame_content_size_lies",
           "zstd_frame_bomb", "deep_json_pixh", "deep_json_qc",
           "v1_slice_count_1e9", "v1_meta_bomb", "v1_pixh_list", "v1_index_all_frame_0",
           "v1_object_dtype"]


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_gives_typed_error_naming_file(attacks, name):
    path, call, exc, words = attacks[name]
    with pytest.raises(exc) as info:
        run_call(call, path)
    msg = str(info.value)
    assert info.value.path == os.fspath(path), msg
    for w in words:
        assert w in msg, msg


def test_every_attack_is_cheap_under_rlimit_as(attacks, tmp_path):
    """Each attack in one child limited to 1.5 GB of address space: typed error, < 1 s, and
    peak RSS (imports included) < 200 MB; then a volume that passes the limits but not the
    address space gives a typed out-of-memory error, not MemoryError."""
    plan = {n: (os.fspath(attacks[n][0]), attacks[n][1]) for n in ATTACKS}
    big = os.fspath(attacks["zstd_planes_65535"][0])
    script = textwrap.dedent(f"""
        import json, os, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        sys.path.insert(0, {os.fspath(Path(__file__).parent)!r})
        from test_hostile_container import peak_rss_mb, run_call
        from dicube.exceptions import DicomCubeError
        res = {{}}
        for name, (path, call) in {plan!r}.items():
            t = time.perf_counter()
            try:
                run_call(call, path)
                err = None
            except DicomCubeError as exc:
                err = type(exc).__name__
            except BaseException as exc:
                err = "UNTYPED " + type(exc).__name__ + ": " + str(exc)[:200]
            rss = peak_rss_mb()
            res[name] = [err, time.perf_counter() - t, rss]
        os.environ["DICUBE_MAX_DECODE_RATIO"] = "0"  # limits off: the allocation itself fails
        try:
            run_call("load", {big!r})
            res["oom"] = None
        except DicomCubeError as exc:
            res["oom"] = str(exc)
        except BaseException as exc:
            res["oom"] = "UNTYPED " + repr(exc)
        print(json.dumps(res))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print({n: (round(res[n][1], 3), round(res[n][2])) for n in ATTACKS})
    for name in ATTACKS:
        err, seconds, rss_mb = res[name]
        assert err is not None and not err.startswith("UNTYPED"), (name, err)
        assert seconds < 1.0, (name, seconds)
        assert rss_mb < 200, (name, rss_mb)
    assert "not enough memory" in res["oom"] and big in res["oom"], res["oom"]


# ------------------------------------------------------------------------- limits, folders
def test_real_files_are_well_inside_the_limits(dcbs_samples, dcbs_zstd_samples, legacy_dcbs):
    """The measured ratios behind the defaults (docs/format.md, "Limits a reader enforces")."""
    for p in (dcbs_samples["sample_200"], dcbs_zstd_samples["sample_200"], legacy_dcbs):
        with DcbsReader(p) as r:
            for kind, sec in r.sections.items():
                assert len(r.section_bytes(kind)) <= 20 * sec.length + 1024, kind
            stored = int(r.layout.index["length"].sum())
            decoded = r.frame_count * r.read_frames(0)[0].nbytes
            assert 2 < decoded / stored < 4
            assert limits.MAX_DECODE_RATIO >= 250 * decoded / stored


def test_blank_series_passes_and_limits_are_overridable(dcbs_samples, tmp_path, monkeypatch):
    img = dicube.load(dcbs_samples["sample_10"])
    img.raw_image[:] = 0
    p = tmp_path / "blank.dcbs"
    dicube.save(img, p)
    with DcbsReader(p) as r:
        ratio = r.frame_count * 512 * 512 * 2 / int(r.layout.index["length"].sum())
    assert 300 < ratio < limits.MAX_DECODE_RATIO  # a blank HTJ2K series: ~700:1
    monkeypatch.setattr(limits, "DECODE_FREE_BYTES", 1 << 20)  # 5 MiB decoded is now "large"
    assert (dicube.load(p).raw_image == 0).all()
    monkeypatch.setenv("DICUBE_MAX_DECODE_RATIO", "100")
    with pytest.raises(InvalidCubeFileError, match="MAX_DECODE_RATIO=100"):
        dicube.load(p)
    monkeypatch.setenv("DICUBE_MAX_DECODE_RATIO", "lots")
    with pytest.raises(DicomCubeError, match="DICUBE_MAX_DECODE_RATIO"):
        dicube.load(p)


@pytest.mark.parametrize("call", ["load", "load_meta", "streaming", "reader"])
def test_folder_is_refused_by_name(tmp_path, call):
    folder = tmp_path / "series.dcbs"
    folder.mkdir()
    fn = {"load": dicube.load, "load_meta": dicube.load_meta, "streaming": DcbStreamingReader,
          "reader": DcbsReader}[call]
    with pytest.raises(InvalidCubeFileError, match="is a folder") as info:
        fn(folder)
    assert info.value.path == os.fspath(folder)


def test_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "x.dcbs"
    os.mkfifo(fifo)
    with pytest.raises(InvalidCubeFileError, match="not a regular file"):
        dicube.load(fifo)


@pytest.mark.parametrize("encoding, raw_length, words", [
    (0, 7, ["uncompressed section QCRP", "declares 7 decoded bytes"]),
    (7, None, ["section QCRP", "unknown encoding 7"]),
])
def test_section_table_entries_that_lie(dcbs_samples, tmp_path, encoding, raw_length, words):
    """An uncompressed section whose declared decoded length is not its stored length, or a
    section of an encoding no writer uses: InvalidCubeFileError naming file and section."""
    c = Crafted.read(dcbs_samples["sample_10"])
    raw = c.section(b"QCRP").raw
    c.set_section(b"QCRP", raw, encoding=encoding, raw_length=raw_length, stored=raw)
    path = c.write(tmp_path / "lies.dcbs")
    for call in (dicube.load, dicube.load_meta):
        with pytest.raises(InvalidCubeFileError) as info:
            call(path)
        assert info.value.path == os.fspath(path)
        for w in words:
            assert w in str(info.value), str(info.value)
