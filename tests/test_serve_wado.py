"""WADO-RS of ``dicube serve`` through dicomweb-client (PyPI) and raw HTTP (httpx):
instances, frames, metadata and rendered images of the shared CT sample_10 and pydicom's
CT_small/MR_small, compared with ``save_to_dicom_folder`` and the source files."""
from __future__ import annotations

import email.parser
import email.policy
import io
import logging
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

import dicube
from dicube.server import multipart, negotiation
from dicube.server.negotiation import NotAcceptable, instance_syntax, parse_accept
from dicube.server.rendered import parse_params, voi
from dicube.server.wado import jph_file, parse_frames, web_json
from serve_fixtures import start_serve_server
from streaming_cases import body, sources_by_uid

CT10_STUDY = "1.3.46.670589.50.2.37266317681035895631.31745749383280305035"
CT10_SERIES = "1.3.46.670589.50.2.5382016093075676224.32125520682478807182"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
EXPLICIT = "1.2.840.10008.1.2.1"
HTJ2K = "1.2.840.10008.1.2.4.201"
ALL_SYNTAXES = (HTJ2K, EXPLICIT, "1.2.840.10008.1.2")
DICOM_TS = 'multipart/related; type="application/dicom"; transfer-syntax={}'


# ---------------------------------------------------------------------- helpers
def parts_of(response: httpx.Response) -> list:
    """(part headers, bytes) of a multipart/related answer, parsed by the standard library."""
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    assert msg.is_multipart(), response.headers["content-type"]
    return [(dict(p.items()), p.get_payload(decode=True)) for p in msg.get_payload()]


@pytest.fixture(scope="module")
def client(serve_server):
    return DICOMwebClient(serve_server.url)


