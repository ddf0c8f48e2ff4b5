"""DcbStreamingReader on a file written by dicube 0.3.0: its frames hold rescaled values,
so the emitted instances carry adjusted pixel/rescale attributes and show the source's
real values."""
from __future__ import annotations

import numpy as np
import pytest
from helpers_dicom import dataset_differences
from streaming_cases import (
    dciodvfy_errors,
    gdcm_pixels,
    read,
    require_tool,
    run,
    sources_by_uid,
)

from dicube.codecs.jph import HTJ2K_LOSSLESS
from dicube.dicom import DcbStreamingReader

#: Elements the adjustment may change: pixel representation and rescale.
ADJUSTED = {"(0028,0100)", "(0028,0101)", "(0028,0102)", "(0028,0103)", "(0028,1052)",
            "(0028,1053)"}


def _real(ds, pixels=None) -> np.ndarray:
    arr = ds.pixel_array if pixels is None else pixels
    return arr * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def test_legacy_frames_show_the_source_real_values(legacy_dcbs, sample_10, tmp_path):
    sources = sources_by_uid(sample_10)
    with pytest.warns(UserWarning, match="version-1"):
        stream = DcbStreamingReader(legacy_dcbs)
    with stream:
        assert stream.version == 1 and len(stream) == len(sources)
        files = []
        for i in range(len(stream)):
            c = stream.get_dicom_for_frame(i)
            u = stream.get_dicom_for_frame(i, force_uncompressed=True)
            dc, du = read(c, plugin="pylibjpeg"), read(u)
            src_bytes, src = sources[str(dc.SOPInstanceUID)]
            # Served as stored: dicube 0.3.0's codestreams carry no TLM, whatever this build has.
            assert dc.file_meta.TransferSyntaxUID == HTJ2K_LOSSLESS
            assert dc.file_meta.MediaStorageSOPInstanceUID == src.SOPInstanceUID
            truth = _real(src)
            assert np.array_equal(_real(dc), truth)
            assert np.array_equal(_real(du), truth)
            path = tmp_path / f"c{i}.dcm"
            path.write_bytes(c)
            assert np.array_equal(_real(dc, gdcm_pixels(path)), truth)
            for ds in (dc, du):
                diffs = dataset_differences(src, ds)
                assert {d.split(" ")[0] for d in diffs} <= ADJUSTED, diffs
            (tmp_path / f"u{i}.dcm").write_bytes(u)
            (tmp_path / f"s{i}.dcm").write_bytes(src_bytes)
            files += [path, tmp_path / f"u{i}.dcm"]
    res = run([require_tool("dcmftest"), *files])
    assert all(line.startswith("yes:") for line in res.stdout.splitlines()), res.stdout
    for i in (0, 5):
        new = dciodvfy_errors(tmp_path / f"u{i}.dcm") - dciodvfy_errors(tmp_path / f"s{i}.dcm")
        assert not new, sorted(new)


def test_legacy_empty_frame_streams_zeros(legacy_dcbs, tmp_path):
    """A version-1 frame of length 0 reads as zeros; it streams as zeros in both syntaxes."""
    import struct
    import warnings

    data = bytearray(legacy_dcbs.read_bytes())
    fields = struct.unpack_from("<8sI13Q", data, 0)
    lengths_at = fields[2 + 10]
    struct.pack_into("<Q", data, lengths_at + 8 * 2, 0)  # frame 2 becomes empty
    path = tmp_path / "empty.dcbs"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = DcbStreamingReader(path)
    assert any("1 empty frame" in str(w.message) for w in caught)
    with stream:
        for force in (False, True):
            ds = read(stream.get_dicom_for_frame(2, force), plugin=None if force else "pylibjpeg")
            assert ds.pixel_array.shape == (512, 512) and not ds.pixel_array.any()
