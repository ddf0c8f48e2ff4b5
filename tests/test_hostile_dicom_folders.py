"""Hostile and damaged DICOM folders (issue 11): no slice is dropped in silence, nothing hangs.

Each case is a copy of the shared sample_10 series (10 slices) with files damaged,
duplicated, relabelled or replaced by FIFOs, read by discover_series,
load_from_dicom_folder and ``dicube convert``.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import threading
import warnings
from pathlib import Path

import pydicom
import pytest
from cli_helpers import run_cli
from helpers_dicom import copy_series as _copy_series

import dicube
from dicube.dicom import dicom_io
from dicube.dicom.dicom_io import discover_series, load_from_dicom_folder
from dicube.dicom.dicom_status import DicomStatus as S
from dicube.dicom.dicom_status import check_series
from dicube.dicom.file_parser import parse_bytes, parse_file
from dicube.exceptions import (
    DamagedDicomError,
    DicomCubeError,
    DicomReadError,
    DuplicateInstanceError,
    SkippedFileWarning,
    UnreadableFilesError,
)

def _chmod_blocks(tmp_path) -> bool:
    """Whether a chmod 000 file is unreadable here (not as root with its capabilities; run
    ``setpriv --bounding-set -all --inh-caps -all pytest ...`` to test it as root)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o600)


def copy_series(src, dst, names=None):
    """A copy the tests may damage (the shared files are read-only)."""
    out = _copy_series(src, dst, names)
    for p in out.iterdir():
        if p.is_file():
            p.chmod(0o644)
    return out


@pytest.fixture
def ct(sample_10, tmp_path):
    return copy_series(sample_10, tmp_path / "ct")


def _names(files) -> dict:
    return {os.path.basename(p): r for p, r in files}


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _bad_vr(path: Path) -> None:
    """Make the VR of (0008,0050) AccessionNumber the bytes 'S\\xff'."""
    buf = bytearray(path.read_bytes())
    i = buf.index(b"\x08\x00\x50\x00SH")
    buf[i + 4:i + 6] = b"S\xff"
    path.write_bytes(bytes(buf))


def _deny(monkeypatch, *victims: Path) -> None:
    """Reading these files fails with EACCES (chmod 000 does not stop root)."""
    real = dicom_io._read
    names = {os.fspath(v) for v in victims}

    def read(path):
        if path in names:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(dicom_io, "_read", read)


def _damage(ct: Path, monkeypatch) -> dict:
    """One empty, one header-truncated, one pixel-truncated, one unreadable file."""
    files = sorted(ct.iterdir())
    _truncate(files[1], 0)
    _truncate(files[2], 1000)
    _truncate(files[3], files[3].stat().st_size - 100)
    _deny(monkeypatch, files[4])
    return {files[1].name: "empty file", files[2].name: "truncated",
            files[3].name: "truncated", files[4].name: "Permission denied"}


# ------------------------------------------------------------------ damaged files
def test_damaged_files_are_an_error_naming_every_file(ct, monkeypatch):
    expected = _damage(ct, monkeypatch)
    with pytest.raises(UnreadableFilesError) as exc:
        load_from_dicom_folder(ct)
    got = _names(exc.value.files)
    assert set(got) == set(expected)
    for name, why in expected.items():
        assert why in got[name], (name, got[name])
        assert f"{ct / name}: " in str(exc.value)
    assert isinstance(exc.value, DicomReadError)


