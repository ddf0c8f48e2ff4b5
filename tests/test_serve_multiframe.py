"""Multi-frame source instances under ``dicube serve``.

dicube holds a multi-frame source file (pydicom's rtdose.dcm: RT Dose, 15 frames of
10x10) as N frames of one instance: the .dcbs has 15 frames and ONE metadata slice.
The index holds it as one instance with Number of Frames N; WADO-RS serves the instance
with all its frames, ``frames/{list}`` maps onto the file's frames (404 beyond N), and
C-GET sends the multi-frame instance (see docs/serving.md, Limits).
"""
from __future__ import annotations

import io
import os
import shutil

import httpx
import numpy as np
import pydicom
import pydicom.data
import pytest

from dicube.server import ArchiveIndex

NAME = "rtdose.dcm"
EXPLICIT = "1.2.840.10008.1.2.1"


def _source() -> str:
    return os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", NAME)


@pytest.fixture(scope="module")
def multiframe(tmp_path_factory, serve_archive):
    """(archive folder: the shared archive plus rtdose.dcbs, the source dataset)."""
    import dicube

    src = tmp_path_factory.mktemp("mf_src")
    shutil.copyfile(_source(), src / NAME)
    root = tmp_path_factory.mktemp("mf_archive")
    shutil.copytree(serve_archive, root, dirs_exist_ok=True)
    dicube.save(dicube.load_from_dicom_folder(src), root / "rtdose.dcbs")
    return root, pydicom.dcmread(src / NAME)


def test_dicube_keeps_a_multiframe_instance_as_frames_of_one_metadata_slice(multiframe):
    from dicube.storage.reader import DcbsReader
    from dicube.core.io import meta_from_reader

    root, ds = multiframe
    with DcbsReader(root / "rtdose.dcbs") as reader:
        assert reader.frame_count == int(ds.NumberOfFrames) == 15
        meta = meta_from_reader(reader)
        assert len(meta) == 1
        np.testing.assert_array_equal(reader.read_frames(list(range(15))), ds.pixel_array)
    ix = ArchiveIndex(root)
    assert not ix.study_errors(str(ds.StudyInstanceUID))
    assert not ix.errors() and ix.counts()["studies"] == 4  # the shared three and the RT Dose


def test_index_holds_one_instance_of_n_frames(multiframe):
    root, ds = multiframe
    ix = ArchiveIndex(root)
    assert not ix.errors()
    (rec,) = ix.find("IMAGE", {"SOPInstanceUID": str(ds.SOPInstanceUID)})
    assert rec["NumberOfFrames"] == 15
    assert len(ix.instances(str(ds.StudyInstanceUID))) == 1


def test_wado_serves_the_instance_and_its_frames(multiframe):
    from dicomweb_client.api import DICOMwebClient
    from serve_fixtures import start_serve_server

    root, ds = multiframe
    study, series, sop = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                          str(ds.SOPInstanceUID))
    with start_serve_server(root) as served:
        client = DICOMwebClient(served.url)
        frames = client.retrieve_instance_frames(study, series, sop, [1, 8, 15])
        assert frames == [ds.pixel_array[i].tobytes() for i in (0, 7, 14)]
        got = client.retrieve_instance(study, series, sop,
                                       media_types=(("application/dicom", EXPLICIT),))
        assert int(got.NumberOfFrames) == 15
        np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
        (meta,) = client.retrieve_instance_metadata(study, series, sop) and \
            [client.retrieve_instance_metadata(study, series, sop)]
        assert meta["00280008"]["Value"] == [15]
        base = f"{served.url}/studies/{study}/series/{series}/instances/{sop}"
        assert httpx.get(f"{base}/frames/16", timeout=10).status_code == 404
        assert httpx.get(f"{base}/frames/15/rendered", timeout=10).status_code == 200
        assert httpx.get(f"{base}/frames/16/rendered", timeout=10).status_code == 404
        for what in ("rendered", "thumbnail"):  # its first and middle frames
            r = httpx.get(f"{base}/{what}", timeout=10)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        bulk = httpx.get(f"{base}/bulkdata/7FE00010", timeout=10)  # every frame, one part each
        assert bulk.status_code == 200
        assert all(ds.pixel_array[i].tobytes() in bulk.content for i in range(15))
        assert bulk.content.count(b"Content-Type: application/octet-stream") == 15


HTJ2K = "1.2.840.10008.1.2.4.201"