@pytest.fixture(scope="module")
def http(serve_server):
    with httpx.Client(base_url=serve_server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def sources(sample_10):
    return sources_by_uid(sample_10)


@pytest.fixture(scope="module")
def exported(serve_archive, tmp_path_factory):
    """SOP Instance UID -> bytes of what save_to_dicom_folder writes for that slice."""
    out = tmp_path_factory.mktemp("wado_export")
    files = dicube.save_to_dicom_folder(dicube.load(serve_archive / "ct" / "sample_10.dcbs"), out)
    return {str(pydicom.dcmread(p).SOPInstanceUID): Path(p).read_bytes() for p in files}


def same_instance(ds: pydicom.Dataset, exported_bytes: bytes) -> None:
    """``ds`` equals the exported file element for element (the data set bytes too when
    both are Explicit VR Little Endian)."""
    ref = pydicom.dcmread(io.BytesIO(exported_bytes))
    assert set(ds.keys()) == set(ref.keys())
    for tag in ref.keys():
        if tag != 0x7FE00010:
            assert ds[tag] == ref[tag], tag
    assert ds.file_meta.MediaStorageSOPInstanceUID == ref.SOPInstanceUID


# ---------------------------------------------------------------------- negotiation (pure)
def test_parse_accept_fields_params_and_q():
    r = parse_accept(['multipart/related; type="application/dicom"; transfer-syntax=*;q=0.5',
                      "Multipart/Related; Type=\"application/dicom\"; q=0.9, */*;q=0.1"])
    assert [m.type for m in r] == ["multipart/related", "multipart/related", "*/*"]
    assert r[0].params == {"type": "application/dicom", "transfer-syntax": "*"} and r[0].q == 0.5
    assert r[1].q == 0.9 and r[2].order == 2
    assert parse_accept(None) == [] and parse_accept("") == []
    for bad in ("text", 'multipart/related; type="x', "a/b; q=2", "a/b; q=abc", "a/b; noequals",
                "*/json", "x" * 9000 + "/y"):
        with pytest.raises(ValueError):
            parse_accept(bad)


def test_instance_syntax_rules():
    pick = lambda *fields: instance_syntax(parse_accept(list(fields)), ALL_SYNTAXES)  # noqa: E731
    assert instance_syntax([], ALL_SYNTAXES) == EXPLICIT          # no Accept: PS3.18 default
    assert pick('multipart/related; type="application/dicom"') == EXPLICIT
    assert pick("*/*") == EXPLICIT
    assert pick(DICOM_TS.format("*")) == HTJ2K                      # as stored
    assert pick(DICOM_TS.format(HTJ2K)) == HTJ2K
    # q-values decide, whatever the order; equal q: the first listed
    assert pick(DICOM_TS.format(HTJ2K) + ";q=0.5", DICOM_TS.format(EXPLICIT) + ";q=0.9") == EXPLICIT
    assert pick(DICOM_TS.format(EXPLICIT) + ";q=0.4, " + DICOM_TS.format(HTJ2K)) == HTJ2K
    # q=0 excludes a syntax even from "*"
    assert pick(DICOM_TS.format("*"), DICOM_TS.format(HTJ2K) + ";q=0") == EXPLICIT
    # HTJ2K asked of a file that has no HTJ2K codestream: the next acceptable one
    assert instance_syntax(parse_accept(DICOM_TS.format(HTJ2K) + ", " + DICOM_TS.format(EXPLICIT)
                                        + ";q=0.5"), (EXPLICIT,)) == EXPLICIT
    with pytest.raises(NotAcceptable, match="1.2.840.10008.1.2.4.50.*offered.*Explicit"):
        pick(DICOM_TS.format("1.2.840.10008.1.2.4.50"))
    with pytest.raises(NotAcceptable):
        pick("image/jpeg")


def test_frame_media_rules():
    fm = lambda text, avail=ALL_SYNTAXES: negotiation.frame_media(parse_accept(text), avail)  # noqa: E731
    assert fm("") == ("application/octet-stream", EXPLICIT)
    assert fm('multipart/related; type="application/octet-stream"') == ("application/octet-stream", EXPLICIT)
    assert fm('multipart/related; type="image/jphc"') == ("image/jphc", HTJ2K)
    assert fm('multipart/related; type="image/jph"; transfer-syntax=1.2.840.10008.1.2.4.203') \
        == ("image/jph", "1.2.840.10008.1.2.4.203")
    assert fm('multipart/related; type="image/jphc", multipart/related; type="application/octet-stream"',
              (EXPLICIT,)) == ("application/octet-stream", EXPLICIT)
    with pytest.raises(NotAcceptable, match="image/jphc"):
        fm('multipart/related; type="image/jpeg"')
    with pytest.raises(NotAcceptable):
        fm('multipart/related; type="image/jphc"', (EXPLICIT,))


def test_parse_frames():
    assert parse_frames("1") == [1] and parse_frames("3, 1,2") == [3, 1, 2]
    for bad in ("", "0", "1,,2", "a", "1,1", "-1", "1.5", "١", "9" * 12, "1," * 3000):
        with pytest.raises(ValueError):
            parse_frames(bad)


def test_web_json_numbers_and_bulk_uris():
    data = {"00180050": {"vr": "DS", "Value": ["1.50", "2", " 3e1"]},
            "00200013": {"vr": "IS", "Value": ["7"]},
            "00291010": {"vr": "OB", "InlineBinary": "AAAA" * 400},
            "00291011": {"vr": "OB", "InlineBinary": "AAAA"},
            "00400275": {"vr": "SQ", "Value": [{"00181030": {"vr": "DS", "Value": ["0.5"]}}]}}
    out = web_json(data, lambda tag: f"bulk/{tag}")
    assert out["00180050"]["Value"] == [1.5, 2, 30.0]
    assert out["00200013"]["Value"] == [7]
    assert out["00291010"] == {"vr": "OB", "BulkDataURI": "bulk/00291010"}
    assert out["00291011"] == data["00291011"]                # small: kept inline
    assert out["00400275"]["Value"][0]["00181030"]["Value"] == [0.5]


def test_multipart_encoding_parses_back():
    parts = [("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", b"a" * 10),
             ("application/dicom", b"\r\n--x\r\n" * 1000), ("application/dicom", b"")]
    boundary = multipart.new_boundary()
    chunks = list(multipart.encode_parts(parts, boundary, chunk=5000))
    assert len(chunks) > 1                                   # given out as it goes
    response = httpx.Response(200, headers={"content-type": multipart.content_type(
        boundary, "application/dicom")}, content=b"".join(chunks))
    got = parts_of(response)
    assert [(h["Content-Type"], data) for h, data in got] == parts


def test_render_params_and_voi():
    p = parse_params({"window": "40,400,linear", "viewport": "64,32", "quality": "50"})
    assert p.window == (40.0, 400.0, "linear") and p.viewport == (64, 32) and p.quality == 50
    assert parse_params({}, thumbnail=True).viewport == (128, 128)
    for bad in ({"window": "40,400"}, {"window": "40,0,linear"}, {"window": "a,1,linear"},
                {"window": "1,1,cubic"}, {"viewport": "0,10"}, {"viewport": "10,10,1"},
                {"viewport": "10,10,0,0,-5,5"}, {"quality": "0"}, {"viewport": "nan,1"}):
        with pytest.raises(ValueError):
            parse_params(bad)
    v = np.array([-1000.0, -160, 40, 240, 3000])
    assert voi(v, 40, 400, "linear").tolist() == [0, 0, 128, 255, 255]
    assert voi(v, 40, 400, "linear-exact").tolist() == [0, 0, 128, 255, 255]
    assert voi(v, 40, 400, "sigmoid")[2] == 128 and voi(v, 40, 400, "sigmoid")[0] == 0


def test_jph_file_boxes():
    from dicube.codecs.jph import read_header

    from dicube.codecs import htj2k

    frame = (np.arange(64 * 48, dtype=np.uint16).reshape(1, 48, 64) % 4096)
    code = htj2k.encode(frame, 12, 1)[0][0]
    data = jph_file(code, read_header(code))
    assert data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    assert data[16:24] == b"ftypjph " and data.endswith(code)
    assert data[data.index(b"ihdr") + 4:][:8] == (48).to_bytes(4, "big") + (64).to_bytes(4, "big")


def test_streaming_pieces_join_to_the_instance(serve_archive):
    """get_dicom_pieces (what series retrieval sends, the codestream not copied) joins to
    get_dicom_for_frame's bytes in every syntax; get_pixel_data is its Pixel Data value."""
    with dicube.DcbStreamingReader(serve_archive / "ct" / "sample_10.dcbs") as r:
        for ts in r.available_transfer_syntaxes():
            for k in (0, 9):
                pieces = r.get_dicom_pieces(k, ts)
                data = r.get_dicom_for_frame(k, transfer_syntax=ts)
                assert b"".join(pieces) == data
                pixel = r.get_pixel_data(k, ts)
                value = pydicom.dcmread(io.BytesIO(data)).PixelData
                assert value == pixel if ts != HTJ2K else value[20:20 + len(pixel)] == pixel
                assert len(pieces) == 3 and pieces[1] == pixel
                # built around the value the caller kept: not read or decoded again
                kept = r.get_dicom_pieces(k, ts, pixel_data=pixel)
                assert b"".join(kept) == data and kept[1] is pixel


# ---------------------------------------------------------------------- dicomweb-client
UNCOMPRESSED = (("application/dicom", EXPLICIT),)


def test_retrieve_study_uncompressed_equals_export(client, exported, sources):
    got = client.retrieve_study(CT10_STUDY, media_types=UNCOMPRESSED)
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(sources)
    for ds in got:
        uid = str(ds.SOPInstanceUID)
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT
        same_instance(ds, exported[uid])
        np.testing.assert_array_equal(ds.pixel_array, sources[uid][1].pixel_array)


def test_retrieve_series_and_instance(client, exported, sources):
    series = client.retrieve_series(CT10_STUDY, CT10_SERIES, media_types=UNCOMPRESSED)
    assert len(series) == 10
    uid = sorted(sources)[3]
    ds = client.retrieve_instance(CT10_STUDY, CT10_SERIES, uid, media_types=UNCOMPRESSED)
    assert str(ds.SOPInstanceUID) == uid
    same_instance(ds, exported[uid])
    assert ds.PixelData == sources[uid][1].PixelData


def test_retrieve_frames_octet_stream(client, sources):
    uid = sorted(sources)[0]
    (frame,) = client.retrieve_instance_frames(CT10_STUDY, CT10_SERIES, uid, [1])
    assert frame == sources[uid][1].PixelData


def test_series_metadata_and_bulk_data(client, exported, sources):
    meta = client.retrieve_series_metadata(CT10_STUDY, CT10_SERIES)
    assert len(meta) == 10
    assert client.retrieve_series_metadata(CT10_STUDY, CT10_SERIES) == meta  # cached: the same
    for item in meta:
        bulk = {tag: elem.pop("BulkDataURI") for tag, elem in item.items()
                if "BulkDataURI" in elem}
        ds = pydicom.Dataset.from_json(item)
        uid = str(ds.SOPInstanceUID)
        ref = pydicom.dcmread(io.BytesIO(exported[uid]))
        assert set(ds.keys()) == set(ref.keys())
        for tag in ref.keys():
            if f"{tag:08X}" not in bulk:
                assert ds[tag].value == ref[tag].value, tag
        # the bulk data elements (two private OB ones, Pixel Data) by their URIs
        assert sorted(bulk) == ["00E11046", "01F71019", "7FE00010"]
        for tag, uri in bulk.items():
            assert client.retrieve_bulkdata(uri) == [ref[int(tag, 16)].value], tag
        assert bulk["7FE00010"].endswith(f"/instances/{uid}/bulkdata/7FE00010")
        assert ref.PixelData == sources[uid][1].PixelData
        assert isinstance(item["00280030"]["Value"][0], float)   # DS as JSON numbers


def test_study_and_instance_metadata(client, sources):
    study = client.retrieve_study_metadata(CT10_STUDY)
    assert sorted(item["00080018"]["Value"][0] for item in study) == sorted(sources)
    uid = sorted(sources)[4]
    item = client.retrieve_instance_metadata(CT10_STUDY, CT10_SERIES, uid)  # the one item
    assert item["00080018"]["Value"] == [uid] and not any(k.startswith("0002") for k in item)
    assert item["00200013"]["Value"] == [int(sources[uid][1].InstanceNumber)]   # IS as a number


def test_instance_rendered_and_thumbnail(client, http, sources):
    from PIL import Image

    uid = sorted(sources)[5]
    jpeg = client.retrieve_instance_rendered(CT10_STUDY, CT10_SERIES, uid,
                                             params={"window": "40,400,linear"})
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (512, 512) and img.mode == "L"
    narrow = client.retrieve_instance_rendered(CT10_STUDY, CT10_SERIES, uid,
                                               params={"window": "40,80,linear"})
    assert narrow != jpeg
    base = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}"
    r = http.get(f"{base}/instances/{uid}/rendered", params={"viewport": "100,100"},
                 headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (100, 100)
    for path in (f"/studies/{CT10_STUDY}/thumbnail", f"{base}/thumbnail",
                 f"{base}/instances/{uid}/thumbnail"):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(r.content)).size) == 128
    r = http.get(f"{base}/rendered", params={"viewport": "32,32"})
    parts = parts_of(r)
    assert len(parts) == 10 and all(h["Content-Type"] == "image/jpeg" for h, _ in parts)
    assert http.get(f"{base}/instances/{uid}/rendered", params={"window": "1,2,cubic"}).status_code == 400
    r = http.get(f"{base}/instances/{uid}/rendered", params={"viewport": "64,64,600,0,10,10"})
    assert r.status_code == 400 and "outside" in r.json()["error"]
    r = http.get(f"{base}/instances/{uid}/rendered", params={"viewport": "64,64,256,256,256,128"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 32)
    assert http.get(f"{base}/instances/{uid}/rendered", headers={"Accept": "image/gif"}).status_code == 406


# ---------------------------------------------------------------------- raw HTTP: HTJ2K
@pytest.mark.parametrize("ts", [HTJ2K, "*"])
def test_series_as_stored_htj2k(http, sources, exported, ts):
    r = http.get(f"/studies/{CT10_STUDY}/series/{CT10_SERIES}", headers={"Accept": DICOM_TS.format(ts)})
    assert r.status_code == 200
    assert f"transfer-syntax={HTJ2K}" in r.headers["content-type"]
    assert "content-encoding" not in r.headers                   # pixel data never gzipped
    parts = parts_of(r)
    assert len(parts) == 10
    for headers, data in parts:
        assert headers["Content-Type"] == f"application/dicom; transfer-syntax={HTJ2K}"
        ds = pydicom.dcmread(io.BytesIO(data))
        uid = str(ds.SOPInstanceUID)
        assert ds.file_meta.TransferSyntaxUID == HTJ2K
        same_instance(ds, exported[uid])
        ds.pixel_array_options(decoding_plugin="pylibjpeg")
        np.testing.assert_array_equal(ds.pixel_array, sources[uid][1].pixel_array)
    # the data set before the pixel data is the uncompressed one's, byte for byte
    plain = parts_of(http.get(f"/studies/{CT10_STUDY}/series/{CT10_SERIES}"))
    a, b = body(parts[0][1]), body(plain[0][1])
    cut = b.index(b"\xe0\x7f\x10\x00")
    assert a[:cut] == b[:cut]


def test_frames_as_htj2k_codestream(http, sources, serve_archive):
    uid = sorted(sources)[2]
    url = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances/{uid}/frames/1"
    r = http.get(url, headers={"Accept": 'multipart/related; type="image/jphc"'})
    assert r.status_code == 200
    ((headers, code),) = parts_of(r)
    assert headers["Content-Type"] == f"image/jphc; transfer-syntax={HTJ2K}"
    assert code[:4] == b"\xff\x4f\xff\x51"
    from dicube.codecs.jph import imdecode_jph

    np.testing.assert_array_equal(imdecode_jph(code), sources[uid][1].pixel_array)
    r = http.get(url, headers={"Accept": 'multipart/related; type="image/jph"'})
    ((headers, jph),) = parts_of(r)
    assert headers["Content-Type"].startswith("image/jph;") and jph.endswith(code)
    assert jph[4:8] == b"jP  "


def test_instance_from_other_studies_and_implicit(http):
    """pydicom's MR_small, in Implicit VR LE when only that is accepted."""
    r = http.get(f"/studies/{MR_STUDY}", headers={"Accept": DICOM_TS.format("1.2.840.10008.1.2")})
    assert r.status_code == 200
    ((_, data),) = parts_of(r)
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(io.BytesIO(data))
    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)