def test_skip_unreadable_records_them_in_the_qc_report(ct, monkeypatch, tmp_path):
    expected = _damage(ct, monkeypatch)
    with pytest.warns(SkippedFileWarning, match="skipped 4 files that cannot be read"):
        img = load_from_dicom_folder(ct, on_unreadable="skip")
    assert img.raw_image.shape[0] == 6
    report = check_series(img.dicom_meta)
    assert report.status == S.UNREADABLE_FILES  # never CONSISTENT
    assert dicube.get_dicom_status(img.dicom_meta) == S.UNREADABLE_FILES
    issue = report.get(S.UNREADABLE_FILES)[0]
    assert {f[0] for f in issue.files} == set(expected)
    # the report stored in the .dcbs keeps them
    dicube.save(img, tmp_path / "s.dcbs")
    stored = dicube.load_qc_report(tmp_path / "s.dcbs")
    assert stored.status == S.UNREADABLE_FILES
    assert {f[0] for f in stored.get(S.UNREADABLE_FILES)[0].files} == set(expected)
    for meta in (dicube.load(tmp_path / "s.dcbs").dicom_meta, dicube.load_meta(tmp_path / "s.dcbs")):
        assert check_series(meta).get(S.UNREADABLE_FILES)[0].files == issue.files  # kept on reload
    with pytest.raises(ValueError):
        load_from_dicom_folder(ct, on_unreadable="ignore")


