"""Writes outside the target, temporary files, permissions and write errors (issue 11).

Export never writes through a link inside its folder (planted before or swapped in midway),
temporary files are unpredictable, locked for their writer's lifetime and removed once their
writer died, a replaced file keeps its mode, and every write error is a WriteError naming
the file asked for.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import select
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_cli

import dicube
import dicube.dicom.export as de
import dicube.storage.atomic as atomic
from dicube.dicom.export import MANIFEST
from dicube.core.nifti_io import save_to_nifti
from dicube.exceptions import UnsafeTargetError, WriteError

HEX = "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def src10(sample_10, tmp_path_factory) -> Path:
    """sample_10 saved with its file names moved into ``sub/``."""
    img = dicube.load_from_dicom_folder(sample_10)
    img.dicom_meta.filenames = [f"sub/{n}" for n in img.dicom_meta.filenames]
    path = tmp_path_factory.mktemp("hostile_writes") / "s.dcbs"
    dicube.save(img, path)
    return path


def _small(src10, names=None):
    """Three slices of sample_10 (fresh, so tests may change the file names)."""
    img = dicube.load(src10, frames=[0, 1, 2])
    if names is not None:
        img.dicom_meta.filenames = list(names)
    return img


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------ links in the target
def test_export_refuses_symlinked_subfolder(src10, tmp_path, capsys):
    """The issue's reproduction: T/sub -> ../victim, files stored as sub/I*."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "I100").write_bytes(b"victim")
    out = tmp_path / "T"
    out.mkdir()
    (out / "sub").symlink_to("../victim")
    for extra in ((), ("--overwrite",)):
        rc, _, err = run_cli(capsys, "export", src10, out, *extra)
        assert rc == 1
        assert err.startswith(f"dicube export: error: {out / 'sub'}: is a symbolic link"), err
    assert os.listdir(victim) == ["I100"] and (victim / "I100").read_bytes() == b"victim"
    assert os.listdir(out) == ["sub"]  # nothing written, not even the manifest
    (out / "sub").unlink()
    assert run_cli(capsys, "export", src10, out)[0] == 0
    assert len(os.listdir(out / "sub")) == 10


def test_export_refuses_symlink_at_file_name(src10, tmp_path):
    img = _small(src10, ["I1", "I2", "I3"])
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"victim")
    out = tmp_path / "T"
    out.mkdir()
    (out / "I2").symlink_to(victim)
    with pytest.raises(UnsafeTargetError, match="symbolic link") as exc:
        dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert exc.value.path == str(out / "I2")
    assert victim.read_bytes() == b"victim" and os.listdir(out) == ["I2"]


def test_export_refuses_link_to_a_copy_of_its_own_file(src10, tmp_path):
    """A link whose target equals the file exported before (same size and CRC) is not ours."""
    img = _small(src10, ["I1", "I2", "I3"])
    out = tmp_path / "T"
    dicube.save_to_dicom_folder(img, out)
    copy = tmp_path / "copy.dcm"
    copy.write_bytes((out / "I1").read_bytes())
    (out / "I1").unlink()
    (out / "I1").symlink_to(copy)
    before = copy.read_bytes()
    with pytest.raises(UnsafeTargetError):
        dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert copy.read_bytes() == before


def test_link_swapped_in_midway_is_not_followed(src10, tmp_path, monkeypatch):
    img = _small(src10)  # names sub/I*
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "T"
    real = de._file_bytes

    def file_bytes(image, meta, k, *a):
        if k == 1:  # after the first file: sub is moved away and a link put in its place
            (out / "sub").rename(out / "moved")
            (out / "sub").symlink_to(victim)
        return real(image, meta, k, *a)

    monkeypatch.setattr(de, "_file_bytes", file_bytes)
    with pytest.raises(UnsafeTargetError) as exc:
        dicube.save_to_dicom_folder(img, out)
    assert exc.value.path == str(out / "sub")
    assert os.listdir(victim) == []
    assert len(os.listdir(out / "moved")) == 1


