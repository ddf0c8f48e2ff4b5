"""Multi-frame source instances under ``dicube serve``.

dicube holds a multi-frame source file (pydicom's rtdose.dcm: RT Dose, 15 frames of
10x10) as N frames of one instance: the .dcbs has 15 frames and ONE metadata slice.
Today the streaming reader and the index refuse such a file (one single-frame source
file per frame is assumed), so it is listed as unreadable and its study answers 500.
The xfail tests say what serving it as one instance with N frames must give; they
need DcbStreamingReader to build a multi-frame instance and wado.py to map
``frames/{list}`` onto the file's frames (see docs/serving.md, Limits).
"""
from __future__ import annotations

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
NEEDS = ("dicube serves one single-frame source file per frame: DcbStreamingReader refuses a "
         ".dcbs with one metadata slice for N frames (MetaDataError) and index._read_parts "
         "lists it as unreadable; wado.py assumes one frame per instance")


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
    # today: listed as unreadable, its study alone answers with an error
    ix = ArchiveIndex(root)
    (reason,) = ix.errors().values()
    assert "1 source file(s) for 15 frames" in reason
    assert ix.study_errors(str(ds.StudyInstanceUID))
    assert ix.counts()["studies"] == 3


@pytest.mark.xfail(strict=True, reason=NEEDS)
def test_index_holds_one_instance_of_n_frames(multiframe):
    root, ds = multiframe
    ix = ArchiveIndex(root)
    assert not ix.errors()
    (rec,) = ix.find("IMAGE", {"SOPInstanceUID": str(ds.SOPInstanceUID)})
    assert rec["NumberOfFrames"] == 15
    assert len(ix.instances(str(ds.StudyInstanceUID))) == 1


@pytest.mark.xfail(strict=True, reason=NEEDS)
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
