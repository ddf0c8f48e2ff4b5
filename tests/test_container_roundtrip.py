"""DICOM folder -> .dcbs -> DICOM folder: every element and every pixel as it was."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

import dicube
from dicube.dicom.export import MANIFEST
from dicube.dicom.photometric import pixel_difference
from dicube.exceptions import DicomCubeError
from helpers_dicom import dataset_differences

TS_DEPENDENT = {"(0002,0010)", "(0002,0000)"}


def _compare_folders(src: Path, out: Path, *, same_syntax: bool = True) -> list[str]:
    """Differences between each source file and the exported file of the same name."""
    problems = []
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        rel = f.relative_to(src)
        g = out / rel
        if not g.exists():
            problems.append(f"{rel}: not exported")
            continue
        a, b = pydicom.dcmread(f), pydicom.dcmread(g)
        diffs = dataset_differences(a, b)
        fm = dataset_differences(a.file_meta, b.file_meta, skip_pixels=False)
        if not same_syntax:
            fm = [d for d in fm if d[:11] not in TS_DEPENDENT]
        diffs += ["file meta " + d for d in fm]
        if a.preamble != b.preamble:
            diffs.append("preamble")
        try:
            pa = a.pixel_array
        except Exception:  # pydicom cannot decode the source itself (e.g. badVR.dcm)
            pa = None
        if pa is not None and not np.array_equal(pa, b.pixel_array):
            diffs.append("pixels differ")
        problems += [f"{rel}: {d}" for d in diffs]
    exported = {p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}
    problems += [f"{p}: extra file" for p in exported - {f.relative_to(src) for f in files}]
    return problems


def _roundtrip(src: Path, tmp: Path, **kw):
    img = dicube.load_from_dicom_folder(src)
    dicube.save(img, tmp / "s.dcbs")
    back = dicube.load(tmp / "s.dcbs")
    assert np.array_equal(back.raw_image, img.raw_image)
    assert back.dicom_meta == img.dicom_meta
    dicube.save_to_dicom_folder(back, tmp / "out", **kw)
    return img, back


def test_sample_10_exact(sample_10, tmp_path):
    img, _ = _roundtrip(sample_10, tmp_path)
    report = dicube.load_qc_report(tmp_path / "s.dcbs")
    assert report.to_dict() == dicube.check_series(img.dicom_meta).to_dict()
    assert _compare_folders(sample_10, tmp_path / "out") == []
    # explicit VR little endian in, explicit VR little endian out: byte for byte
    for f in sorted(sample_10.iterdir()):
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.1.99",
                                "1.2.840.10008.1.2", "1.2.840.10008.1.2.5"])
def test_sample_10_other_syntaxes(sample_10, tmp_path, ts):
    img = dicube.load_from_dicom_folder(sample_10)
    dicube.save_to_dicom_folder(img, tmp_path / "out", transfer_syntax=ts)
    for f in sorted(sample_10.iterdir())[:3]:
        b = pydicom.dcmread(tmp_path / "out" / f.name)
        assert b.file_meta.TransferSyntaxUID == ts
        assert np.array_equal(b.pixel_array, pydicom.dcmread(f).pixel_array)
    if ts != "1.2.840.10008.1.2":  # implicit VR cannot keep private VRs
        assert _compare_folders(sample_10, tmp_path / "out", same_syntax=False) == []


def test_sample_200_exact(sample_200, tmp_path):
    _roundtrip(sample_200, tmp_path)
    assert _compare_folders(sample_200, tmp_path / "out") == []


# ---------------------------------------------------------------- pydicom's test files
def _bundled() -> list[Path]:
    try:
        from pydicom.data import get_testdata_file

        folder = Path(get_testdata_file("CT_small.dcm")).parent
    except Exception:  # pragma: no cover
        return []
    return sorted(p for p in folder.glob("*.dcm"))


#: Lossy source syntaxes: the pixels are decoded values, exported uncompressed, so pydicom's
#: view of the source (decoded with its colour handling) may differ from the stored values.
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
         "1.2.840.10008.1.2.4.91"}


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.name)
def test_pydicom_bundled(path, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(path, src / path.name)
    try:
        img = dicube.load_from_dicom_folder(src)
    except DicomCubeError:
        pytest.skip("not a loadable image series")
    dicube.save(img, tmp_path / "s.dcbs")
    back = dicube.load(tmp_path / "s.dcbs")
    assert np.array_equal(back.raw_image, img.raw_image)
    assert back.dicom_meta == img.dicom_meta
    dicube.save_to_dicom_folder(back, tmp_path / "out")
    problems = _compare_folders(src, tmp_path / "out", same_syntax=False)
    if pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID in LOSSY:
        # decompressed colour is YBR_FULL, or RGB where the IOD needs it (docs/format.md);
        # the values are still those pydicom decodes, value for value
        problems = [p for p in problems if not p.endswith("pixels differ")
                    and "(0028,0004) (CS): 'YBR_FULL_422' != " not in p]
        assert pixel_difference(path, tmp_path / "out" / path.name) is None
    assert problems == []


# ---------------------------------------------------------------- synthetic cases
@pytest.fixture
def synthetic(sample_10, tmp_path):
    """sample_10 with a 50 kB private OB, a 3-item sequence, and a tag missing on some slices."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    src = tmp_path / "syn"
    src.mkdir()
    rng = np.random.default_rng(7)
    blob = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    for k, f in enumerate(sorted(sample_10.iterdir())):
        ds = pydicom.dcmread(f)
        block = ds.private_block(0x0099, "DICUBE TEST", create=True)
        block.add_new(0x01, "OB", blob)
        items = []
        for j in range(3):
            it = Dataset()
            it.CodeValue = f"C{j}"
            it.CodeMeaning = f"meaning {j} of slice {k}" if j == 1 else f"meaning {j}"
            items.append(it)
        ds.add_new(0x00400260, "SQ", Sequence(items))
        if k % 3 == 0:
            del ds[0x00080033]  # ContentTime absent on some slices
        ds.save_as(src / f.name, enforce_file_format=True)
    return src


