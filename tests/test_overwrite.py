"""Existing outputs: ``dicube convert`` skips them unless ``--overwrite`` (exit 0), and
``dicube.save(..., overwrite=False)`` refuses to replace a file (the default replaces it)."""
from __future__ import annotations

import os

import pytest
from cli_helpers import run_cli
from helpers_dicom import copy_series

import dicube
from dicube.exceptions import WriteError

SAMPLE_10_NAME = "444_1_CT_S20214.dcbs"


def _result(out: str, name: str) -> str:
    row = [ln for ln in out.splitlines() if ln.startswith(name + " ")]
    assert len(row) == 1, out
    return row[0].split("  ")[-1].strip()


def test_rerun_skips_existing_outputs(sample_10, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert run_cli(capsys, "convert", sample_10, "-o", out_dir, "-q")[0] == 0
    target = out_dir / SAMPLE_10_NAME
    before = (target.read_bytes(), target.stat().st_mtime_ns)

    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir)
    assert rc == 0 and err == "", err
    assert _result(out, SAMPLE_10_NAME[:-5]) == "exists, skipped"
    assert "0 of 1 series converted" in out and "1 skipped" in out and "0 failed" in out
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before

    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir, "-q")
    assert (rc, out, err) == (0, "", "")

    rc, out, err = run_cli(capsys, "convert", sample_10, "-o", out_dir, "--overwrite")
    assert rc == 0, err
    assert _result(out, SAMPLE_10_NAME[:-5]) == "ok" and "1 of 1 series converted" in out
    assert target.stat().st_mtime_ns != before[1]


def test_rerun_converts_only_what_is_new(sample_10, tmp_path, capsys):
    first = copy_series(sample_10, tmp_path / "a")
    out_dir = tmp_path / "out"
    assert run_cli(capsys, "convert", first, "-o", out_dir, "-q")[0] == 0
    # a second series (new UIDs) next to the first: only it is written on the re-run
    import pydicom
    from pydicom.uid import generate_uid

    second = tmp_path / "b"
    second.mkdir()
    uid = generate_uid()
    for p in sorted(first.iterdir()):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, 7
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(second / p.name)
    rc, out, err = run_cli(capsys, "convert", first, second, "-o", out_dir)
    assert rc == 0, err
    assert _result(out, SAMPLE_10_NAME[:-5]) == "exists, skipped"
    assert _result(out, "444_1_CT_S7") == "ok"
    assert "1 of 2 series converted" in out and "1 skipped" in out
    assert sorted(os.listdir(out_dir)) == ["444_1_CT_S20214.dcbs", "444_1_CT_S7.dcbs"]


def test_save_overwrite_flag(sample_10, tmp_path):
    img = dicube.load_from_dicom_folder(sample_10)
    path = tmp_path / "s.dcbs"
    size = dicube.save(img, path, overwrite=False)  # new file: written
    assert path.stat().st_size == size
    path.write_bytes(b"keep me")
    with pytest.raises(WriteError) as err:
        dicube.save(img, path, overwrite=False)
    assert err.value.path is not None and str(path) in str(err.value)
    assert "already exists" in str(err.value)
    assert path.read_bytes() == b"keep me"
    dangling = tmp_path / "link.dcbs"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(WriteError):
        dicube.save(img, dangling, overwrite=False)
    assert not (tmp_path / "nowhere").exists()
    dicube.save(img, path)  # the default replaces, as before
    assert dicube.load_meta(path) is not None