def test_c_get_sends_the_multiframe_instance(multiframe):
    """A C-GET of the RT Dose study receives one instance of 15 frames, in HTJ2K (the
    stored codestreams, one fragment each) or Explicit VR LE, the pixels of the source."""
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import RTDoseStorage, StudyRootQueryRetrieveInformationModelGet

    from dicube.server.dimse import start_dimse

    root, ds = multiframe
    index = ArchiveIndex(root)
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0)
    try:
        for syntax in (HTJ2K, EXPLICIT):
            got = []

            def on_store(event):
                got.append(event.dataset)
                got[-1].file_meta = event.file_meta
                return 0x0000

            ae = AE("PYSCU")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            ae.add_requested_context(RTDoseStorage, [syntax])
            assoc = ae.associate("127.0.0.1", server.port, ae_title="DICUBE",
                                 ext_neg=[build_role(RTDoseStorage, scp_role=True)],
                                 evt_handlers=[(evt.EVT_C_STORE, on_store)])
            assert assoc.is_established
            ident = pydicom.Dataset()
            ident.QueryRetrieveLevel = "STUDY"
            ident.StudyInstanceUID = ds.StudyInstanceUID
            statuses = [s.Status for s, _ in assoc.send_c_get(
                ident, StudyRootQueryRetrieveInformationModelGet)]
            assoc.release()
            assert statuses[-1] == 0x0000
            (inst,) = got
            assert str(inst.file_meta.TransferSyntaxUID) == syntax
            assert int(inst.NumberOfFrames) == 15 and inst.SOPInstanceUID == ds.SOPInstanceUID
            np.testing.assert_array_equal(inst.pixel_array, ds.pixel_array)
    finally:
        server.shutdown()
        index.close()


def test_c_move_sends_the_multiframe_instance(multiframe):
    """C-MOVE to a pynetdicom Storage SCP accepting HTJ2K only: the data set received is
    the streaming reader's instance of 15 frames, byte for byte."""
    import socket

    from pynetdicom import AE, evt
    from pynetdicom.sop_class import RTDoseStorage, StudyRootQueryRetrieveInformationModelMove

    from dicube.dicom import DcbStreamingReader
    from dicube.server.dimse import start_dimse

    root, ds = multiframe
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    received = []
    scp_ae = AE("PYSCP")
    scp_ae.add_supported_context(RTDoseStorage, [HTJ2K])
    scp = scp_ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(
        evt.EVT_C_STORE,
        lambda e: received.append(bytes(e.request.DataSet.getvalue())) or 0x0000)])
    index = ArchiveIndex(root)
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0, {"PYSCP": ("127.0.0.1", port)})
    try:
        ae = AE("PYSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="DICUBE")
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID = ds.StudyInstanceUID
        ident.SeriesInstanceUID = ds.SeriesInstanceUID
        ident.SOPInstanceUID = ds.SOPInstanceUID
        statuses = [s.Status for s, _ in assoc.send_c_move(
            ident, "PYSCP", StudyRootQueryRetrieveInformationModelMove)]
        assoc.release()
    finally:
        server.shutdown()
        index.close()
        scp.shutdown()
    assert statuses[-1] == 0x0000
    (body,) = received
    with DcbStreamingReader(root / "rtdose.dcbs") as stream:
        data = stream.get_dicom_for_instance(0, transfer_syntax=HTJ2K)
    assert data.endswith(body) and len(data) - len(body) < 400


def test_a_colour_multiframe_instance_serves_its_htj2k_frames(tmp_path):
    """pydicom's SC_rgb_rle_2frame.dcm (2 RGB frames, RLE): the instance in HTJ2K holds one
    fragment per frame behind a Basic Offset Table; frames 1 and 2 are the stored
    codestreams, frame 3 is 404."""
    import dicube
    from serve_fixtures import start_serve_server

    name = "SC_rgb_rle_2frame.dcm"
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", name),
                    src / name)
    root = tmp_path / "archive"
    root.mkdir()
    dicube.save(dicube.load_from_dicom_folder(src), root / "sc.dcbs")
    ds = pydicom.dcmread(src / name)
    base = (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")
    with start_serve_server(root) as served:
        r = httpx.get(f"{served.url}{base}", timeout=10, headers={
            "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={HTJ2K}'})
        assert r.status_code == 200
        boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
        (part,) = [p for p in r.content.split(b"--" + boundary.encode()) if b"DICM" in p]
        body = part.split(b"\r\n\r\n", 1)[1][:-2]  # the part without its headers and CRLF
        got = pydicom.dcmread(io.BytesIO(body))
        assert str(got.file_meta.TransferSyntaxUID) == HTJ2K and int(got.NumberOfFrames) == 2
        from pydicom.encaps import parse_basic_offsets, generate_fragments

        raw = got.PixelData
        frags = list(generate_fragments(raw))
        assert len(frags) == 3 and parse_basic_offsets(raw) == [0, 8 + len(frags[1])]
        np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
        r = httpx.get(f"{served.url}{base}/frames/2", timeout=10,
                      headers={"Accept": 'multipart/related; type="image/jphc"'})
        assert r.status_code == 200 and frags[2].rstrip(b"\0")[:-2] in r.content
        assert httpx.get(f"{served.url}{base}/frames/3", timeout=10).status_code == 404
        assert httpx.get(f"{served.url}{base}/frames/2/rendered", timeout=10).status_code == 200
