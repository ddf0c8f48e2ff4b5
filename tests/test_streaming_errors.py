"""DcbStreamingReader: typed errors (index, closed reader, corrupt frame, unusable files)
and sharing one reader between threads."""
from __future__ import annotations

import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cli_helpers import flip_frame_byte
from streaming_cases import make_dcbs, read

import dicube
from dicube.dicom import DcbStreamingReader
from dicube.exceptions import (
    ClosedReaderError,
    CorruptFileError,
    DicomCubeError,
    FrameIndexError,
    InvalidCubeFileError,
    MetaDataError,
)


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("stream_err") / "sample_10.dcbs")


def test_exports():
    assert dicube.DcbStreamingReader is DcbStreamingReader


def test_bad_index(dcbs_10):
    with DcbStreamingReader(dcbs_10) as stream:
        n = len(stream)
        assert stream.frame_count == n == 10
        for bad in (n, -n - 1, 10**9):
            with pytest.raises(FrameIndexError, match="out of range") as exc:
                stream.get_dicom_for_frame(bad)
            assert isinstance(exc.value, IndexError) and isinstance(exc.value, DicomCubeError)
            assert exc.value.path == str(dcbs_10)
            with pytest.raises(IndexError):
                stream.get_dataset(bad)
        with pytest.raises(TypeError):
            stream.get_dicom_for_frame(1.5)
        assert stream.get_dicom_for_frame(-1) == stream.get_dicom_for_frame(n - 1)
        assert stream.get_dicom_for_frame(np.int64(2)) == stream.get_dicom_for_frame(2)


def test_closed_reader(dcbs_10):
    stream = DcbStreamingReader(dcbs_10)
    stream.get_dicom_for_frame(0)
    stream.close()
    stream.close()  # idempotent
    assert stream.closed
    for call in (lambda: stream.get_dicom_for_frame(0), lambda: stream.get_dataset(0),
                 lambda: stream.get_dicom_for_frame(1, force_uncompressed=True)):
        with pytest.raises(ClosedReaderError, match="closed"):
            call()
    with DcbStreamingReader(dcbs_10) as s2:
        pass
    with pytest.raises(ValueError):  # ClosedReaderError is also a ValueError
        s2.get_dicom_for_frame(0)


def test_corrupt_frame(dcbs_10, tmp_path):
    bad = tmp_path / "bad.dcbs"
    shutil.copy(dcbs_10, bad)
    flip_frame_byte(bad, 3, 0x10)
    with DcbStreamingReader(bad) as stream:
        for force in (False, True):
            with pytest.raises(CorruptFileError, match="frame 3") as exc:
                stream.get_dicom_for_frame(3, force_uncompressed=force)
            assert exc.value.path == str(bad)
        good = read(stream.get_dicom_for_frame(2, force_uncompressed=True))  # others still serve
        assert good.pixel_array.shape == (512, 512)


def test_unusable_files(tmp_path):
    not_dcbs = tmp_path / "x.dcbs"
    not_dcbs.write_bytes(b"hello" * 100)
    with pytest.raises(InvalidCubeFileError):
        DcbStreamingReader(not_dcbs)
    with pytest.raises(InvalidCubeFileError):
        DcbStreamingReader(tmp_path / "missing.dcbs")
    no_meta = tmp_path / "plain.dcbs"
    img = dicube.DicomCubeImage(np.zeros((2, 8, 8), np.uint16), dicube.PixelDataHeader())
    dicube.save(img, no_meta)
    with pytest.raises(MetaDataError, match="no DICOM metadata"):
        DcbStreamingReader(no_meta)


def test_threads_share_one_reader(dcbs_10):
    with DcbStreamingReader(dcbs_10) as serial:
        expected = {(i, f): serial.get_dicom_for_frame(i, f)
                    for i in range(len(serial)) for f in (False, True)}
    jobs = list(expected) * 3
    random.Random(1).shuffle(jobs)
    with DcbStreamingReader(dcbs_10) as shared:  # cold caches: headers built concurrently
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda job: (job, shared.get_dicom_for_frame(*job)), jobs))
    for job, data in got:
        assert data == expected[job], job
