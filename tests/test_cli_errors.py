"""Bad input to the command line: one ``dicube CMD: error:`` line, non-zero exit, never a
traceback (including failures outside dicube's own typed errors)."""
from __future__ import annotations

import pytest
from cli_helpers import make_dcbs, run_cli

from dicube.preview import mosaic
from dicube.exceptions import DicomCubeError


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("cli_err") / "s10.dcbs")


def _one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith(f"dicube {command}: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_unexpected_os_error_is_one_line(capsys, sample_10, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run_cli(capsys, "convert", sample_10, "-o", blocker / "sub", "-q")
    assert rc == 1
    assert str(blocker / "sub") in _one_error_line(err, "convert")


def test_convert_jobs_must_be_a_count(capsys, sample_10, tmp_path):
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit) as exc:
            run_cli(capsys, "convert", sample_10, "-o", tmp_path, "-j", bad)
        assert exc.value.code == 2
        assert "--jobs" in capsys.readouterr().err


def test_export_nifti_name_and_overwrite_hint(capsys, dcbs_10, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "export", dcbs_10, "--nifti", tmp_path / "x.png")
    assert exc.value.code == 2 and ".nii.gz" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    out = tmp_path / "dicom"
    assert run_cli(capsys, "export", dcbs_10, out)[0] == 0
    rc, _, err = run_cli(capsys, "export", dcbs_10, out)
    assert rc == 1 and "--overwrite" in _one_error_line(err, "export")


def test_preview_too_large_refused_before_reading(capsys, dcbs_10, tmp_path):
    out = tmp_path / "m.webp"
    rc, _, err = run_cli(capsys, "mosaic", dcbs_10, out, "-x", "100", "-w", "4000")
    assert rc == 1 and "400000x400000" in _one_error_line(err, "mosaic")
    rc, _, err = run_cli(capsys, "mosaic", dcbs_10, out, "-x", "8", "-w", "2100")
    assert rc == 1 and "16383" in _one_error_line(err, "mosaic")  # WebP's limit
    assert not out.exists()
    p = mosaic(dcbs_10, tmp_path / "m.jpg", tile_width=8, image_width=2100 // 8)
    assert p.image.size == (8 * 262, 8 * 262)
    with pytest.raises(DicomCubeError, match="per side"):
        mosaic(dcbs_10, tile_width=300, image_width=256)


def test_preview_folder_with_dangling_link(capsys, sample_10, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, f in enumerate(sorted(sample_10.iterdir())[:3]):
        (folder / f"{k}.dcm").symlink_to(f)
    (folder / "gone.dcm").symlink_to(tmp_path / "missing.dcm")
    rc, _, err = run_cli(capsys, "get-image", folder, tmp_path / "one.webp", "-p", "0.5")
    assert rc == 0, err
    assert (tmp_path / "one.webp").stat().st_size > 0


def test_convert_split_series_of_lone_files(capsys, sample_10, tmp_path):
    """One SeriesInstanceUID in two geometries, one file each in its own folder: the parts
    found under the root ("<uid>#1", "#2") are each read from their lone file."""
    import pydicom

    src = sorted(sample_10.iterdir())[0]
    root = tmp_path / "root"
    for name, iop in (("x", [1, 0, 0, 0, 1, 0]), ("y", [1, 0, 0, 0, 0, -1])):
        ds = pydicom.dcmread(src)
        ds.ImageOrientationPatient = iop
        (root / name).mkdir(parents=True)
        ds.save_as(root / name / "one.dcm")
    rc, out, err = run_cli(capsys, "convert", root, "-o", tmp_path / "out")
    assert rc == 0, err
    assert len(list((tmp_path / "out").glob("*.dcbs"))) == 2


def test_unreachable_s3_root_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    rc, _, err = run_cli(capsys, "mosaic", "38902e14*", tmp_path / "m.webp",
                         "--root", "s3://dicube-test-unreachable/series")
    assert rc == 1
    assert "s3://dicube-test-unreachable/series: remote read failed" in _one_error_line(err, "mosaic")