def test_synthetic_cases(synthetic, tmp_path):
    img, back = _roundtrip(synthetic, tmp_path)
    meta = back.dicom_meta
    assert meta.presence(0x00080033).count(False) == 4
    assert _compare_folders(synthetic, tmp_path / "out") == []


# ---------------------------------------------------------------- folder safety
def test_refuses_foreign_files(sample_10, tmp_path):
    img = dicube.load_from_dicom_folder(sample_10)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DicomCubeError):
        dicube.save_to_dicom_folder(img, out)
    # overwrite=True writes beside foreign files but never touches them
    dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "I10").write_bytes(b"edited by a user")  # no longer ours
    with pytest.raises(DicomCubeError):
        dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert (out / "I10").read_bytes() == b"edited by a user"


def test_overwrite_replaces_only_own_files(sample_10, tmp_path):
    img = dicube.load_from_dicom_folder(sample_10)
    out = tmp_path / "out"
    dicube.save_to_dicom_folder(img, out)
    with pytest.raises(DicomCubeError):
        dicube.save_to_dicom_folder(img, out)
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    sub = dicube.load(_saved(img, tmp_path), frames=slice(0, 5))
    sub.dicom_meta.filenames = [None] * 5  # different names: the old files become stale
    dicube.save_to_dicom_folder(sub, out, overwrite=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([MANIFEST] + [f"{i:05d}.dcm" for i in range(1, 6)])
    assert set(first) - set(names)  # the earlier export's own files were removed


def test_export_killed_midway(sample_10, tmp_path, monkeypatch):
    """An export killed after its first manifest (files listed as pending) leaves files a
    later export may replace, but not a file someone else put under a pending name."""
    import dicube.dicom.export as de

    img = dicube.load_from_dicom_folder(sample_10)
    real_bytes, real_manifest = de._file_bytes, de._write_manifest
    manifests = []

    class Killed(BaseException):
        pass

    def file_bytes(image, meta, k, *a):
        if k == 4:
            raise Killed
        return real_bytes(image, meta, k, *a)

    def write_manifest(folder, files):  # a hard kill runs no finally: only the first
        manifests.append(files)
        if len(manifests) == 1:
            real_manifest(folder, files)

    monkeypatch.setattr(de, "_file_bytes", file_bytes)
    monkeypatch.setattr(de, "_write_manifest", write_manifest)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        dicube.save_to_dicom_folder(img, out)
    monkeypatch.undo()
    written = sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    assert len(written) == 4
    stranger = next(n for n in sorted(manifests[0]) if n not in written)
    (out / stranger).write_bytes(b"not ours")
    with pytest.raises(DicomCubeError, match="not written by dicube"):
        dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert (out / stranger).read_bytes() == b"not ours"
    (out / stranger).unlink()
    dicube.save_to_dicom_folder(img, out, overwrite=True)  # the 4 written files were ours
    assert _compare_folders(sample_10, out) == []


def test_unwritable_target_gives_dicube_errors(sample_10, tmp_path):
    img = dicube.load(_saved(dicube.load_from_dicom_folder(sample_10), tmp_path), frames=[0])
    (tmp_path / "afile").write_bytes(b"mine")
    for target in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(DicomCubeError, match="not a folder|cannot write"):
            dicube.save_to_dicom_folder(img, target)
    assert (tmp_path / "afile").read_bytes() == b"mine"


def _saved(img, tmp_path) -> Path:
    p = tmp_path / "x.dcbs"
    dicube.save(img, p)
    return p


def test_export_from_legacy_file(legacy_dcbs, sample_10, tmp_path):
    """A version-1 file (rescaled int16 pixels) exports the original stored values."""
    with pytest.warns(UserWarning):
        img = dicube.load(legacy_dcbs)
    dicube.save_to_dicom_folder(img, tmp_path / "out")
    by_uid = {pydicom.dcmread(f).SOPInstanceUID: f for f in sample_10.iterdir()}
    for g in sorted((tmp_path / "out").glob("*.dcm")):
        b = pydicom.dcmread(g)
        a = pydicom.dcmread(by_uid[b.SOPInstanceUID])
        assert np.array_equal(a.pixel_array, b.pixel_array)
        assert dataset_differences(a, b) == []


def test_ybr_full_422_stored_bytes_exact(tmp_path):
    """4:2:2 chroma is kept as stored (no RGB conversion on load), so the export's pixel
    bytes equal the source's."""
    path = Path(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(path, src / path.name)
    _roundtrip(src, tmp_path)
    a, b = pydicom.dcmread(path), pydicom.dcmread(tmp_path / "out" / path.name)
    assert b.PhotometricInterpretation == "YBR_FULL_422" and a.PixelData == b.PixelData
