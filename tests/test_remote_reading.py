"""Reading .dcbs files by URL from nginx on loopback: every reading entry point takes a URL;
requests, ranges and bytes are checked against nginx's own access log."""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

import dicube
from dicube.data import DcbsDataset
from dicube.dicom.streaming import DcbStreamingReader
from dicube.exceptions import CubeFileNotFoundError, SourceError, SourceNotFoundError
from dicube.storage.reader import DcbsReader
from dicube.storage.sources import REMOTE_FIRST_READ, RemoteFile, TransferStats
from preview_servers import start_nginx

# $status $body_bytes_sent "$request" $bytes_sent "$http_range" $connection $connection_requests
LINE = re.compile(r'^(\d+) (\d+) "([^"]*)" (\d+) "([^"]*)" (\d+) (\d+)$')


def log(server) -> list[dict]:
    out = []
    for ln in server.log_lines():
        m = LINE.match(ln)
        assert m, ln
        status, body, request, _, rng, conn, nreq = m.groups()
        out.append({"status": int(status), "body": int(body), "request": request,
                    "range": rng, "conn": int(conn), "conn_requests": int(nreq)})
    return out


def ranges(entries) -> list[tuple[int, int]]:
    """The (first, last) byte of each logged Range header."""
    out = []
    for e in entries:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", e["range"])
        assert m, e
        out.append((int(m[1]), int(m[2])))
    return out


@pytest.fixture(scope="module")
def served(dcbs_samples):
    server = start_nginx()
    try:
        data = server.www / "data"
        (data / "more").mkdir(mode=0o755, parents=True)
        for dest in (server.www / "s10.dcbs", data / "a.dcbs", data / "more" / "b.dcbs"):
            shutil.copyfile(dcbs_samples["sample_10"], dest)
            dest.chmod(0o644)
        (data / "notes.txt").write_text("not a cube")
        (data / "notes.txt").chmod(0o644)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local(dcbs_samples):
    path = dcbs_samples["sample_10"]
    with DcbsReader(path) as r:
        index = r.layout.index.copy()
        base = r.layout.header.frames_offset
    return {"path": path, "image": dicube.load(path), "size": os.path.getsize(path),
            "index": index, "base": base}


def frame_bytes(local, frames) -> tuple[int, int]:
    """(first, last) byte of the contiguous frames ``frames`` in the file."""
    idx = local["index"]
    first = local["base"] + int(idx["offset"][frames[0]])
    return first, local["base"] + int(idx["offset"][frames[-1]] + idx["length"][frames[-1]]) - 1


def test_load_by_url_equals_local_in_two_requests(served, local):
    url = f"{served.url}/s10.dcbs"
    served.mark()
    stats = TransferStats()
    img = dicube.load(url, stats=stats)
    ref = local["image"]
    assert img.raw_image.dtype == ref.raw_image.dtype
    assert np.array_equal(img.raw_image, ref.raw_image)
    assert img.dicom_meta.to_json() == ref.dicom_meta.to_json()
    assert img.space.to_json() == ref.space.to_json()
    assert img.pixel_header.to_dict() == ref.pixel_header.to_dict()
    entries = log(served)
    size = local["size"]
    # the head (and the first frames) in one request, the rest of the frames in one more
    assert ranges(entries) == [(0, REMOTE_FIRST_READ - 1), (REMOTE_FIRST_READ, size - 1)]
    assert all(e["status"] == 206 for e in entries)
    assert sum(e["body"] for e in entries) == stats.bytes == size
    assert stats.requests == len(entries) == 2
    assert len({e["conn"] for e in entries}) == 1 and entries[1]["conn_requests"] >= 2  # reused


def test_head_only_entry_points_make_one_request(served, local):
    url = f"{served.url}/s10.dcbs"
    served.mark()
    stats = TransferStats()
    meta = dicube.load_meta(url, stats=stats)
    assert meta.to_json() == local["image"].dicom_meta.to_json()
    qc = dicube.load_qc_report(url, stats=stats)
    assert qc.to_json() == dicube.load_qc_report(local["path"]).to_json()
    entries = log(served)
    assert ranges(entries) == [(0, REMOTE_FIRST_READ - 1)] * 2
    assert stats.requests == 2 and stats.bytes == 2 * REMOTE_FIRST_READ
    # a head larger than the first read takes exactly one more request
    with DcbsReader(url, first_read=1024) as r:
        head = r.layout.header.head_length
        assert r.stats.requests == 2 and r.stats.bytes == head
        assert r.frame_count == 10


