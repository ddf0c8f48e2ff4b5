"""``dicube convert``: files, names, summary table, failures, --overwrite, --jobs."""
from __future__ import annotations

import os
import re

import numpy as np
import pydicom
from cli_helpers import run_cli, run_script
from helpers_dicom import copy_series

import dicube

SAMPLE_10_NAME = "444_1_CT_S20214.dcbs"  # PatientID, Modality, SeriesNumber of sample_10


def _row(out: str, name: str) -> list[str]:
    lines = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == name]
    assert len(lines) == 1, out
    return lines[0].split()


def test_convert_one_folder(sample_10, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir)
    assert rc == 0, err
    assert sorted(os.listdir(out_dir)) == [SAMPLE_10_NAME]
    target = out_dir / SAMPLE_10_NAME
    ds = pydicom.dcmread(next(sample_10.iterdir()), stop_before_pixels=True)
    assert SAMPLE_10_NAME == f"{ds.PatientID}_{ds.Modality}_S{ds.SeriesNumber}.dcbs".replace(" ", "_")

    source = dicube.load_from_dicom_folder(sample_10)
    back = dicube.load(target)
    assert np.array_equal(back.raw_image, source.raw_image)
    assert back.dicom_meta == source.dicom_meta

    # summary: series, slices, input bytes, output bytes, ratio, QC, result
    row = _row(out, SAMPLE_10_NAME[:-5])
    in_bytes = sum(p.stat().st_size for p in sample_10.iterdir())
    out_bytes = target.stat().st_size
    assert row[1] == "10"
    assert row[-3] == f"{in_bytes / out_bytes:.2f}x"
    assert row[-2] == dicube.get_dicom_status(source.dicom_meta).value == "CONSISTENT"
    assert row[-1] == "ok"
    assert "1 of 1 series converted" in out and "0 failed" in out
    assert err == ""  # no progress bar when stderr is not a terminal


def test_convert_refuses_to_overwrite(sample_10, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert run_cli(capsys, "convert", sample_10, "-o", out_dir, "-q")[0] == 0
    target = out_dir / SAMPLE_10_NAME
    target.write_bytes(b"keep me")
    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir, "-q")
    assert (rc, out, err) == (0, "", "")  # exists, skipped (--quiet: no table)
    assert target.read_bytes() == b"keep me"
    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir, "--overwrite", "-q")
    assert rc == 0, err
    assert dicube.load_meta(target) is not None


def test_convert_broken_series_among_good_ones(sample_10, tmp_path):
    """Through the console script: a truncated file and a non-DICOM folder fail alone."""
    good = copy_series(sample_10, tmp_path / "good")
    broken = copy_series(sample_10, tmp_path / "broken")
    victim = broken / sorted(os.listdir(broken))[4]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not DICOM")
    out_dir = tmp_path / "out"

    proc = run_script("convert", good, broken, junk, "-o", out_dir, "--jobs", "2")
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("dicube convert: error: ")]
    assert len(errors) == 3, proc.stderr  # the file, its series, the junk folder
    assert any(f"{victim}: cannot read: truncated" in e for e in errors), errors
    assert any(f"{broken}: series {SAMPLE_10_NAME[:-5]}-2 not converted: 1 file" in e
               for e in errors), errors
    assert any(f"{junk}: no DICOM image series found" in e for e in errors), errors
    assert "Traceback" not in proc.stderr
    # the good series is converted; the broken copy (same series, so "-2") is not
    assert sorted(os.listdir(out_dir)) == [SAMPLE_10_NAME]
    assert _row(proc.stdout, SAMPLE_10_NAME[:-5])[-1] == "ok"
    assert _row(proc.stdout, SAMPLE_10_NAME[:-5] + "-2")[-1] == "FAILED"
    assert _row(proc.stdout, str(junk))[-1] == "FAILED"
    assert re.search(r"1 of 3 series converted .*; 2 failed", proc.stdout), proc.stdout
    assert np.array_equal(dicube.load(out_dir / SAMPLE_10_NAME).raw_image,
                          dicube.load_from_dicom_folder(sample_10).raw_image)


