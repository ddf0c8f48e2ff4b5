"""Symbolic links in DICOM folders (issue 12 item 3): followed to files and to folders, each
folder walked once (loops, links to ancestors), each file read once, and the same files
found by ``load_from_dicom_folder``, ``discover_series``, ``dicube convert`` and previews."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
import pytest

import dicube
from dicube import discover_series, load_from_dicom_folder
from dicube.dicom.dicom_io import list_files
from dicube.exceptions import SkippedFileWarning, UnreadableFilesError
from dicube.storage.sources import list_folder

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def reference(sample_10):
    """The series read straight from its folder: (volume, SeriesInstanceUID)."""
    img = load_from_dicom_folder(sample_10)
    return img.raw_image, str(pydicom.dcmread(sorted(sample_10.iterdir())[0]).SeriesInstanceUID)


def _unrelated_slice(sample_10, path) -> None:
    """One slice of another series (new SeriesInstanceUID and SOPInstanceUID)."""
    ds = pydicom.dcmread(sorted(sample_10.iterdir())[0])
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path, enforce_file_format=True)


def _same_everywhere(capsys, root, reference, tmp_path, n_series: int = 1) -> set:
    """load_from_dicom_folder, discover_series, convert and the preview listing find the same
    10 files of the series under ``root``; returns their real paths."""
    volume, uid = reference
    img = load_from_dicom_folder(root, series_uid=uid)
    assert np.array_equal(img.raw_image, volume)
    assert dicube.get_dicom_status(img.dicom_meta).name != "DUPLICATE_FILES"
    found = discover_series(root)
    assert len(found.series) == n_series
    (info,) = [s for s in found if s.series_uid == uid]
    assert info.num_files == 10
    real = {os.path.realpath(f) for f in info.files}
    assert len(real) == 10
    assert {os.path.realpath(e.location) for e in list_folder(os.fspath(root))} >= real
    out = tmp_path / "converted"
    rc, _, err = run_cli(capsys, "convert", root, "-o", out, "-q")
    assert rc == 0, err
    outputs = sorted(out.glob("*.dcbs"))
    assert len(outputs) == n_series
    assert any(np.array_equal(dicube.load(p).raw_image, volume) for p in outputs)
    return real


def test_series_behind_a_folder_link(capsys, sample_10, reference, tmp_path):
    """The issue's case: the series sits behind a link, one unrelated slice beside it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "series").symlink_to(sample_10, target_is_directory=True)
    _unrelated_slice(sample_10, root / "scout.dcm")
    real = _same_everywhere(capsys, root, reference, tmp_path, n_series=2)
    assert real == {os.path.realpath(p) for p in sample_10.iterdir()}
    rc, _, err = run_cli(capsys, "mosaic", root / "series", tmp_path / "m.webp", "-x", "2")
    assert rc == 0, err