def test_adjacent_frames_in_one_request(served, local):
    url = f"{served.url}/s10.dcbs"
    served.mark()
    with DcbsReader(url) as r:
        got = r.read_frames(slice(3, 8))
        assert r.stats.requests == 2
    assert np.array_equal(got, local["image"].raw_image[3:8])
    entries = log(served)
    assert ranges(entries)[1:] == [frame_bytes(local, [3, 7])]
    assert entries[1]["body"] == int(local["index"]["length"][3:8].sum())


def test_coalesce_gap_decides_what_shares_a_request(served, local):
    url = f"{served.url}/s10.dcbs"
    sel = [8, 5, 3, 6, 5]  # any order, repeats
    ref = local["image"].raw_image[sel]
    served.mark()
    stats = TransferStats()
    img = dicube.load(url, frames=sel, stats=stats, coalesce_gap=0)
    assert np.array_equal(img.raw_image, ref)
    # gap 0: frames 3, 5-6 and 8 are three runs, read in parallel (any order in the log)
    assert sorted(ranges(log(served))[1:]) == [frame_bytes(local, [3]), frame_bytes(local, [5, 6]),
                                               frame_bytes(local, [8])]
    assert stats.requests == 4
    served.mark()
    stats = TransferStats()
    img = dicube.load(url, frames=sel, stats=stats)  # default gap 1 MiB: one request, 3..8
    assert np.array_equal(img.raw_image, ref) and stats.requests == 2
    assert ranges(log(served))[1:] == [frame_bytes(local, [3, 8])]
    assert img.dicom_meta.to_json() == local["image"].dicom_meta.subset(sel).to_json()


