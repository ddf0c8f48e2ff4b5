"""DIMSE (dicube.server.dimse) proven with dcmtk's echoscu, findscu, getscu, movescu and
storescp, and with pynetdicom peers for what dcmtk 3.6.7 cannot ask for (HTJ2K, which its
DIMSE layer does not know, and a C-GET proposing nothing but JPEG Baseline: getscu always
adds the uncompressed syntaxes)."""
from __future__ import annotations

import copy
import io
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from preview_servers import stop_process

SAMPLE = "ct/sample_10.dcbs"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
HTJ2K = "1.2.840.10008.1.2.4.201"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
#: File meta elements the receiver writes itself (dcmtk's implementation UID and version,
#: storescp's Source Application Entity Title) and the group length that follows from them.
RECEIVER_META = {"FileMetaInformationGroupLength", "ImplementationClassUID",
                 "ImplementationVersionName", "SourceApplicationEntityTitle"}


def dcmtk(name: str) -> str:
    """A dcmtk program (not pynetdicom's same-named console scripts, which a Python
    environment may put first on PATH); fails under CI when missing, else skips."""
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        exe = os.path.join(folder, name)
        if os.access(exe, os.X_OK):
            out = subprocess.run([exe, "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return exe
    msg = f"dcmtk's {name} not found (Debian package dcmtk)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          errors="replace", timeout=timeout)


STORESCP_CFG = """\
[[TransferSyntaxes]]
[JpegOnly]
TransferSyntax1 = JPEGBaseline
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[JpegCtx]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = CTImageStorage\\JpegOnly
PresentationContext3 = MRImageStorage\\JpegOnly
[[Profiles]]
[JpegOnly]
PresentationContexts = JpegCtx
"""


class StoreSCP:
    """dcmtk storescp on a loopback port, writing into a folder."""

    def __init__(self, folder: Path, port: int, ae: str, profile: str | None = None,
                 options: tuple = ()):
        self.folder, self.port, self.ae = folder, port, ae
        folder.mkdir(parents=True, exist_ok=True)
        args = [dcmtk("storescp"), "-od", folder, "-aet", ae, "+B", *options]
        if profile:
            cfg = folder.parent / f"{ae}.cfg"
            cfg.write_text(STORESCP_CFG)
            args += ["-xf", cfg, profile]
        self.log = open(folder.parent / f"{ae}.log", "wb")
        self.proc = subprocess.Popen([str(a) for a in args] + [str(port)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:  # ready when it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("storescp did not start: "
                                + (folder.parent / f"{ae}.log").read_text(errors="replace"))
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.log.close()


@pytest.fixture(scope="module")
def ports():
    return {"STORESCP": _free_port(), "IMPLICIT": _free_port(), "JPEGONLY": _free_port(),
            "PYSCP": _free_port()}


@pytest.fixture(scope="module")
def dimse(serve_archive, ports):
    """dicube's DIMSE server on the shared archive (free port), with three move destinations."""
    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    index = ArchiveIndex(serve_archive)
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0,
                         {ae: ("127.0.0.1", p) for ae, p in ports.items()})
    try:
        yield server
    finally:
        server.shutdown()
        index.close()


@pytest.fixture(scope="module")
def expected(serve_archive, tmp_path_factory) -> dict:
    """SOP Instance UID -> what save_to_dicom_folder writes for that slice of sample_10."""
    import dicube

    folder = tmp_path_factory.mktemp("expected")
    dicube.save_to_dicom_folder(dicube.load(serve_archive / SAMPLE), folder / "out")
    out = {}
    for p in (folder / "out").iterdir():
        if p.suffix != ".json" and p.is_file() and not p.name.startswith("."):
            ds = pydicom.dcmread(p)
            out[str(ds.SOPInstanceUID)] = ds
    assert len(out) == 10
    return out


@pytest.fixture(scope="module")
def study_uid(expected) -> str:
    return str(next(iter(expected.values())).StudyInstanceUID)


def _peer(port) -> list:
    return ["127.0.0.1", port, "-aec", "DICUBE", "-aet", "DCMTKSCU"]


def _drop_group_lengths(ds: pydicom.Dataset) -> pydicom.Dataset:
    for tag in [t for t in ds.keys() if t.element == 0]:
        del ds[tag]
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _drop_group_lengths(item)
    return ds


def assert_same_instances(folder: Path, expected: dict, syntax: str = EXPLICIT, *,
                          group_lengths: bool = True) -> None:
    """Every received file equals what save_to_dicom_folder wrote for its slice, element
    for element (file meta except RECEIVER_META), and its pixels decode identically.
    Encapsulated pixel data (HTJ2K) is compared by its decoded pixels only.
    ``group_lengths=False``: leave out group length elements (gggg,0000), which a receiver
    that re-encodes what it stores (Orthanc, dcmtk without +B) recomputes."""
    files = [p for p in folder.iterdir() if p.is_file()]
    got = {}
    for p in files:
        ds = pydicom.dcmread(p)
        got[str(ds.SOPInstanceUID)] = ds
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for uid, ds in got.items():
        exp = expected[uid]
        assert ds.file_meta.TransferSyntaxUID == syntax
        for elem in exp.file_meta:
            if elem.keyword not in RECEIVER_META and elem.keyword != "TransferSyntaxUID":
                assert ds.file_meta[elem.tag] == elem, (uid, elem)
        assert set(ds.file_meta.keys()) - set(exp.file_meta.keys()) <= {
            pydicom.datadict.tag_for_keyword(k) for k in RECEIVER_META}
        assert list(ds.keys()) == list(exp.keys()), uid
        if syntax == IMPLICIT:
            _same_implicit(ds, pydicom.dcmread(exp.filename), uid)
        else:
            if not group_lengths:
                ds, exp = _drop_group_lengths(ds), _drop_group_lengths(copy.deepcopy(exp))
            for elem in exp:
                if elem.tag != 0x7FE00010 or syntax in (EXPLICIT, IMPLICIT):
                    assert ds[elem.tag] == elem, (uid, elem)
        assert np.array_equal(ds.pixel_array, exp.pixel_array), uid


def _same_implicit(got: pydicom.Dataset, exp: pydicom.Dataset, where: str) -> None:
    """An Implicit VR data set equals an Explicit VR one: public elements by value, private
    ones (whose VR the reader cannot know) by their value bytes, sequences item by item."""
    assert list(got.keys()) == list(exp.keys()), where
    for tag in exp.keys():
        raw = exp.get_item(tag)
        if raw.VR == "SQ":
            items = got[tag].value
            if isinstance(items, bytes):  # a private sequence of defined length: parse it
                from pydicom.filebase import DicomBytesIO
                from pydicom.filereader import read_sequence

                items = read_sequence(DicomBytesIO(items), True, True, len(items), "iso8859")
            assert len(items) == len(exp[tag].value), (where, tag)
            for k, (g, e) in enumerate(zip(items, exp[tag].value)):
                _same_implicit(g, e, f"{where} {tag}[{k}]")
        elif tag.is_private:
            assert got.get_item(tag).value == raw.value, (where, tag)
        else:
            assert got[tag].value == exp[tag].value, (where, tag)


# ------------------------------------------------------------------ C-ECHO, C-FIND
def test_echoscu(dimse):
    res = _run([dcmtk("echoscu"), "-v", *_peer(dimse.port)])
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Received Echo Response (Success)" in res.stdout + res.stderr


def _findscu(dimse, tmp_path, model: str, keys: list) -> tuple[list, str]:
    out = tmp_path / f"find{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    args = [dcmtk("findscu"), model, "-v", "-X", "-od", out, *_peer(dimse.port)]
    for k in keys:
        args += ["-k", k]
    res = _run(args)
    text = res.stdout + res.stderr
    found = [pydicom.dcmread(p) for p in sorted(out.iterdir())]
    return found, text


def test_findscu_study_level_study_and_patient_root(dimse, tmp_path, study_uid):
    keys = ["QueryRetrieveLevel=STUDY", "PatientID=444 1", "StudyInstanceUID", "StudyDate",
            "PatientName", "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries"]
    for model in ("-S", "-P"):
        found, text = _findscu(dimse, tmp_path, model, keys)
        assert len(found) == 1, text
        ds = found[0]
        assert ds.StudyInstanceUID == study_uid
        assert ds.StudyDate == "20230720" and ds.PatientID == "444 1"
        assert int(ds.NumberOfStudyRelatedInstances) == 10
        assert int(ds.NumberOfStudyRelatedSeries) == 1
        # the requested keys only, plus the level
        assert {e.keyword for e in ds} == {"QueryRetrieveLevel", "PatientID", "StudyInstanceUID",
                                          "StudyDate", "PatientName",
                                          "NumberOfStudyRelatedInstances",
                                          "NumberOfStudyRelatedSeries"}
    # universal matching: every study of the archive; a date range selects two of three
    found, _ = _findscu(dimse, tmp_path, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    assert len(found) == 3
    found, _ = _findscu(dimse, tmp_path, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                                "StudyDate=20040101-20041231"])
    assert len(found) == 2 and study_uid not in {f.StudyInstanceUID for f in found}


def test_findscu_series_and_image_level(dimse, tmp_path, study_uid, expected):
    for model, extra in (("-S", []), ("-P", ["PatientID=444 1"])):
        found, text = _findscu(dimse, tmp_path, model, [
            "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study_uid}", *extra,
            "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances"])
        assert len(found) == 1, text
        assert found[0].Modality == "CT"
        assert int(found[0].NumberOfSeriesRelatedInstances) == 10
        assert found[0].SeriesInstanceUID == next(iter(expected.values())).SeriesInstanceUID
    found, text = _findscu(dimse, tmp_path, "-S", [
        "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study_uid}", "SeriesInstanceUID",
        "SOPInstanceUID", "InstanceNumber"])
    assert {f.SOPInstanceUID for f in found} == set(expected), text
    found, text = _findscu(dimse, tmp_path, "-P", ["QueryRetrieveLevel=PATIENT", "PatientID",
                                                   "PatientName"])
    assert {f.PatientID for f in found} == {"444 1", "1CT1", "4MR1"}, text


def test_findscu_malformed_identifiers_fail_with_a_comment(dimse, tmp_path):
    for model, keys, why in (
            ("-S", ["QueryRetrieveLevel=FOO", "StudyInstanceUID"], "Level FOO"),
            ("-S", ["QueryRetrieveLevel=PATIENT", "PatientID"], "no PATIENT level"),
            ("-S", ["QueryRetrieveLevel=STUDY", "StudyDate=2023-2024-01"], "malformed")):
        found, text = _findscu(dimse, tmp_path, model, keys)
        assert found == []
        assert "Error: DataSetDoesNotMatchSOPClass" in text, text  # 0xA900
        res = _run([dcmtk("findscu"), model, "-d", *_peer(dimse.port),
                    *sum((["-k", k] for k in keys), [])])
        assert why in res.stdout + res.stderr, res.stdout + res.stderr


# ------------------------------------------------------------------ C-GET, C-MOVE
def test_getscu_retrieves_every_instance(dimse, tmp_path, study_uid, expected):
    # (getscu's +xi still proposes Explicit VR LE in dcmtk 3.6.7: Implicit is tested with
    # storescp +xi below.) +B: files as received (else dcmtk recomputes group lengths).
    for model, level, extra in (
            ("-S", "STUDY", []),
            ("-P", "SERIES", ["PatientID=444 1", "SeriesInstanceUID="
                              + next(iter(expected.values())).SeriesInstanceUID])):
        out = tmp_path / f"get-{level}"
        out.mkdir()
        res = _run([dcmtk("getscu"), model, "-v", "+B", "-od", out, *_peer(dimse.port),
                    "-k", f"QueryRetrieveLevel={level}", "-k", f"StudyInstanceUID={study_uid}",
                    *sum((["-k", k] for k in extra), [])])
        text = res.stdout + res.stderr
        assert res.returncode == 0, text
        assert "Number of Completed Suboperations : 10" in text, text
        assert_same_instances(out, expected)


@pytest.mark.parametrize("ae, options, syntax", [("STORESCP", (), EXPLICIT),
                                                 ("IMPLICIT", ("+xi",), IMPLICIT)])
def test_movescu_into_storescp(dimse, tmp_path, ports, study_uid, expected, ae, options, syntax):
    scp = StoreSCP(tmp_path / "received", ports[ae], ae, options=options)
    try:
        res = _run([dcmtk("movescu"), "-S", "-v", "-aem", ae, *_peer(dimse.port),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"])
        text = res.stdout + res.stderr
        assert res.returncode == 0, text
        assert "Received Final Move Response (Success)" in text, text
    finally:
        scp.stop()
    assert_same_instances(scp.folder, expected, syntax)


def test_move_to_unknown_destination_and_jpeg_only_peer_are_refused(dimse, tmp_path, ports,
                                                                   study_uid):
    base = [dcmtk("movescu"), "-S", "-d", *_peer(dimse.port), "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={study_uid}"]
    res = _run(base + ["-aem", "NOSUCHAE"])
    assert "MoveDestinationUnknown" in res.stdout + res.stderr
    scp = StoreSCP(tmp_path / "jpeg", ports["JPEGONLY"], "JPEGONLY", profile="JpegOnly")
    try:
        res = _run(base + ["-aem", "JPEGONLY"])
    finally:
        scp.stop()
    text = res.stdout + res.stderr
    assert "OutOfResourcesSubOperations" in text or "0xa702" in text.lower(), text
    assert "no acceptable transfer syntax" in text, text  # the error comment
    assert list(scp.folder.iterdir()) == []


# ------------------------------------------------------------------ pynetdicom peers
def test_htj2k_peer_gets_the_stored_codestream(dimse, ports, serve_archive, study_uid):
    """A C-MOVE destination accepting HTJ2K only receives each data set exactly as the
    streaming reader writes it (the stored codestream, not re-encoded)."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelMove

    from dicube.dicom import DcbStreamingReader

    received = {}

    def on_store(event):
        received[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax), bytes(event.request.DataSet.getvalue()))
        return 0x0000

    scp_ae = AE("PYSCP")
    scp_ae.add_supported_context(CTImageStorage, [HTJ2K])
    scp = scp_ae.start_server(("127.0.0.1", ports["PYSCP"]), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        ae = AE("PYSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", dimse.port, ae_title="DICUBE")
        assert assoc.is_established
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        statuses = [s.Status for s, _ in assoc.send_c_move(
            ident, "PYSCP", StudyRootQueryRetrieveInformationModelMove)]
        assoc.release()
    finally:
        scp.shutdown()
    assert statuses[-1] == 0x0000 and len(received) == 10
    with DcbStreamingReader(serve_archive / SAMPLE) as stream:
        for i in range(len(stream)):
            data = stream.get_dicom_for_frame(i)
            ds = pydicom.dcmread(io.BytesIO(data))
            syntax, body = received[str(ds.SOPInstanceUID)]
            assert syntax == HTJ2K
            assert data.endswith(body) and len(data) - len(body) < 400


def test_get_proposing_only_jpeg_baseline_is_refused(dimse, study_uid, caplog):
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    ae = AE("PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, [JPEG_BASELINE])
    stored = []
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="DICUBE",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, lambda e: stored.append(e) or 0x0000)])
    assert assoc.is_established
    ident = pydicom.Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = study_uid
    with caplog.at_level("WARNING", logger="dicube.server.dimse"):
        answers = [s for s, _ in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    final = answers[-1]
    assert final.Status == 0xA702
    assert "no acceptable transfer syntax" in final.ErrorComment
    assert final.NumberOfFailedSuboperations == 10 and stored == []
    assert "accepted no transfer syntax we produce for CT Image Storage" in caplog.text


def test_a_corrupt_file_fails_its_study_only(serve_archive_copy, tmp_path, caplog):
    from pydicom.data import get_testdata_file
    from test_serve_index import _corrupt_section

    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    ct_study = pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    mr_study = pydicom.dcmread(get_testdata_file("MR_small.dcm")).StudyInstanceUID
    _corrupt_section(serve_archive_copy / "CT_small.dcbs")
    with caplog.at_level("ERROR"):
        index = ArchiveIndex(serve_archive_copy)
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0)
    try:
        def get(study):
            out = tmp_path / study
            out.mkdir()
            res = _run([dcmtk("getscu"), "-S", "-d", "-od", out, *_peer(server.port),
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"])
            return res.stdout + res.stderr, list(out.iterdir())

        text, files = get(ct_study)
        assert files == [] and "0xc001" in text.lower(), text
        assert "study has unreadable files: CT_small.dcbs" in text, text
        text, files = get(mr_study)
        assert len(files) == 1 and "Number of Completed Suboperations : 1" in text, text
        res = _run([dcmtk("findscu"), "-S", "-d", *_peer(server.port), "-k",
                    "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={ct_study}"])
        assert "study has unreadable files" in res.stdout + res.stderr
    finally:
        server.shutdown()
        index.close()
    assert "CT_small.dcbs" in caplog.text


def test_concurrent_getscu_clients(dimse, tmp_path, study_uid, expected):
    """Four getscu processes at once: each gets every instance, unchanged."""
    procs = []
    for k in range(4):
        out = tmp_path / f"get{k}"
        out.mkdir()
        procs.append((out, subprocess.Popen(
            [dcmtk("getscu"), "-S", "-v", "+B", "-od", str(out), *map(str, _peer(dimse.port)),
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for out, proc in procs:
        text, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Number of Completed Suboperations : 10" in text, text
        assert_same_instances(out, expected)


def test_a_file_broken_after_indexing_fails_the_retrieve_with_a_reason(serve_archive_copy,
                                                                      tmp_path):
    from pydicom.data import get_testdata_file

    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    ct_study = pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    index = ArchiveIndex(serve_archive_copy)
    path = serve_archive_copy / "CT_small.dcbs"
    path.write_bytes(path.read_bytes()[:100])  # after indexing, before any retrieve
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0)
    try:
        res = _run([dcmtk("getscu"), "-S", "-d", "-od", tmp_path, *_peer(server.port),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ct_study}"])
    finally:
        server.shutdown()
        index.close()
    text = res.stdout + res.stderr
    assert "0xc001" in text.lower() and "unable to process" in text, text
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_wado_and_dimse_share_decoded_frames(serve_archive_copy, tmp_path, study_uid, expected,
                                             monkeypatch):
    """A series decoded for a WADO-RS request is not decoded again for a C-GET of it in
    the same server (one PixelStore per archive), and getscu still gets every instance."""
    import httpx
    from dicube.dicom.streaming import DcbStreamingReader
    from dicube.server.dimse import start_dimse
    from serve_fixtures import start_serve_server

    decodes: list = []
    real = DcbStreamingReader.get_pixel_data
    monkeypatch.setattr(DcbStreamingReader, "get_pixel_data",
                        lambda self, *a, **k: decodes.append(a) or real(self, *a, **k))
    with start_serve_server(serve_archive_copy) as srv:
        r = httpx.get(f"{srv.url}/studies/{study_uid}", timeout=60,
                      headers={"Accept": f'multipart/related; type="application/dicom"; '
                                         f'transfer-syntax={EXPLICIT}'})
        assert r.status_code == 200 and len(decodes) == 10
        dimse = start_dimse(srv.index, "DICUBE", "127.0.0.1", 0)
        try:
            out = tmp_path / "get"
            out.mkdir()
            res = _run([dcmtk("getscu"), "-S", "+B", "-od", out, *_peer(dimse.port),
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"])
            assert res.returncode == 0, res.stdout + res.stderr
        finally:
            dimse.shutdown()
    assert len(decodes) == 10
    assert_same_instances(out, expected)