def test_slices_behind_file_links(capsys, sample_10, reference, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for k, f in enumerate(sorted(sample_10.iterdir())):
        (root / ("sub" if k % 2 else "") / f"s{k}.dcm").symlink_to(f)
    _same_everywhere(capsys, root, reference, tmp_path)


def test_link_loop_is_walked_once(capsys, sample_10, reference, tmp_path):
    """root/a -> store, store/b -> store (a/b -> a), store/c/d -> ../.. (c/d -> a)."""
    store = tmp_path / "store"
    (store / "c").mkdir(parents=True)
    for f in sorted(sample_10.iterdir()):
        (store / f.name).symlink_to(f)
    (store / "b").symlink_to(store, target_is_directory=True)
    (store / "c" / "d").symlink_to("../..", target_is_directory=True)
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to(store, target_is_directory=True)
    _same_everywhere(capsys, root, reference, tmp_path)
    listing = discover_series(root)
    assert not listing.aliases and not listing.unreadable
    assert all(os.path.dirname(f) == os.fspath(root / "a") for f in listing.series[0].files)


def test_link_to_an_ancestor(capsys, sample_10, reference, tmp_path):
    """series/up -> .. (the root) and series/top -> / of the test tree: visited once."""
    top = tmp_path / "top"
    root = top / "root"
    (root / "series").mkdir(parents=True)
    (top / "notes.txt").write_text("not DICOM")
    for f in sorted(sample_10.iterdir()):
        (root / "series" / f.name).symlink_to(f)
    (root / "series" / "up").symlink_to("..", target_is_directory=True)
    (root / "series" / "top").symlink_to(top, target_is_directory=True)
    _same_everywhere(capsys, root, reference, tmp_path)
    found = discover_series(root)
    assert found.non_dicom == [os.fspath(root / "series" / "top" / "notes.txt")]
    assert all(f.startswith(os.fspath(root / "series") + os.sep) for f in found.series[0].files)


def test_one_file_through_two_paths_is_read_once(sample_10, reference, tmp_path):
    """A link to a file of the tree is that file (an alias, read once, no DUPLICATE_FILES);
    an identical copy stays a duplicate. Files of the tree keep their own paths."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "series").symlink_to(sample_10, target_is_directory=True)
    first = sorted(sample_10.iterdir())[0]
    (root / "zz_link.dcm").symlink_to(root / "series" / first.name)
    found = discover_series(root)
    assert found.series[0].num_files == 10 and not found.duplicates
    # the path through the fewest links, then the fewest folders, is kept
    assert [(a.path, a.reason) for a in found.aliases] == [
        (os.fspath(root / "series" / first.name), f"same file as {root / 'zz_link.dcm'}")]
    img = load_from_dicom_folder(root)
    assert np.array_equal(img.raw_image, reference[0])
    assert dicube.get_dicom_status(img.dicom_meta).name != "DUPLICATE_FILES"
    assert not img.dicom_meta.read_report["duplicates"]
    # a copy (another inode, same bytes) is still an identical copy, read once and reported
    (root / "copy.dcm").write_bytes(first.read_bytes())
    img = load_from_dicom_folder(root)
    assert len(img.dicom_meta.read_report["duplicates"]) == 1
    assert discover_series(root).duplicates


def test_links_to_special_and_missing_entries(sample_10, tmp_path):
    """A FIFO behind a folder link is never opened; a broken link, to a file or a folder,
    is unreadable (the series fails unless skipped); a self-loop link too."""
    other = tmp_path / "other"
    other.mkdir()
    os.mkfifo(other / "pipe")
    root = tmp_path / "root"
    root.mkdir()
    for f in sorted(sample_10.iterdir()):
        (root / f.name).symlink_to(f)
    (root / "more").symlink_to(other, target_is_directory=True)
    found = discover_series(root)
    assert [e.path for e in found.not_regular] == [os.fspath(root / "more" / "pipe")]
    with pytest.warns(SkippedFileWarning, match="pipe"):
        assert load_from_dicom_folder(root).raw_image.shape[0] == 10
    (root / "gone").symlink_to(tmp_path / "missing", target_is_directory=True)
    (root / "self").symlink_to(root / "self")
    found = discover_series(root)
    reasons = dict((e.path, e.reason) for e in found.unreadable)
    assert reasons[os.fspath(root / "gone")] == "broken symbolic link"
    assert os.fspath(root / "self") in reasons
    with pytest.raises(UnreadableFilesError) as exc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedFileWarning)
            load_from_dicom_folder(root)
    assert {p for p, _ in exc.value.files} == {os.fspath(root / "gone"), os.fspath(root / "self")}


def test_not_recursive_follows_file_links_only(sample_10, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    files = sorted(sample_10.iterdir())
    (root / "one.dcm").symlink_to(files[0])
    (root / "series").symlink_to(sample_10, target_is_directory=True)
    assert list_files(root, recursive=False) == [os.fspath(root / "one.dcm")]
    assert len(list_files(root)) == 10  # one.dcm is also series/I10: listed once


def test_listing_is_bounded_when_links_lead_far(tmp_path, monkeypatch):
    """A link to a huge tree (e.g. /) inside an input folder stops at the documented limits."""
    from dicube.storage import limits
    from dicube.exceptions import DicomReadError
    from dicube.dicom.dicom_io import list_files

    deep = tmp_path / "in"
    d = deep
    for i in range(6):
        d = d / f"d{i}"
    d.mkdir(parents=True)
    (deep / "far").symlink_to("/usr", target_is_directory=True)
    monkeypatch.setattr(limits, "MAX_LISTING_ENTRIES", 500)
    with pytest.raises(DicomReadError, match="MAX_LISTING_ENTRIES") as err:
        list_files(deep)
    assert str(deep) in str(err.value)
    monkeypatch.setattr(limits, "MAX_LISTING_ENTRIES", 1_000_000)
    (deep / "far").unlink()
    monkeypatch.setattr(limits, "MAX_LISTING_DEPTH", 3)
    with pytest.raises(DicomReadError, match="MAX_LISTING_DEPTH"):
        list_files(deep)
