"""DcbStreamingReader: every frame of the shared CT series as a DICOM instance, checked
against the source files byte for byte and element for element, decoded by independent
decoders (pylibjpeg-openjpeg through pydicom, GDCM) and accepted by dcmtk and dciodvfy."""
from __future__ import annotations

import random

import numpy as np
import pytest
from helpers_dicom import dataset_differences
from streaming_cases import (
    BUILD_HTJ2K_SYNTAX,
    EXPLICIT_LE,
    body,
    dciodvfy_errors,
    gdcm_pixels,
    make_dcbs,
    read,
    require_tool,
    run,
    sources_by_uid,
    split_encapsulated,
)

from dicube.codecs.jph import read_header
from dicube.dicom.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicube.dicom import DcbStreamingReader

PIXEL_OB_UNDEFINED = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("stream") / "sample_10.dcbs")


@pytest.fixture(scope="module")
def sources_10(sample_10):
    return sources_by_uid(sample_10)


@pytest.fixture(scope="module")
def emitted_10(dcbs_10, tmp_path_factory):
    """frame -> (compressed bytes, uncompressed bytes, codestream), files written to a folder."""
    from dicube.storage.reader import DcbsReader

    folder = tmp_path_factory.mktemp("emitted")
    out = {}
    with DcbStreamingReader(dcbs_10) as stream, DcbsReader(dcbs_10) as raw:
        for i in range(len(stream)):
            c = stream.get_dicom_for_frame(i)
            u = stream.get_dicom_for_frame(i, force_uncompressed=True)
            (folder / f"c{i:03d}.dcm").write_bytes(c)
            (folder / f"u{i:03d}.dcm").write_bytes(u)
            out[i] = (c, u, raw.codestream(i))
    return folder, out


def _check_file_meta(ds, src, ts):
    fm, sfm = ds.file_meta, src.file_meta
    assert fm.TransferSyntaxUID == ts
    assert fm.MediaStorageSOPClassUID == sfm.MediaStorageSOPClassUID
    assert fm.MediaStorageSOPInstanceUID == sfm.MediaStorageSOPInstanceUID
    assert fm.FileMetaInformationVersion == b"\x00\x01"
    assert fm.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert fm.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME


def _check_frame(c: bytes, u: bytes, codestream: bytes, src_bytes: bytes, src, tmp_path) -> None:
    stored = src.pixel_array
    # --- compressed: HTJ2K, data set identical to the source up to the pixel data
    ds = read(c, plugin="pylibjpeg")
    ts = read_header(codestream).transfer_syntax
    assert ts == BUILD_HTJ2K_SYNTAX
    _check_file_meta(ds, src, ts)
    assert dataset_differences(src, ds) == []
    src_body = body(src_bytes)
    n = len(src_body) - 12 - len(src.PixelData)  # the source's pixel data element is last
    assert body(c)[:n] == src_body[:n]
    assert body(c)[n:n + 12] == PIXEL_OB_UNDEFINED
    bot, fragments = split_encapsulated(body(c)[n + 12:])
    assert bot in (b"", b"\0\0\0\0")
    assert len(fragments) == 1 and len(fragments[0]) % 2 == 0
    assert fragments[0][:len(codestream)] == codestream  # as stored, not re-encoded
    assert fragments[0][len(codestream):] in (b"", b"\0")
    assert np.array_equal(ds.pixel_array, stored)  # pylibjpeg-openjpeg
    path = tmp_path / "frame.dcm"
    path.write_bytes(c)
    assert np.array_equal(gdcm_pixels(path), stored)
    # --- uncompressed: the whole data set is the source's, byte for byte
    du = read(u)
    _check_file_meta(du, src, EXPLICIT_LE)
    assert body(u) == src_body
    assert dataset_differences(src, du) == []
    assert np.array_equal(du.pixel_array, stored)


def test_every_frame_equals_its_source(emitted_10, sources_10, tmp_path):
    _, out = emitted_10
    seen = set()
    for i, (c, u, codestream) in out.items():
        uid = str(read(c).SOPInstanceUID)
        seen.add(uid)
        src_bytes, src = sources_10[uid]
        _check_frame(c, u, codestream, src_bytes, src, tmp_path)
    assert seen == set(sources_10)  # one instance per source file


def test_frames_follow_meta_order(dcbs_10):
    with DcbStreamingReader(dcbs_10) as stream:
        for i in range(len(stream)):
            ds = stream.get_dataset(i)
            assert ds.SOPInstanceUID == stream.meta.index(i).SOPInstanceUID
            assert "PixelData" not in ds


def test_dataset_matches_emitted_bytes(dcbs_10):
    with DcbStreamingReader(dcbs_10) as stream:
        for force in (False, True):
            ds = stream.get_frame_dataset(4, force_uncompressed=force)
            full = read(stream.get_dicom_for_frame(4, force_uncompressed=force))
            del full.PixelData
            assert dataset_differences(full, ds) == []
            assert dataset_differences(full.file_meta, ds.file_meta) == []