def test_unrelated_links_are_left_alone(src10, tmp_path):
    """With overwrite=True a link off the paths written stays; without, it makes the folder non-empty."""
    img = _small(src10, ["I1", "I2", "I3"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "T"
    out.mkdir()
    (out / "other").symlink_to(elsewhere)
    with pytest.raises(dicube.DicomCubeError, match="not empty"):
        dicube.save_to_dicom_folder(img, out)
    dicube.save_to_dicom_folder(img, out, overwrite=True)
    assert os.path.islink(out / "other") and os.listdir(elsewhere) == []
    assert sorted(os.listdir(out)) == [MANIFEST, "I1", "I2", "I3", "other"]


def test_target_folder_given_as_a_link_is_followed(src10, tmp_path):
    img = _small(src10, ["I1", "I2", "I3"])
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    paths = dicube.save_to_dicom_folder(img, tmp_path / "link")
    assert paths[0] == str(tmp_path / "link" / "I1")
    assert sorted(os.listdir(real)) == [MANIFEST, "I1", "I2", "I3"]


@pytest.mark.parametrize("bad", ["../escape/I1", "/abs/I1", "sub/../../escape", "a\0b",
                                 "n" * 300, f".I2.dicube-{HEX}.tmp", MANIFEST, "I2/x", 7])
def test_unusable_stored_names_are_numbered(src10, tmp_path, bad):
    """Names that cannot be a file inside the folder: all files numbered, with a warning."""
    img = _small(src10, [bad, "I2", "I3"])
    out = tmp_path / "T"
    with pytest.warns(UserWarning, match="stored file names are not used"):
        dicube.save_to_dicom_folder(img, out)
    assert sorted(os.listdir(out)) == [MANIFEST, "00001.dcm", "00002.dcm", "00003.dcm"]
    assert sorted(os.listdir(tmp_path)) == ["T"]


def test_export_with_nul_in_stored_name(src10, tmp_path, capsys):
    img = _small(src10, ["I1\0.dcm", "I2", "I3"])
    src = tmp_path / "nul.dcbs"
    dicube.save(img, src)
    rc, out, err = run_cli(capsys, "export", src, tmp_path / "T")
    assert rc == 0, err
    assert err == (f"dicube export: warning: {tmp_path / 'T'}: the stored file names are not used "
                   "('I1\\x00.dcm' cannot be a file name inside the folder); files are numbered "
                   "00001.dcm, 00002.dcm, ... instead\n")
    assert sorted(os.listdir(tmp_path / "T"))[1:] == ["00001.dcm", "00002.dcm", "00003.dcm"]


# ------------------------------------------------------------------ temporary files
def test_nifti_temporary_name_is_not_predictable(src10, tmp_path, capsys):
    """A link planted at the NIfTI exporter's old temporary name is never written through."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    target = tmp_path / "ct.nii.gz"
    planted = tmp_path / f".ct.nii.gz.{os.getpid()}.tmp.nii.gz"
    planted.symlink_to(victim)
    rc, _, err = run_cli(capsys, "export", src10, "--nifti", target)
    assert rc == 0, err
    assert victim.read_bytes() == b"victim"
    assert nib.load(target).shape == (512, 512, 10)
    assert sorted(os.listdir(tmp_path)) == sorted([planted.name, "ct.nii.gz", "victim"])


def test_planted_link_at_a_temporary_name_is_not_followed(src10, tmp_path, monkeypatch):
    """Even a guessed temporary name is created with O_EXCL|O_NOFOLLOW: a new name is drawn."""
    tokens = iter([HEX, HEX, "f" * 32])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    planted = tmp_path / f".x.dcbs.dicube-{HEX}.tmp"
    planted.symlink_to(victim)
    img = _small(src10)
    dicube.save(img, tmp_path / "x.dcbs")
    assert victim.read_bytes() == b"victim" and planted.is_symlink()
    assert np.array_equal(dicube.load(tmp_path / "x.dcbs").raw_image, img.raw_image)


def test_link_at_the_target_name_is_replaced_not_followed(src10, tmp_path):
    img = _small(src10)
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    victim.chmod(0o600)
    for name, write in (("x.dcbs", dicube.save), ("x.nii", save_to_nifti)):
        (tmp_path / name).symlink_to(victim)
        write(img, tmp_path / name)
        assert not (tmp_path / name).is_symlink() and _mode(tmp_path / name) == 0o666 & ~atomic.umask()
    assert victim.read_bytes() == b"victim"


_CHILD = textwrap.dedent("""
    import contextlib, sys, time
    import dicube
    from dicube.storage import writer

    real = writer.atomic_write

    @contextlib.contextmanager
    def blocked(path, **kw):  # stops inside the write, temporary file half written
        with real(path, **kw) as fh:
            fh.write(b"partial" * 100000)
            fh.flush()
            print("writing", flush=True)
            time.sleep(300)
            yield fh

    writer.atomic_write = blocked
    dicube.save(dicube.load(sys.argv[1], frames=[0]), sys.argv[2])
""")


def _start_blocked_save(src, target) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    if not ready or proc.stdout.readline() != b"writing\n":
        proc.kill()
        pytest.fail(f"the child save did not start: {proc.communicate()[1].decode()[-2000:]}")
    return proc


def _temps(folder: Path, name: str) -> set:
    return {p for p in os.listdir(folder) if p.startswith(f".{name}.dicube-")}


def test_kill_9_leftover_removed_live_writer_kept(src10, tmp_path):
    target = tmp_path / "x.dcbs"
    procs = []
    try:
        procs.append(_start_blocked_save(src10, target))
        dead = _temps(tmp_path, "x.dcbs")
        procs.append(_start_blocked_save(src10, target))
        live = _temps(tmp_path, "x.dcbs") - dead
        assert len(dead) == 1 and len(live) == 1
        procs[0].kill()  # SIGKILL: no cleanup runs
        procs[0].wait(30)
        assert _temps(tmp_path, "x.dcbs") == dead | live
        assert os.path.getsize(tmp_path / dead.pop()) >= 700000
        img = _small(src10)
        dicube.save(img, target)
        assert _temps(tmp_path, "x.dcbs") == live  # the live writer's file is untouched
        assert np.array_equal(dicube.load(target).raw_image, img.raw_image)
        procs[1].kill()
        procs[1].wait(30)
        dicube.save(img, target)
        assert _temps(tmp_path, "x.dcbs") == set()
    finally:
        for p in procs:
            p.kill()
            p.wait(30)
            p.stdout.close()
            p.stderr.close()


def test_only_our_dead_temporary_files_are_removed(src10, tmp_path):
    """Dead writers' files of any target in the folder go; look-alikes and a FIFO stay."""
    lookalikes = [".x.dcbs.abc123.tmp", ".x.dcbs.dicube-zz.tmp", f"x.dcbs.dicube-{HEX}.tmp",
                  f".x.dcbs.dicube-{HEX}.tmp.bak"]
    for name in lookalikes:
        (tmp_path / name).write_bytes(b"not ours")
    os.mkfifo(tmp_path / f".x.dcbs.dicube-{'e' * 32}.tmp")  # must not block the clean-up
    (tmp_path / f".x.dcbs.dicube-{HEX}.tmp").write_bytes(b"dead writer")
    (tmp_path / f".y.nii.gz.dicube-{HEX}.tmp").write_bytes(b"dead writer")
    dicube.save(_small(src10), tmp_path / "x.dcbs")
    assert sorted(os.listdir(tmp_path)) == sorted(lookalikes + [f".x.dcbs.dicube-{'e' * 32}.tmp",
                                                                "x.dcbs"])


def test_file_system_without_locks(src10, tmp_path, monkeypatch):
    """Where flock is not supported a save still works, and no temporary file is removed."""
    def no_locks(*_a):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    stale = tmp_path / f".x.dcbs.dicube-{HEX}.tmp"
    stale.write_bytes(b"writer dead or alive: cannot tell")
    img = _small(src10)
    dicube.save(img, tmp_path / "x.dcbs")
    assert stale.exists()
    assert np.array_equal(dicube.load(tmp_path / "x.dcbs").raw_image, img.raw_image)


def test_export_removes_dead_temporary_files_and_keeps_live_ones(src10, tmp_path):
    img = _small(src10, ["I1", "I2", "I3"])
    out = tmp_path / "T"
    out.mkdir()
    (out / f".I1.dicube-{HEX}.tmp").write_bytes(b"dead writer")
    dicube.save_to_dicom_folder(img, out)  # the dead writer's file is no reason to refuse
    assert sorted(os.listdir(out)) == [MANIFEST, "I1", "I2", "I3"]
    live = out / f".I2.dicube-{'f' * 32}.tmp"
    live.write_bytes(b"live writer")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        dicube.save_to_dicom_folder(img, out, overwrite=True)
        assert live.read_bytes() == b"live writer"


# ------------------------------------------------------------------ permissions
@pytest.fixture
def umask027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_replaced_files_keep_their_mode_new_files_follow_umask(src10, tmp_path, umask027, capsys):
    img = _small(src10, ["I1", "I2", "I3"])
    dcbs, nii, out = tmp_path / "a.dcbs", tmp_path / "a.nii.gz", tmp_path / "T"
    dicube.save(img, dcbs)
    save_to_nifti(img, nii)
    dicube.save_to_dicom_folder(img, out)
    written = [dcbs, nii] + [out / n for n in (MANIFEST, "I1", "I2", "I3")]
    assert [_mode(p) for p in written] == [0o640] * 6
    for p in written:
        os.chmod(p, 0o600)
    dicube.save(img, dcbs)
    save_to_nifti(img, nii)
    dicube.save_to_dicom_folder(img, out, overwrite=True, transfer_syntax="1.2.840.10008.1.2")
    assert [_mode(p) for p in written] == [0o600] * 6
    rc, _, err = run_cli(capsys, "export", dcbs, "--nifti", nii, "--overwrite")
    assert rc == 0, err
    assert _mode(nii) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another group needs root")
def test_replaced_file_keeps_its_group(src10, tmp_path):
    img = _small(src10)
    path = tmp_path / "a.dcbs"
    dicube.save(img, path)
    os.chown(path, 0, 4242)
    os.chmod(path, 0o640)
    dicube.save(img, path)
    assert (os.stat(path).st_gid, _mode(path)) == (4242, 0o640)


def test_group_bits_dropped_when_the_group_cannot_be_kept(src10, tmp_path, monkeypatch):
    """Another group must not gain access to a group-readable file it replaces."""
    img = _small(src10)
    path = tmp_path / "a.dcbs"
    dicube.save(img, path)
    other = next(g for g in range(4242, 5000) if g != os.stat(path).st_gid)
    if os.geteuid() == 0:
        os.chown(path, -1, other)
    else:  # pretend: the file belonged to another group
        real_stat = os.stat
        monkeypatch.setattr(atomic.os, "stat", lambda *a, **k: _with_gid(real_stat(*a, **k), other))
    os.chmod(path, 0o640)

    def no_chown(*_a):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "fchown", no_chown)
    dicube.save(img, path)
    monkeypatch.undo()
    assert _mode(path) == 0o600


def _with_gid(st, gid):
    fields = list(st)
    fields[stat.ST_GID] = gid
    return os.stat_result(fields)


# ------------------------------------------------------------------ write errors
def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails with ENOSPC."""

    def __init__(self, room: int):
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(b) > self.room:
            _enospc()
        self.room -= len(b)
        return len(b)


def _check_write_error(exc, path, folder):
    assert isinstance(exc, WriteError)
    assert exc.path == str(path) and "No space left on device" in str(exc)
    assert ".tmp" not in str(exc)
    assert not [n for n in os.listdir(folder) if atomic.is_temp_name(n)]  # none left


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_disk_full_names_the_output(src10, tmp_path, monkeypatch, where):
    img = _small(src10, ["I1", "I2", "I3"])
    dcbs, nii = tmp_path / "a.dcbs", tmp_path / "a.nii.gz"
    dicube.save(img, dcbs)
    nii.write_bytes(b"previous")
    before = dcbs.read_bytes()
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", _enospc)
    else:
        def full_open(file, mode="r", *a, **k):  # only the temporary file fills up
            return io.BufferedWriter(_FullDisk(1000)) if mode == "wb" else open(file, mode, *a, **k)

        monkeypatch.setattr(atomic, "open", full_open, raising=False)
    with pytest.raises(WriteError) as exc:
        dicube.save(img, dcbs)
    _check_write_error(exc.value, dcbs, tmp_path)
    assert dcbs.read_bytes() == before
    with pytest.raises(WriteError) as exc:
        save_to_nifti(img, nii)
    _check_write_error(exc.value, nii, tmp_path)
    assert nii.read_bytes() == b"previous"
    with pytest.raises(WriteError) as exc:
        dicube.save_to_dicom_folder(img, tmp_path / "T")
    first = {"fsync": MANIFEST, "write": "I1"}[where]  # the manifest is small
    _check_write_error(exc.value, tmp_path / "T" / first, tmp_path / "T")


def test_disk_full_cli_names_the_output_not_the_input(src10, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "fsync", _enospc)
    target = tmp_path / "ct.nii.gz"
    rc, _, err = run_cli(capsys, "export", src10, "--nifti", target)
    assert rc == 1
    assert err == f"dicube export: error: {target}: cannot write: No space left on device\n"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_folder_gives_write_error(src10, tmp_path, monkeypatch, code):
    """A read-only or forbidden folder (simulated: the tests may run as root)."""
    img = _small(src10, ["I1", "I2", "I3"])
    real_open = os.open

    def no_create(path, flags, *a, **k):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", no_create)
    for path, write in ((tmp_path / "a.nii.gz", lambda p: save_to_nifti(img, p)),
                        (tmp_path / "a.dcbs", lambda p: dicube.save(img, p))):
        with pytest.raises(WriteError) as exc:
            write(path)
        assert exc.value.path == str(path)
        assert str(exc.value) == f"{path}: cannot write: {os.strerror(code)}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_really(src10, tmp_path):
    img = _small(src10, ["I1", "I2", "I3"])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="Permission denied"):
            save_to_nifti(img, ro / "a.nii")
    finally:
        ro.chmod(0o755)


def test_preview_output_link_is_replaced_and_errors_typed(src10, tmp_path):
    """Mosaic and get-image write like save: a link at the output name is replaced, never
    written through; an unwritable output is a WriteError naming it."""
    from dicube.preview import mosaic

    dcbs = tmp_path / "s.dcbs"
    dicube.save(_small(src10), dcbs)
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    out = tmp_path / "m.webp"
    out.symlink_to(victim)
    mosaic(dcbs, out, tile_width=2, image_width=32)
    assert not out.is_symlink() and out.read_bytes()[:4] == b"RIFF"
    assert victim.read_bytes() == b"victim"
    with pytest.raises(WriteError, match="nofolder"):
        mosaic(dcbs, tmp_path / "nofolder" / "m.png", tile_width=2, image_width=32)
