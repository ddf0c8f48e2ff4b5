"""QIDO-RS of ``dicube serve``, through dicomweb-client (PyPI) and raw HTTP (httpx)."""
from __future__ import annotations

import base64
import shutil
import time

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from dicube.server.app import Auth
from serve_fixtures import start_serve_server

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


def _patient_ids(results) -> list:
    return sorted(Dataset.from_json(r).PatientID for r in results)


@pytest.fixture(scope="module")
def client(serve_server):
    return DICOMwebClient(serve_server.url)


def test_search_for_studies_with_filters(client, serve_sources, serve_server):
    studies = client.search_for_studies()
    assert _patient_ids(studies) == ["1CT1", "444 1", "4MR1"]
    ct = pydicom.dcmread(next(serve_sources["ct/sample_10.dcbs"].iterdir()), stop_before_pixels=True)
    (one,) = [Dataset.from_json(s) for s in client.search_for_studies(
        search_filters={"PatientID": "444 1"})]
    assert one.StudyInstanceUID == ct.StudyInstanceUID
    assert one.PatientName == ct.PatientName
    assert one.StudyDate == ct.StudyDate
    assert one.ModalitiesInStudy == "CT"
    assert one.NumberOfStudyRelatedSeries == 1
    assert one.NumberOfStudyRelatedInstances == 10
    assert one.InstanceAvailability == "ONLINE"
    # dicomweb-client sends Host without the port: the URL must still name it
    assert one.RetrieveURL == f"{serve_server.url}/studies/{ct.StudyInstanceUID}"

    def ids(**kw):
        return _patient_ids(client.search_for_studies(**kw))

    assert ids(search_filters={"PatientName": "compressed*"}) == ["1CT1", "4MR1"]
    assert ids(search_filters={"PatientName": "CompressedSamples^?R1"}) == ["4MR1"]
    assert ids(search_filters={"StudyDate": "20040101-20041231"}) == ["1CT1", "4MR1"]
    assert ids(search_filters={"StudyDate": "20230101-"}) == ["444 1"]
    assert ids(search_filters={"ModalitiesInStudy": "MR"}) == ["4MR1"]
    assert ids(search_filters={"AccessionNumber": "*"}) == ["1CT1", "444 1", "4MR1"]
    assert ids(search_filters={"AccessionNumber": "A123"}) == []
    assert ids(search_filters={"StudyInstanceUID": f"{CT_STUDY}\\{MR_STUDY}"}) == ["1CT1", "4MR1"]
    assert ids(search_filters={"PatientName": "stent"}) == []
    assert ids(search_filters={"PatientName": "stent"}, fuzzymatching=True) == ["444 1"]
    page = [Dataset.from_json(s).PatientID for s in client.search_for_studies(limit=1, offset=1)]
    every = [Dataset.from_json(s).PatientID for s in client.search_for_studies()]
    assert page == every[1:2]
    assert [Dataset.from_json(s).PatientID
            for s in client.search_for_studies(limit=2, get_remaining=True)] == every


def test_search_for_series_and_instances(client, serve_sources):
    src = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID:
           pydicom.dcmread(p, stop_before_pixels=True)
           for p in serve_sources["ct/sample_10.dcbs"].iterdir()}
    first = next(iter(src.values()))
    (series,) = [Dataset.from_json(s) for s in
                 client.search_for_series(study_instance_uid=first.StudyInstanceUID)]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert series.Modality == "CT"
    assert series.SeriesNumber == first.SeriesNumber
    assert series.NumberOfSeriesRelatedInstances == 10
    assert sorted(Dataset.from_json(s).Modality for s in client.search_for_series()) == \
        ["CT", "CT", "MR"]
    assert [Dataset.from_json(s).PatientID for s in
            client.search_for_series(search_filters={"Modality": "MR"})] == ["4MR1"]
    assert [Dataset.from_json(s).PatientID for s in client.search_for_series(
        search_filters={"SeriesInstanceUID": first.SeriesInstanceUID})] == ["444 1"]
    instances = [Dataset.from_json(i) for i in client.search_for_instances(
        study_instance_uid=first.StudyInstanceUID, series_instance_uid=first.SeriesInstanceUID)]
    assert {i.SOPInstanceUID for i in instances} == set(src)
    for i in instances:
        assert i.InstanceNumber == src[i.SOPInstanceUID].InstanceNumber
        assert i.SOPClassUID == src[i.SOPInstanceUID].SOPClassUID
        assert (i.Rows, i.Columns) == (512, 512)
        assert i.InstanceAvailability == "ONLINE"
    assert len(client.search_for_instances(study_instance_uid=first.StudyInstanceUID)) == 10
    assert len(client.search_for_instances()) == 12
    assert len(client.search_for_instances(search_filters={"PatientID": "4MR1"})) == 1
    assert client.search_for_series(study_instance_uid="1.2.3.4") == []