def test_many_clients_at_once(serve_server, sources):
    """8 clients asking for frames and instances together each get their own bytes."""
    from concurrent.futures import ThreadPoolExecutor

    base = f"{serve_server.url}/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances"
    uids = sorted(sources)

    def fetch(k: int):
        uid = uids[k % len(uids)]
        with httpx.Client(timeout=60) as c:
            if k % 2:
                ((_, data),) = parts_of(c.get(f"{base}/{uid}/frames/1"))
                return uid, data
            ((_, data),) = parts_of(c.get(f"{base}/{uid}", headers={"Accept": DICOM_TS.format("*")}))
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.pixel_array_options(decoding_plugin="pylibjpeg")
            return uid, ds.pixel_array.tobytes()

    with ThreadPoolExecutor(8) as pool:
        for uid, data in pool.map(fetch, range(40)):
            assert data == sources[uid][1].PixelData


# ---------------------------------------------------------------------- errors
def test_errors(http, sources):
    base = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}"
    uid = sorted(sources)[0]
    r = http.get(base, headers={"Accept": DICOM_TS.format("1.2.840.10008.1.2.4.50")})
    assert r.status_code == 406 and "1.2.840.10008.1.2.4.50" in r.json()["error"]
    assert "Explicit VR Little Endian" in r.json()["error"]
    r = http.get(f"{base}/instances/{uid}/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert r.status_code == 406
    for path in ("/studies/1.2.3", f"/studies/{CT10_STUDY}/series/1.2.3",
                 f"{base}/instances/1.2.3", f"{base}/instances/1.2.3/frames/1",
                 f"{base}/instances/1.2.3/metadata", "/studies/1.2.3/metadata",
                 f"/studies/{MR_STUDY}/series/{CT10_SERIES}", f"{base}/instances/{uid}/frames/2"):
        r = http.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]
    for path in (f"{base}/instances/{uid}/frames/1,x", f"{base}/instances/{uid}/frames/0",
                 f"{base}/instances/{uid}/frames/1,1", "/studies/1.2.x",
                 f"{base}/instances/{uid}/bulkdata/7FE0001"):
        assert http.get(path).status_code == 400, path
    assert http.get(base, headers={"Accept": "multipart/related; q=high"}).status_code == 400