def test_long_runs_are_split_into_bounded_requests(served, local):
    url = f"{served.url}/s10.dcbs"
    size = local["size"]
    served.mark()
    stats = TransferStats()
    img = dicube.load(url, stats=stats, request_size=100_000)
    assert np.array_equal(img.raw_image, local["image"].raw_image)
    got = sorted(ranges(log(served))[1:])
    rest = size - REMOTE_FIRST_READ
    assert len(got) == -(-rest // 100_000) == stats.requests - 1
    assert got[0][0] == REMOTE_FIRST_READ and got[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(got, got[1:]))  # disjoint, nothing read twice
    assert stats.bytes == size


def test_open_byte_source_is_accepted_and_left_open(served, local):
    src = RemoteFile(f"{served.url}/s10.dcbs", prefetch=REMOTE_FIRST_READ)
    with src:
        img = dicube.load(src, frames=[2])
        assert np.array_equal(img.raw_image, local["image"].raw_image[[2]])
        with DcbsReader(src) as r:
            assert r.stats is src.stats
            assert np.array_equal(r.read_frames([9]), local["image"].raw_image[[9]])
        assert src.stats.requests == 1 + 1 + 1  # opened once; one run per read
        assert src.pread(4, 0)  # still open


def test_streaming_reader_by_url(served, local):
    with DcbStreamingReader(local["path"]) as ref, \
            DcbStreamingReader(f"{served.url}/s10.dcbs") as stream:
        assert stream.get_dicom_for_frame(4) == ref.get_dicom_for_frame(4)
        assert (stream.get_dicom_for_frame(4, force_uncompressed=True)
                == ref.get_dicom_for_frame(4, force_uncompressed=True))
        assert stream.stats.requests == 1 + 2  # head, then the codestream of frame 4 each time


def test_dataset_from_http_folder(served, local):
    ds = DcbsDataset.from_folder(f"{served.url}/data/", mode="slab", slab_size=5, random=False)
    assert ds.paths == [f"{served.url}/data/a.dcbs", f"{served.url}/data/more/b.dcbs"]
    assert len(ds) == 4
    s = ds[3]
    assert s.path.endswith("/more/b.dcbs") and s.frames == (5, 10)
    assert np.array_equal(s.image, local["image"].raw_image[5:10])
    assert ds.stats.requests == 2 + 1  # two heads when made, one run for the sample
    top = DcbsDataset.from_folder(f"{served.url}/data", pattern="*.dcbs")
    assert top.paths == [f"{served.url}/data/a.dcbs"]
    with pytest.raises(SourceError, match="nothere"):
        DcbsDataset.from_folder(f"{served.url}/nothere/")


def test_cli_info_verify_export_by_url(served, local, capsys, tmp_path):
    from cli_helpers import run_cli

    url = f"{served.url}/s10.dcbs"
    rc, out, err = run_cli(capsys, "info", "--json", url)
    assert rc == 0, err
    d = json.loads(out)
    assert d["path"] == url and d["ok"] and d["file_bytes"] == local["size"]
    rc, out, err = run_cli(capsys, "verify", url)
    assert rc == 0 and out.startswith(f"{url}: OK"), (out, err)
    rc, out, err = run_cli(capsys, "export", url, tmp_path / "out")
    assert rc == 0, err
    files = sorted(n for n in os.listdir(tmp_path / "out") if not n.startswith("."))
    assert len(files) == 10
    rc, out, err = run_cli(capsys, "export", local["path"], tmp_path / "ref")
    for name in files:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_missing_url_is_a_typed_error_naming_it(served, capsys):
    url = f"{served.url}/nope/missing.dcbs"
    for call in (dicube.load, dicube.load_meta, dicube.load_qc_report, DcbsReader, DcbStreamingReader):
        with pytest.raises(CubeFileNotFoundError) as info:
            call(url)
        assert isinstance(info.value, SourceNotFoundError) and info.value.path == url
        assert "not found" in str(info.value) and url in str(info.value)
    from cli_helpers import run_cli

    rc, out, err = run_cli(capsys, "info", url)
    assert rc == 1 and url in err and "not found" in err and "Traceback" not in err


def _child_load(url, q, ds=None):
    try:
        img = dicube.load(url, frames=[3, 4]) if ds is None else None
        q.put(("ok", img.raw_image.tobytes()) if ds is None else ("dataset", ds[1].image.tobytes()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        q.put((type(exc).__name__, str(exc)))


def test_forked_child_reads_http_after_parent_used_obstore(served, local):
    """obstore's network threads do not survive fork(): a forked child reads http(s) with the
    standard library instead (same ranges), and refuses s3:// with advice instead of hanging."""
    import multiprocessing

    url = f"{served.url}/s10.dcbs"
    # obstore's runtime now runs in this process (the dataset read the frame count)
    ds = DcbsDataset([url], mode="slab", slab_size=5, random=False)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_load, args=(u, q))
             for u in (url, "s3://some-bucket/ct.dcbs")]
    procs.append(ctx.Process(target=_child_load, args=(url, q, ds)))  # a DataLoader worker
    served.mark()
    try:
        for p in procs:
            p.start()
        got = dict(q.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    assert got["ok"] == local["image"].raw_image[3:5].tobytes()
    assert got["dataset"] == local["image"].raw_image[5:10].tobytes()
    assert "forked" in got["SourceError"] and "forkserver" in got["SourceError"]
    assert sorted(ranges(log(served))) == sorted([(0, REMOTE_FIRST_READ - 1)] * 2 + [
        frame_bytes(local, [3, 4]), frame_bytes(local, [5, 9])])



def test_legacy_v1_file_by_url(served, legacy_dcbs):
    dest = served.www / "legacy.dcbs"
    shutil.copyfile(legacy_dcbs, dest)
    dest.chmod(0o644)
    with pytest.warns(UserWarning):
        ref = dicube.load(legacy_dcbs)
    stats = TransferStats()
    with pytest.warns(UserWarning):
        img = dicube.load(f"{served.url}/legacy.dcbs", frames=slice(2, 6), stats=stats)
    assert np.array_equal(img.raw_image, ref.raw_image[2:6])
    assert stats.requests == 2  # the head, then frames 2-5 in one