def test_includefield(client, serve_sources):
    ct = pydicom.dcmread(next(serve_sources["ct/sample_10.dcbs"].iterdir()), stop_before_pixels=True)
    # an attribute the index does not hold is read from the file's metadata
    (s,) = client.search_for_series(study_instance_uid=ct.StudyInstanceUID,
                                    fields=["SliceThickness", "00080070"])
    assert isinstance(s["00180050"]["Value"][0], (int, float))      # DS as a JSON number
    ds = Dataset.from_json(s)
    assert ds.SliceThickness == ct.SliceThickness
    assert ds.Manufacturer == ct.Manufacturer
    (st,) = client.search_for_studies(search_filters={"PatientID": "444 1"}, fields=["all"])
    assert "00100040" in st and "00201208" in st


def _get(url, **kw):
    return httpx.get(url, timeout=10, **kw)


@pytest.mark.parametrize("query", [
    "studies?StudyDate=2023-01-01", "studies?StudyDate=20231301", "studies?StudyDate=20240101-20230101",
    "studies?limit=-1", "studies?limit=ten", "studies?offset=x", "studies?NoSuchAttribute=1",
    "studies?includefield=NoSuchAttribute", "studies?fuzzymatching=maybe",
    "studies?StudyInstanceUID=not-a-uid", "series?SeriesNumber=seven", "studies?PatientWeight=70",
    "studies/not-a-uid/series", "studies?ReferencedSeriesSequence.SeriesInstanceUID=1.2",
])
def test_malformed_queries_answer_400(serve_server, query):
    r = _get(f"{serve_server.url}/{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_no_match_unknown_path_and_writes(serve_server):
    r = _get(f"{serve_server.url}/studies?PatientID=nobody")
    assert (r.status_code, r.json(), r.headers["content-type"]) == (200, [], "application/dicom+json")
    assert _get(f"{serve_server.url}/studies/1.2.3/series").json() == []
    assert _get(f"{serve_server.url}/nothing-here").status_code == 404
    assert _get(serve_server.url.replace("/dicom-web", "/studies")).status_code == 404
    r = httpx.post(f"{serve_server.url}/studies", content=b"x", timeout=10)
    assert r.status_code == 405 and "read-only" in r.json()["error"]


def test_limit_warns_of_more_results_and_gzip_is_for_json_only(serve_server):
    r = _get(f"{serve_server.url}/studies?limit=1")
    assert len(r.json()) == 1 and "additional results" in r.headers["warning"]
    assert "warning" not in _get(f"{serve_server.url}/studies?limit=3").headers
    with httpx.Client(headers={"Accept-Encoding": "gzip"}) as c:
        r = c.get(f"{serve_server.url}/instances", timeout=10)
        assert r.headers["content-encoding"] == "gzip" and len(r.json()) == 12
    raw = httpx.get(f"{serve_server.url}/instances", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers


@pytest.mark.parametrize("auth,good,bad", [
    (Auth(token="s3cret"), {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer nope"}),
    (Auth(user="ann", password="pw"),
     {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()},
     {"Authorization": "Basic " + base64.b64encode(b"ann:px").decode()}),
])
def test_authentication(serve_archive, auth, good, bad):
    with start_serve_server(serve_archive, auth=auth) as served:
        for headers in ({}, bad, {"Authorization": "Bearer"}, {"Authorization": "Basic %%%"}):
            r = _get(f"{served.url}/studies", headers=headers)
            assert r.status_code == 401
            assert r.headers["www-authenticate"].split()[0] in ("Basic", "Bearer")
        assert _get(f"{served.url}/studies", headers=good).status_code == 200
        client = DICOMwebClient(served.url, headers=good)
        assert len(client.search_for_studies()) == 3


def test_auth_from_environment():
    assert Auth.from_env({}) is None
    assert Auth.from_env({"DICUBE_SERVE_TOKEN": "t"}) == Auth(token="t")
    assert Auth.from_env({"DICUBE_SERVE_USER": "u", "DICUBE_SERVE_PASSWORD": "p"}) == \
        Auth(user="u", password="p")
    with pytest.raises(ValueError):
        Auth.from_env({"DICUBE_SERVE_USER": "u"})


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_files_added_and_removed_while_serving(serve_archive_copy, tmp_path):
    root = serve_archive_copy
    aside = tmp_path / "MR_small.dcbs"
    shutil.move(root / "MR_small.dcbs", aside)
    with start_serve_server(root, refresh_interval=0.0) as served:
        client = DICOMwebClient(served.url)
        assert _patient_ids(client.search_for_studies()) == ["1CT1", "444 1"]
        (root / "new").mkdir()
        shutil.copyfile(aside, root / "new" / "MR_small.dcbs")
        _wait_for(lambda: "4MR1" in _patient_ids(client.search_for_studies()))
        assert len(client.search_for_instances(study_instance_uid=MR_STUDY)) == 1
        (root / "CT_small.dcbs").unlink()
        _wait_for(lambda: "1CT1" not in _patient_ids(client.search_for_studies()))
        assert client.search_for_series(study_instance_uid=CT_STUDY) == []


def test_watched_index_serves_new_files(serve_archive_copy, tmp_path):
    root = serve_archive_copy
    shutil.move(root / "MR_small.dcbs", tmp_path / "MR_small.dcbs")
    with start_serve_server(root, refresh_interval=None) as served:
        served.index.start_watching(0.05)
        shutil.copyfile(tmp_path / "MR_small.dcbs", root / "MR_small.dcbs")
        _wait_for(lambda: len(_get(f"{served.url}/studies").json()) == 3)


def test_a_corrupt_file_fails_its_study_only(serve_archive_copy):
    from test_serve_index import _corrupt_section

    root = serve_archive_copy
    _corrupt_section(root / "CT_small.dcbs")
    with start_serve_server(root) as served:
        r = _get(f"{served.url}/studies/{CT_STUDY}/series")
        assert r.status_code == 500
        body = r.json()
        assert body["study"] == CT_STUDY
        assert list(body["files"]) == [str(root / "CT_small.dcbs")]
        assert "checksum" in body["files"][str(root / "CT_small.dcbs")]
        assert _get(f"{served.url}/studies/{CT_STUDY}/series/1.2.3/instances").status_code == 500
        ok = _get(f"{served.url}/studies/{MR_STUDY}/series")
        assert ok.status_code == 200 and len(ok.json()) == 1
        assert _patient_ids(_get(f"{served.url}/studies").json()) == ["444 1", "4MR1"]


def test_cors_lets_a_browser_viewer_call_with_credentials(serve_archive, serve_server):
    origin = "http://viewer.example:3000"
    with start_serve_server(serve_archive, auth=Auth(token="t"), cors_origins=[origin]) as served:
        pre = httpx.options(f"{served.url}/studies", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == origin
        r = _get(f"{served.url}/studies?limit=1",
                 headers={"Origin": origin, "Authorization": "Bearer t"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert "warning" in r.headers["access-control-expose-headers"].lower()
        other = _get(f"{served.url}/studies", headers={"Origin": "http://evil.example",
                                                      "Authorization": "Bearer t"})
        assert "access-control-allow-origin" not in other.headers
    plain = _get(f"{serve_server.url}/studies", headers={"Origin": origin})
    assert "access-control-allow-origin" not in plain.headers


def test_server_timing_reports_the_search_time(serve_server):
    r = _get(f"{serve_server.url}/studies?PatientID=4MR1")
    name, _, dur = r.headers["server-timing"].partition(";dur=")
    assert name == "qido" and 0 < float(dur) < 10_000


def test_concurrent_searches_while_files_come_and_go(serve_archive_copy, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    root = serve_archive_copy
    aside = tmp_path / "MR_small.dcbs"
    with start_serve_server(root, refresh_interval=0.0) as served:
        stop = time.monotonic() + 3

        def churn():
            n = 0
            while time.monotonic() < stop:
                shutil.move(root / "MR_small.dcbs", aside)
                time.sleep(0.01)
                shutil.move(aside, root / "MR_small.dcbs")
                time.sleep(0.01)
                n += 1
            return n

        def client(_):
            seen = set()
            with httpx.Client(timeout=10) as c:
                while time.monotonic() < stop:
                    r = c.get(f"{served.url}/studies")
                    assert r.status_code == 200
                    seen.add(len(r.json()))
                    r = c.get(f"{served.url}/studies/{MR_STUDY}/series")
                    assert r.status_code == 200 and len(r.json()) in (0, 1)
            return seen

        with ThreadPoolExecutor(9) as pool:
            moved = pool.submit(churn)
            seen = set().union(*pool.map(client, range(8)))
        assert moved.result() > 0
        assert seen <= {2, 3}


def test_pixel_data_is_never_gzipped(serve_server):
    ix = serve_server.index
    (ref,) = ix.instances(MR_STUDY)
    base = f"{serve_server.url}/studies/{MR_STUDY}/series/{ref.series_uid}/instances/{ref.sop_uid}"
    with httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=10) as c:
        frame = c.get(f"{base}/frames/1", headers={"Accept": "application/octet-stream"})
        assert frame.status_code == 200 and len(frame.content) >= 64 * 64 * 2
        whole = c.get(base, headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert whole.status_code == 200
        meta = c.get(f"{base}/metadata")
        assert meta.status_code == 200
    assert "content-encoding" not in frame.headers and "content-encoding" not in whole.headers
    assert meta.headers.get("content-encoding") == "gzip"          # JSON: yes


def test_results_are_capped_and_paged(serve_archive):
    with start_serve_server(serve_archive, max_results=2) as served:
        r = _get(f"{served.url}/instances")
        assert len(r.json()) == 2 and "additional results" in r.headers["warning"]
        assert len(_get(f"{served.url}/instances?limit=5").json()) == 2
        client = DICOMwebClient(served.url)
        assert len(client.search_for_instances(get_remaining=True)) == 12


@pytest.mark.parametrize("accept,status", [
    ("application/dicom+json", 200), ("application/json", 200), ("*/*", 200), ("", 200),
    ("multipart/related; type=\"application/dicom+xml\", application/json;q=0.5", 200),
    ("multipart/related; type=\"application/dicom+xml\"", 406),
    ("application/dicom+json;q=0", 406), ("text/html", 406),
])
def test_searches_negotiate_json(serve_server, accept, status):
    r = _get(f"{serve_server.url}/studies", headers={"Accept": accept} if accept else {})
    assert r.status_code == status