def test_corrupt_file_fails_its_study_only(serve_archive_copy, caplog):
    """Frame 5 fails its checksum: that instance answers 500 naming the file, the study's
    answer stops short (no close delimiter: clients see the failure), each with a log
    line; the other studies keep serving."""
    from dicube.storage.reader import DcbsReader

    path = serve_archive_copy / "ct" / "sample_10.dcbs"
    with DcbsReader(path) as r:
        at = r.layout.header.frames_offset + int(r.layout.index[5]["offset"]) + 200
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="dicube.server"):
        with start_serve_server(serve_archive_copy) as served, httpx.Client(timeout=60) as c:
            ref = served.index.instances(CT10_STUDY)[5]
            assert ref.frame == 5
            r = c.get(f"{served.url}/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances/{ref.sop_uid}")
            assert r.status_code == 500
            assert "sample_10.dcbs" in r.json()["error"] and "checksum" in r.json()["error"]
            try:
                r = c.get(f"{served.url}/studies/{CT10_STUDY}")
                assert r.status_code == 200 and not r.content.rstrip().endswith(b"--")
            except httpx.RemoteProtocolError:
                pass  # the connection closed before the end of the chunked body
            r = c.get(f"{served.url}/studies/{MR_STUDY}")
            assert r.status_code == 200 and len(parts_of(r)) == 1
    lines = [rec.getMessage() for rec in caplog.records if "checksum" in rec.getMessage()]
    assert len(lines) >= 2 and any("cut short" in m for m in lines)