def _as_new_series(src, dst, names) -> None:
    """Copy ``names`` of ``src`` into ``dst`` as another series (new SeriesInstanceUID)."""
    uid = pydicom.uid.generate_uid()
    dst.mkdir(parents=True)
    for name in names:
        ds = pydicom.dcmread(src / name)
        ds.SeriesInstanceUID = uid
        ds.save_as(dst / name)


def test_jobs_2_same_as_jobs_1(sample_10, sample_200, tmp_path, capsys):
    """A root holding two series plus sample_200: the same files with 1 or 2 processes."""
    root = tmp_path / "root"
    copy_series(sample_10, root / "a")
    _as_new_series(sample_200, root / "b", ["I1000", "I1010", "I1020", "I1030"])
    outs = {}
    for jobs in ("1", "2"):
        out_dir = tmp_path / f"out{jobs}"
        rc, out, err = run_cli(capsys, "convert", root, sample_200, "-o", out_dir, "--jobs", jobs)
        assert rc == 0, err
        outs[jobs] = {name: (out_dir / name).read_bytes() for name in sorted(os.listdir(out_dir))}
        assert "3 of 3 series converted" in out
        assert _row(out, "ID12345_CT_S20214")[1] == "4"  # the new series, found first
        assert _row(out, "ID12345_CT_S20214-2")[1] == "200"  # sample_200: name made unique
    assert sorted(outs["1"]) == [SAMPLE_10_NAME, "ID12345_CT_S20214-2.dcbs", "ID12345_CT_S20214.dcbs"]
    assert outs["1"] == outs["2"]
    assert np.array_equal(dicube.load(tmp_path / "out2" / "ID12345_CT_S20214-2.dcbs").raw_image,
                          dicube.load_from_dicom_folder(sample_200).raw_image)


def _stderr_on_a_terminal(*args) -> bytes:
    """Run the console script with stderr on a pseudo-terminal; return what it wrote there."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    from cli_helpers import dicube_script

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    try:
        proc = subprocess.run([dicube_script(), *map(str, args)], stderr=slave,
                              stdout=subprocess.DEVNULL, timeout=300)
    finally:
        os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the terminal is closed and drained
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.returncode == 0, data
    return data


def test_progress_bar_only_on_a_terminal(sample_10, tmp_path):
    shown = _stderr_on_a_terminal("convert", sample_10, "-o", tmp_path / "a")
    # tqdm redraws at most every 0.1 s, so the final 100% may be skipped: check the start
    assert b"converting:   0%" in shown and b"/1 [" in shown and b"444_1_CT_S20214]" in shown, shown
    assert _stderr_on_a_terminal("convert", sample_10, "-o", tmp_path / "b", "--quiet") == b""


def test_convert_zstd_codec(sample_10, tmp_path, capsys):
    from dicube.storage.format import CODEC_ZSTD_PLANES
    from dicube.storage.reader import DcbsReader

    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", tmp_path, "--codec", "zstd")
    assert rc == 0, err
    with DcbsReader(tmp_path / SAMPLE_10_NAME) as r:
        assert r.frame_codec == CODEC_ZSTD_PLANES
    assert np.array_equal(dicube.load(tmp_path / SAMPLE_10_NAME).raw_image,
                          dicube.load_from_dicom_folder(sample_10).raw_image)


def test_convert_names_an_unreadable_file_once_for_all_its_series(sample_10, tmp_path):
    """Every series of a folder fails for a damaged file in it; the file is named once."""
    mixed = copy_series(sample_10, tmp_path / "mixed")
    for k, name in enumerate(sorted(os.listdir(mixed))[:2]):  # a second, 2-slice series
        ds = pydicom.dcmread(mixed / name)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{k}"
        ds.save_as(mixed / f"other_{k}.dcm")
    victim = mixed / "damaged.dcm"  # its series cannot be told: it may belong to either
    victim.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI" + b"\xff" * 40)
    proc = run_script("convert", mixed, "-o", tmp_path / "out")
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("dicube convert: error: ")]
    assert sum(str(victim) in e for e in errors) == 1, proc.stderr
    assert sum("not converted: 1 file under it" in e for e in errors) == 2, proc.stderr
