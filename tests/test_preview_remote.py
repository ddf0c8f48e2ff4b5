"""Previews of remote series over real servers on loopback: nginx (HTTP Range requests,
JSON directory index) and moto's S3 server. Bytes transferred are counted by our sources
and cross-checked with nginx's access log."""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import dicube
from dicube.exceptions import SourceError
from dicube.preview import mosaic
from dicube.preview.series import HEADER_PREFETCH
from dicube.storage.format import FIRST_READ
from dicube.storage.reader import DcbsReader
from dicube.storage.sources import RemoteFile, list_folder
from preview_servers import publish, s3_env, start_moto, start_nginx  # noqa: F401  (s3_env: a fixture)

UUID = "1b3c5d7e-0000-4000-8000-00000000beef"


@pytest.fixture(scope="module")
def nginx(sample_200, sample_10, tmp_path_factory):
    server = start_nginx()
    www = server.www
    dicube.save(dicube.load_from_dicom_folder(sample_200), www / "s200.dcbs")
    (www / "s200.dcbs").chmod(0o644)
    publish(sample_200, www / "sample_200")
    publish(sample_10, www / "root" / UUID)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory, sample_10, nginx):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    server.create_bucket("previews")
    import obstore

    store = server.store("previews")
    obstore.put(store, "s200.dcbs", (nginx.www / "s200.dcbs").read_bytes())
    for name in sorted(os.listdir(sample_10)):
        obstore.put(store, f"root/{UUID}/{name}", (Path(sample_10) / name).read_bytes())
    obstore.put(store, "root/0aaaaaaa-0000-4000-8000-000000000000.dcbs", b"not used")
    yield server
    server.stop()


def test_remote_dcbs_reads_only_needed_frames(nginx):
    url = f"{nginx.url}/s200.dcbs"
    size = (nginx.www / "s200.dcbs").stat().st_size
    local = mosaic(nginx.www / "s200.dcbs")
    nginx.mark()
    p = mosaic(url)
    assert p.slices == local.slices and np.array_equal(np.asarray(p.image), np.asarray(local.image))
    # one ranged GET for the head, then one per tile's frame
    assert p.stats.requests == 1 + 36
    assert p.stats.bytes < 0.3 * size
    with DcbsReader(nginx.www / "s200.dcbs") as r:
        frames = int(r.layout.index["length"][p.slices].sum())
    assert p.stats.bytes == FIRST_READ + frames
    assert nginx.sent_bytes() == (p.stats.bytes, p.stats.requests)
    assert all(line.startswith("206 ") for line in nginx.log_lines())


def test_remote_reader_head_in_one_request(nginx):
    src = RemoteFile(f"{nginx.url}/s200.dcbs")
    with DcbsReader(src) as r:
        assert src.stats.requests == 1 and src.stats.bytes == FIRST_READ
        a = r.read_frames([3, 150])
    with DcbsReader(nginx.www / "s200.dcbs") as r:
        assert np.array_equal(a, r.read_frames([3, 150]))
    with pytest.raises(SourceError):
        RemoteFile(f"{nginx.url}/missing.dcbs")


def test_remote_dicom_folder_headers_then_selected(nginx, sample_200):
    local = mosaic(sample_200)
    nginx.mark()
    p = mosaic(f"{nginx.url}/sample_200")
    assert np.array_equal(np.asarray(p.image), np.asarray(local.image))
    files = list_folder(str(sample_200))
    total = sum(e.size for e in files)
    # 1 listing + a header range per file + the rest of the 36 chosen files
    assert p.stats.requests == 1 + len(files) + 36
    lines = nginx.log_lines()
    assert len(lines) == p.stats.requests and lines[0].startswith("200 ")  # the listing
    assert all(ln.startswith("206 ") for ln in lines[1:])  # range requests only
    listing = len(urllib.request.urlopen(f"{nginx.url}/sample_200/").read())  # log counts chunking
    ranged = sum(int(ln.split()[1]) for ln in lines[1:])
    assert ranged + listing == p.stats.bytes
    # headers: the first HEADER_PREFETCH bytes of every file; pixels: the rest of 36 files
    sizes = [int(ln.split()[1]) for ln in lines[1:]]
    assert sizes[:len(files)] == [HEADER_PREFETCH] * len(files)
    rests = {e.size - HEADER_PREFETCH for e in files}
    assert len(sizes) == len(files) + 36 and all(n in rests for n in sizes[len(files):])
    assert p.stats.bytes < 0.3 * total


def test_http_root_and_series_id(nginx, sample_10):
    local = mosaic(sample_10, tile_width=3, image_width=64)
    p = mosaic(UUID.replace("-", ""), root=f"{nginx.url}/root", tile_width=3, image_width=64)
    assert p.location == f"{nginx.url}/root/{UUID}"
    assert np.array_equal(np.asarray(p.image), np.asarray(local.image))


def test_s3_dcbs_and_folder(s3_env, nginx, sample_10):
    size = (nginx.www / "s200.dcbs").stat().st_size
    local = mosaic(nginx.www / "s200.dcbs")
    p = mosaic("s3://previews/s200.dcbs")
    assert np.array_equal(np.asarray(p.image), np.asarray(local.image))
    assert p.stats.requests == 37 and p.stats.bytes < 0.3 * size
    ref = mosaic(sample_10, tile_width=2, image_width=64)
    q = mosaic("1b3c*", root="s3://previews/root", tile_width=2, image_width=64)
    assert q.location == f"s3://previews/root/{UUID}"
    assert q.slices == ref.slices and np.array_equal(np.asarray(q.image), np.asarray(ref.image))