def test_series_is_streamed_and_frames_cached(serve_server, http, monkeypatch):
    """Many instances go out as a chunked stream; a frame asked again is not decoded again."""
    from dicube.dicom.streaming import DcbStreamingReader
    from dicube.server.pixels import ByteCache

    with http.stream("GET", f"/studies/{CT10_STUDY}/series/{CT10_SERIES}") as r:
        assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
        assert sum(len(c) for c in r.iter_raw()) > 10 * 512 * 512 * 2
    calls = []
    real = DcbStreamingReader.get_pixel_data
    monkeypatch.setattr(DcbStreamingReader, "get_pixel_data",
                        lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    uid = serve_server.index.instances(CT10_STUDY)[7].sop_uid
    url = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances/{uid}/frames/1"
    first, second = http.get(url), http.get(url)
    assert first.status_code == second.status_code == 200
    assert parts_of(first)[0][1] == parts_of(second)[0][1] and len(calls) <= 1
    cache = ByteCache(1000)
    for k in range(6):
        cache.put(k, bytes(200))
    assert cache.size == 1000 and cache.get(0) is None and cache.get(5) == bytes(200)
    cache.put("big", bytes(300))                      # more than a quarter: not kept
    assert cache.get("big") is None and cache.size <= 1000


def test_dcba_served_in_each_syntax(tmp_path, serve_sources):
    """A .dcba (JPEG XL frames): "*" gives HTJ2K re-encoded, JPEG XL Lossless on request
    (the stored codestream), Explicit VR LE by default; pixels equal the source."""
    from pydicom.data import get_testdata_file

    root = tmp_path / "archive"
    root.mkdir()
    dicube.save(dicube.load_from_dicom_folder(serve_sources["CT_small.dcbs"]), root / "ct.dcba")
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with start_serve_server(root) as served, httpx.Client(timeout=60) as c:
        url = f"{served.url}/studies/{src.StudyInstanceUID}"
        for ts, want in (("*", ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202")),
                         ("1.2.840.10008.1.2.4.110", ("1.2.840.10008.1.2.4.110",)),
                         (None, (EXPLICIT,))):
            r = c.get(url, headers={"Accept": DICOM_TS.format(ts)} if ts else {})
            assert r.status_code == 200, r.text
            ((_, data),) = parts_of(r)
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.file_meta.TransferSyntaxUID in want
            if ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.4.110":
                np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)
        r = c.get(url, headers={"Accept": DICOM_TS.format("1.2.840.10008.1.2.4.50")})
        assert r.status_code == 406 and "1.2.840.10008.1.2.4.110" in r.json()["error"]


def _count_decodes(monkeypatch) -> list:
    from dicube.dicom.streaming import DcbStreamingReader

    calls: list = []
    real = DcbStreamingReader.get_pixel_data
    monkeypatch.setattr(DcbStreamingReader, "get_pixel_data",
                        lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    return calls


def _wait_for(predicate, seconds: float = 20.0) -> bool:
    import time

    end = time.monotonic() + seconds
    while not predicate() and time.monotonic() < end:
        time.sleep(0.05)
    return predicate()


def test_frame_request_prefetches_its_series_and_instances_share_it(serve_archive_copy,
                                                                    monkeypatch, sources):
    """One frame asked for decodes its series' other frames in the background, nearest
    first; uncompressed instances are then built around those cached pixels (no decoding),
    and equal the source files."""
    from serve_fixtures import start_serve_server

    calls = _count_decodes(monkeypatch)
    with start_serve_server(serve_archive_copy) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as http:
        refs = srv.index.instances(CT10_STUDY)
        url = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances/{refs[4].sop_uid}/frames/1"
        assert http.get(url).status_code == 200
        assert _wait_for(lambda: len(calls) >= len(refs))
        assert [a[0] for a in calls][:3] == [refs[4].frame, refs[4].frame - 1, refs[4].frame + 1]
        r = http.get(f"/studies/{CT10_STUDY}/series/{CT10_SERIES}",
                     headers={"Accept": DICOM_TS.format(EXPLICIT)})
        assert r.status_code == 200 and len(calls) == len(refs)
        for _, data in parts_of(r):
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.PixelData == sources[str(ds.SOPInstanceUID)][1].PixelData


def test_no_prefetch_when_the_series_does_not_fit_half_the_cache(serve_archive_copy,
                                                                 monkeypatch):
    import time

    from serve_fixtures import start_serve_server

    monkeypatch.setenv("DICUBE_SERVE_CACHE_MB", "4")  # 10 frames of 512 KB: more than half
    calls = _count_decodes(monkeypatch)
    with start_serve_server(serve_archive_copy) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as http:
        uid = srv.index.instances(CT10_STUDY)[2].sop_uid
        url = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}/instances/{uid}/frames/1"
        assert http.get(url).status_code == 200 and http.get(url).status_code == 200
        time.sleep(1.0)
        assert len(calls) == 1


def test_pumped_body_makes_ahead_stops_with_its_consumer_and_raises_errors():
    """The response body thread: chunks in order; the producer closes its iterator when the
    client goes away (no thread left behind); an error reaches the consumer."""
    import asyncio
    import threading

    from dicube.server.wado import _pumped

    closed = threading.Event()

    def endless():
        try:
            k = 0
            while True:
                yield bytes([k % 256])
                k += 1
        finally:
            closed.set()

    def failing():
        yield b"a"
        raise OSError("disk gone")

    async def main():
        body = _pumped(endless(), depth=2)
        got = [c async for c, _ in zip_async(body, range(5))]
        await body.aclose()
        assert got == [bytes([k]) for k in range(5)]
        with pytest.raises(OSError, match="disk gone"):
            [c async for c in _pumped(failing())]

    async def zip_async(agen, counter):
        it = iter(counter)
        async for chunk in agen:
            if next(it, None) is None:
                return
            yield chunk, None

    asyncio.run(main())
    assert closed.wait(5)
    assert _wait_for(lambda: not any(t.name == "dicube-wado-body" for t in threading.enumerate()), 5)


def test_stored_codestreams_are_read_once(serve_archive_copy, monkeypatch, sources):
    """A series retrieved twice as stored HTJ2K reads (and checksums) its frames once."""
    from dicube.storage.reader import DcbsReader
    from serve_fixtures import start_serve_server

    reads: list = []
    real = DcbsReader.codestream
    monkeypatch.setattr(DcbsReader, "codestream",
                        lambda self, i: reads.append(i) or real(self, i))
    accept = {"Accept": DICOM_TS.format(HTJ2K)}
    with start_serve_server(serve_archive_copy) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as http:
        url = f"/studies/{CT10_STUDY}/series/{CT10_SERIES}"
        first, second = http.get(url, headers=accept), http.get(url, headers=accept)
        assert first.status_code == second.status_code == 200
        assert [d for _, d in parts_of(first)] == [d for _, d in parts_of(second)]
        assert sorted(set(reads)) == list(range(10)) and len(reads) <= 11  # +1: syntax probe