def test_sample_200_some_frames(sample_200, dcbs_samples, tmp_path):
    path = dcbs_samples["sample_200"]
    sources = {}
    with DcbStreamingReader(path) as stream:
        from dicube.storage.reader import DcbsReader

        frames = random.Random(5).sample(range(len(stream)), 4) + [0, len(stream) - 1]
        assert len(stream) == 200
        with DcbsReader(path) as raw:
            for i in frames:
                uid = str(stream.get_dataset(i).SOPInstanceUID)
                sources[uid] = i
                name = stream.meta.filenames[i]
                src_path = sample_200 / name
                src_bytes = src_path.read_bytes()
                src = read(src_bytes)
                assert src.SOPInstanceUID == uid
                _check_frame(stream.get_dicom_for_frame(i),
                             stream.get_dicom_for_frame(i, force_uncompressed=True),
                             raw.codestream(i), src_bytes, src, tmp_path)


def test_dcmtk_accepts_every_file(emitted_10):
    folder, out = emitted_10
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 2 * len(out)
    res = run([require_tool("dcmftest"), *files])
    lines = res.stdout.splitlines()
    assert len(lines) == len(files) and all(line.startswith("yes:") for line in lines), res.stdout
    for f in files:
        res = run([require_tool("dcmdump"), "-E", f])  # refuse damaged files
        assert res.returncode == 0 and not res.stderr.strip(), (f, res.stderr)
        assert "PixelData" in res.stdout


def test_dciodvfy_finds_nothing_new(emitted_10, sources_10):
    folder, out = emitted_10
    for i, (c, u, _) in out.items():
        uid = str(read(c).SOPInstanceUID)
        src_path = folder / f"src{i:03d}.dcm"
        src_path.write_bytes(sources_10[uid][0])
        baseline = dciodvfy_errors(src_path)
        new = dciodvfy_errors(folder / f"u{i:03d}.dcm") - baseline
        assert not new, f"frame {i}: dciodvfy errors not in the source: {sorted(new)}"


def test_no_random_parts(dcbs_10, emitted_10):
    _, out = emitted_10
    with DcbStreamingReader(dcbs_10) as again:
        for i in (0, 7):
            assert again.get_dicom_for_frame(i) == out[i][0]
            assert again.get_dicom_for_frame(i, True) == out[i][1]


def test_shared_element_encodings_change_nothing(dcbs_10, emitted_10):
    """A reader encodes the elements its frames share once; every frame, asked in any
    order and in several syntaxes, is byte for byte what a fresh reader makes of it."""
    _, out = emitted_10
    with DcbStreamingReader(dcbs_10) as warm:
        for i in (9, 3, 0, 5):
            assert warm.get_dicom_for_frame(i, True) == out[i][1]
            assert warm.get_dicom_for_frame(i) == out[i][0]
        assert len(warm._encoded) > 100
    for i in (3, 5):
        with DcbStreamingReader(dcbs_10) as fresh:
            assert fresh.get_dicom_for_frame(i) == out[i][0]


def test_12_bit_series(sample_10, tmp_path):
    """Bits Stored 12: the codestreams have 12-bit precision and the data set stays the source's."""
    import pydicom

    folder = tmp_path / "s12"
    folder.mkdir()
    for k, p in enumerate(sorted(sample_10.iterdir())[:3]):
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.save_as(folder / f"{k}.dcm")
    sources = sources_by_uid(folder)
    path = make_dcbs(folder, tmp_path / "s12.dcbs")
    from dicube.storage.reader import DcbsReader

    with DcbStreamingReader(path) as stream, DcbsReader(path) as raw:
        for i in range(len(stream)):
            codestream = raw.codestream(i)
            assert read_header(codestream).bits_stored == 12
            src_bytes, src = sources[str(stream.get_dataset(i).SOPInstanceUID)]
            _check_frame(stream.get_dicom_for_frame(i), stream.get_dicom_for_frame(i, True),
                         codestream, src_bytes, src, tmp_path)


@pytest.mark.parametrize("name", ["MR_small.dcm", "SC_rgb_small_odd.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm"])
def test_pydicom_examples(name, tmp_path):
    """Trailing padding after the pixel data (MR_small), odd-sized RGB, YBR_FULL_422."""
    import shutil

    from pydicom.data import get_testdata_file

    import dicube

    src_path = get_testdata_file(name)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(src_path, folder)
    src_bytes = open(src_path, "rb").read()
    src = read(src_bytes)
    path = make_dcbs(folder, tmp_path / "x.dcbs")
    with DcbStreamingReader(path) as stream:
        c, u = stream.get_dicom_for_frame(0), stream.get_dicom_for_frame(0, True)
        assert dataset_differences(src, stream.get_dataset(0, force_uncompressed=True)) == []
    assert body(u) == body(src_bytes)
    dc = read(c, plugin="pylibjpeg")
    diffs = dataset_differences(src, dc)
    if src.PhotometricInterpretation == "YBR_FULL_422":  # the codestream has full chroma
        assert diffs == ["(0028,0004) (CS): 'YBR_FULL_422' != 'YBR_FULL'"]
    else:
        assert diffs == []
    assert np.array_equal(dc.pixel_array, src.pixel_array)
    # the Part 10 writer shared with save_to_dicom_folder keeps the element order too
    out = dicube.save_to_dicom_folder(dicube.load(path), tmp_path / "export")
    assert body(open(out[0], "rb").read()) == body(src_bytes)