def test_every_truncation_of_a_slice_is_reported(sample_10, tmp_path):
    """A slice cut anywhere after its preamble is damaged, never "not DICOM"."""
    buf = (Path(sample_10) / "I10").read_bytes()
    pf, _ = parse_bytes("I10", buf)
    cuts = sorted(set(range(129, 3000, 13)) | {pf.pixel_offset - 1, pf.pixel_offset + 7,
                                                len(buf) // 2, len(buf) - 1})
    path = tmp_path / "cut.dcm"
    missed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in cuts:
            path.write_bytes(buf[:n])
            item, _, _ = dicom_io._parse(os.fspath(path))
            if item is None or not item.problem:
                missed.append(n)
    assert not missed


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.201"])
def test_truncated_implicit_and_encapsulated_files(dcbs_samples, tmp_path, syntax):
    """Files read through pydicom (implicit VR) and encapsulated (HTJ2K) ones too."""
    folder = tmp_path / "exported"
    dicube.save_to_dicom_folder(dicube.load(dcbs_samples["sample_10"]), folder,
                                transfer_syntax=syntax)
    victims = sorted(folder.glob("I*"))[:3]
    _truncate(victims[0], 700)
    _truncate(victims[1], victims[1].stat().st_size // 2)
    _truncate(victims[2], victims[2].stat().st_size - 1)
    with pytest.raises(UnreadableFilesError) as exc:
        load_from_dicom_folder(folder)
    assert set(_names(exc.value.files)) == {v.name for v in victims}


def test_unreadable_file_really_denied(ct, tmp_path):
    if not _chmod_blocks(tmp_path):
        pytest.skip("chmod 000 does not stop this user (simulated in test_damaged_files_...)")
    victim = ct / "I50"
    victim.chmod(0)
    try:
        with pytest.raises(UnreadableFilesError, match="I50: Permission denied"):
            load_from_dicom_folder(ct)
        found = discover_series(ct)
        assert [os.path.basename(f.path) for f in found.unreadable] == ["I50"]
    finally:
        victim.chmod(0o644)


def test_unlistable_subfolder_is_reported(ct, tmp_path):
    if not _chmod_blocks(tmp_path):
        pytest.skip("chmod 000 does not stop this user")
    sub = ct / "more"
    sub.mkdir()
    sub.chmod(0)
    try:
        with pytest.raises(UnreadableFilesError, match="cannot list folder"):
            load_from_dicom_folder(ct)
    finally:
        sub.chmod(0o755)


def test_broken_symlink_is_reported(ct):
    os.symlink(ct / "gone", ct / "I999")
    with pytest.raises(UnreadableFilesError, match="I999: broken symbolic link"):
        load_from_dicom_folder(ct)
    with pytest.warns(SkippedFileWarning, match="I999: broken symbolic link"):
        assert load_from_dicom_folder(ct, on_unreadable="skip").raw_image.shape[0] == 10


def test_bad_vr_bytes_are_a_typed_error_naming_the_file(ct):
    victim = ct / "I30"
    _bad_vr(victim)
    with pytest.raises(DamagedDicomError) as exc:
        parse_file(victim)
    assert str(victim) in str(exc.value) and "0x53 0xff" in str(exc.value)
    found = discover_series(ct)
    assert found.num_non_dicom == 0  # damaged DICOM, not "non-DICOM"
    assert [os.path.basename(f.path) for f in found.unreadable] == ["I30"]
    assert [s.num_files for s in found] == [9]
    with pytest.raises(UnreadableFilesError, match="I30: damaged DICOM file"):
        load_from_dicom_folder(ct)
    with pytest.warns(SkippedFileWarning):
        assert load_from_dicom_folder(ct, on_unreadable="skip").raw_image.shape[0] == 9


def test_damaged_prefix_zeros_and_raw_data_sets_look_like_dicom(ct):
    buf = (ct / "I10").read_bytes()
    (ct / "magic").write_bytes(buf[:128] + b"DXCM" + buf[132:])   # damaged "DICM"
    (ct / "zeros").write_bytes(bytes(4096))                        # zeroed by a bad disk
    (ct / "raw").write_bytes(buf[132 + 12 + int.from_bytes(buf[140:144], "little"):][:4096])
    found = discover_series(ct)
    assert sorted(os.path.basename(f.path) for f in found.unreadable) == ["magic", "raw", "zeros"]
    assert found.num_non_dicom == 0


def test_non_dicom_files_stay_silent(ct):
    (ct / "README.txt").write_text("scanner export\n")
    (ct / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(range(256)) * 8)
    (ct / ".gitkeep").write_bytes(b"")
    (ct / "notes.json").write_text('{"a": 1}')
    found = discover_series(ct)
    assert found.num_non_dicom == 4 and not found.unreadable and not found.not_regular
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFileWarning)
        img = load_from_dicom_folder(ct)
    assert img.raw_image.shape[0] == 10
    assert check_series(img.dicom_meta).status == S.CONSISTENT


# ------------------------------------------------------------------ duplicates and identity
def test_identical_copies_are_read_once_and_reported(ct):
    copies = copy_series(ct, ct / "copy", names={"I20", "I30", "I40"})
    found = discover_series(ct)
    assert [s.num_files for s in found] == [10]
    assert sorted(os.path.basename(d.path) for d in found.duplicates) == ["I20", "I30", "I40"]
    img = load_from_dicom_folder(ct)
    assert img.raw_image.shape[0] == 10
    report = check_series(img.dicom_meta)
    assert report.status == S.DUPLICATE_FILES  # a warning: not CONSISTENT
    files = report.get(S.DUPLICATE_FILES)[0].files
    assert sorted(f[0] for f in files) == [os.path.join("copy", n) for n in ("I20", "I30", "I40")]
    assert all("identical copy of I" in f[1] for f in files)
    assert copies.exists()
    dicube.save(img, ct / "s.dcbs")
    assert check_series(dicube.load_meta(ct / "s.dcbs")).get(S.DUPLICATE_FILES)[0].files == files


def test_same_instances_twice_with_other_content_are_refused(sample_10, sample_200, tmp_path,
                                                              capsys):
    """The shared sample_10 holds 10 of sample_200's instances (their PatientID differs)."""
    root = tmp_path / "both"
    copy_series(sample_10, root / "a")
    copy_series(sample_200, root / "b")
    with pytest.raises(DuplicateInstanceError) as exc:
        load_from_dicom_folder(root)
    assert len(exc.value.files) == 10
    assert all(a.startswith(str(root / "a")) and b.startswith(str(root / "b"))
               for a, b in exc.value.files)
    rc, out, err = run_cli(capsys, "convert", root, "-o", tmp_path / "out")
    assert rc == 1 and "share a SOPInstanceUID" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _relabel(folder: Path, names, **values) -> None:
    for n in names:
        ds = pydicom.dcmread(folder / n)
        for k, v in values.items():
            setattr(ds, k, v)
        ds.save_as(folder / n)


def test_mixed_patient_and_study_are_qc_errors(ct, tmp_path, capsys):
    _relabel(ct, ["I20", "I30"], PatientID="SOMEONE-ELSE")
    _relabel(ct, ["I90"], StudyInstanceUID="1.2.3.4.5.6")
    img = load_from_dicom_folder(ct)  # nothing lost: the slices load, QC says what is wrong
    report = check_series(img.dicom_meta)
    assert report.status == S.NON_UNIFORM_PATIENT
    pat = report.get(S.NON_UNIFORM_PATIENT)[0]
    assert "PatientID differs" in pat.message and "'SOMEONE-ELSE' on 2 slices" in pat.message
    assert len(pat.slices) == 2
    assert len(report.get(S.NON_UNIFORM_STUDY_UID)[0].slices) == 1
    # convert refuses it, loudly, unless asked
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "convert", ct, "-o", out)
    assert rc == 1 and "different patients or studies" in err and "--allow-mixed-identity" in err
    assert "NON_UNIFORM_PATIENT" in stdout and "FAILED" in stdout
    assert not list(out.glob("*.dcbs"))
    rc, stdout, err = run_cli(capsys, "convert", ct, "-o", out, "--allow-mixed-identity")
    assert rc == 0, err
    (written,) = out.glob("*.dcbs")
    assert dicube.load_qc_report(written).has(S.NON_UNIFORM_PATIENT)


# ------------------------------------------------------------------ FIFOs and other entries
def _no_hang(fn, fifos, seconds: float = 60.0):
    """Run fn in a thread; if it blocks on a FIFO, unblock it and fail."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        for f in fifos:  # a writer that opens and closes lets a blocked reader finish
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(10)
        pytest.fail(f"{fn} blocked on a FIFO")
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_fifo_socket_and_links_to_them_are_never_opened(ct, tmp_path, capsys):
    fifo = ct / "x.dcm"
    os.mkfifo(fifo)
    outside = tmp_path / "elsewhere.fifo"
    os.mkfifo(outside)
    os.symlink(outside, ct / "y.dcm")  # a link to a FIFO is a FIFO
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(ct / "s.dcm"))
    fifos = [fifo, outside]
    try:
        found = _no_hang(lambda: discover_series(ct), fifos)
        assert [s.num_files for s in found] == [10]
        assert {os.path.basename(f.path): f.reason for f in found.not_regular} == {
            "x.dcm": "not a regular file (FIFO)", "y.dcm": "not a regular file (FIFO)",
            "s.dcm": "not a regular file (socket)"}
        assert found.num_non_dicom == 0 and not found.unreadable
        with pytest.warns(SkippedFileWarning) as rec:
            img = _no_hang(lambda: load_from_dicom_folder(ct), fifos)
        assert sorted(os.path.basename(str(w.message).split(": skipped, ")[0]) for w in rec) == [
            "s.dcm", "x.dcm", "y.dcm"]
        assert img.raw_image.shape[0] == 10
        assert check_series(img.dicom_meta).status == S.CONSISTENT
        rc, out, err = _no_hang(lambda: run_cli(capsys, "convert", ct, "-o", tmp_path / "o"),
                                fifos)
        assert rc == 0, err
        assert "warning: " in err and "x.dcm: skipped, not a regular file (FIFO)" in err
        with pytest.raises(DicomReadError, match="not a file or folder \\(FIFO\\)"):
            _no_hang(lambda: load_from_dicom_folder(fifo), fifos)
        from dicube.preview import mosaic

        assert len(_no_hang(lambda: mosaic(ct, tile_width=2, image_width=64), fifos).slices) == 4
    finally:
        sock.close()


def test_read_refuses_a_fifo_swapped_in_after_listing(ct):
    """The open itself never blocks (O_NONBLOCK) and checks the file type."""
    fifo = ct / "late.dcm"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        _no_hang(lambda: dicom_io._read(os.fspath(fifo)), [fifo])


# ------------------------------------------------------------------ convert
def test_convert_fails_naming_every_damaged_file_or_skips_them(ct, tmp_path, capsys):
    files = sorted(ct.iterdir())
    _truncate(files[1], 0)
    _truncate(files[2], 1000)
    _bad_vr(files[3])
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "convert", ct, "-o", out)
    assert rc == 1
    for f in files[1:4]:
        assert f"{f}: " in err
    assert "FAILED" in stdout and not list(out.glob("*.dcbs"))
    assert "pass --skip-unreadable to convert the rest" in err
    rc, stdout, err = run_cli(capsys, "convert", ct, "-o", out, "--skip-unreadable")
    assert rc == 0, err
    assert "skipped 3 files that cannot be read" in err and "UNREADABLE_FILES" in stdout
    assert f"{files[1]}: empty file" in err
    (written,) = out.glob("*.dcbs")
    assert dicube.load(written).raw_image.shape[0] == 7
    stored = dicube.load_qc_report(written).get(S.UNREADABLE_FILES)[0]
    assert sorted(f[0] for f in stored.files) == sorted(f.name for f in files[1:4])


def test_convert_reports_damaged_files_outside_every_series(sample_10, tmp_path, capsys):
    root = tmp_path / "root"
    copy_series(sample_10, root / "good")
    (root / "odd").mkdir()
    (root / "odd" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    rc, _, err = run_cli(capsys, "convert", root, "-o", tmp_path / "out", "-q")
    assert rc == 1 and f"{root / 'odd' / 'x.dcm'}: " in err and "--skip-unreadable" in err
    assert len(list((tmp_path / "out").glob("*.dcbs"))) == 1  # the good series is converted
    rc, _, err = run_cli(capsys, "convert", root, "-o", tmp_path / "out2", "-q",
                         "--skip-unreadable")
    assert rc == 0 and "skipped 1 file that cannot be read" in err


# ------------------------------------------------------------------ mutated folders
def _mutate(folder: Path, rng: random.Random) -> None:
    files = sorted(folder.iterdir())
    for f in rng.sample(files, rng.randint(1, 3)):
        buf = bytearray(f.read_bytes())
        kind = rng.choice(["cut", "cut_header", "flip", "zero_run", "empty"])
        if kind == "cut":
            buf = buf[:rng.randrange(len(buf))]
        elif kind == "cut_header":
            buf = buf[:rng.randrange(129, 12000)]
        elif kind == "flip":
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(128, 12000)
                buf[i] ^= 1 << rng.randrange(8)
        elif kind == "zero_run":
            i = rng.randrange(128, 12000)
            buf[i:i + rng.randint(1, 64)] = bytes(min(64, len(buf) - i))
        else:
            buf = bytearray()
        f.write_bytes(bytes(buf))


def test_mutated_folders_never_lose_slices_in_silence(sample_10, tmp_path):
    """Loads either return all 10 slices, or raise a typed error; skipping never leaves a
    short series reported CONSISTENT. (tests/fuzz_dicom_folders.py runs many more.)"""
    rng = random.Random(11)
    master = copy_series(sample_10, tmp_path / "master")
    for k in range(24):
        folder = tmp_path / f"m{k}"
        shutil.copytree(master, folder)
        _mutate(folder, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                img = load_from_dicom_folder(folder)
                assert img.raw_image.shape[0] == 10, k
            except DicomCubeError:
                pass
            try:
                img = load_from_dicom_folder(folder, on_unreadable="skip")
            except DicomCubeError:
                continue
        if img.raw_image.shape[0] < 10:
            assert check_series(img.dicom_meta).status != S.CONSISTENT, k
        shutil.rmtree(folder)
