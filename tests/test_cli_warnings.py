"""Library warnings in the command line: one line each, naming the file; ``-q`` silences them.

pydicom's bundled ``rtdose_1frame.dcm`` holds an invalid UI value and ``SC_rgb_jpeg.dcm`` a
wrong VR flag (pydicom warns on reading each); dicube 0.3.0's file warns when loaded.
"""
from __future__ import annotations

import logging
import shutil
import warnings

import pytest
from cli_helpers import run_cli, run_script
from pydicom.data import get_testdata_file

LEAKS = ("UserWarning", "warn_and_log", "valuerep.py", "filereader.py", "image = load(")


@pytest.fixture
def bad_uid(tmp_path):
    """A folder with one file whose UI value pydicom warns about."""
    folder = tmp_path / "rtdose"
    folder.mkdir()
    shutil.copy(get_testdata_file("rtdose_1frame.dcm"), folder)
    return folder


@pytest.fixture
def two_warning_files(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("rtdose_1frame.dcm", "SC_rgb_jpeg.dcm"):
        shutil.copy(get_testdata_file(name), folder)
    return folder


def _warning_lines(err: str, command: str) -> list[str]:
    assert not any(leak in err for leak in LEAKS), err
    lines = err.splitlines()
    assert all(ln.startswith(f"dicube {command}: warning: ") for ln in lines), err
    return lines


def test_convert_names_the_file_once(bad_uid, tmp_path):
    p = run_script("convert", bad_uid, "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    lines = _warning_lines(p.stderr, "convert")
    assert lines == [f"dicube convert: warning: {bad_uid / 'rtdose_1frame.dcm'}: Invalid value "
                     "for VR UI: '1.2.123.456.78.9.0123.4567.89012345678901'. Please see "
                     "<https://dicom.nema.org/medical/dicom/current/output/html/part05.html"
                     "#table_6.2-1> for allowed values for each VR."]
    p = run_script("convert", bad_uid, "-o", tmp_path / "out2", "-q")
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""


def test_convert_in_worker_processes(two_warning_files, tmp_path):
    p = run_script("convert", two_warning_files, "-o", tmp_path / "out", "--jobs", "2")
    assert p.returncode == 0, p.stderr
    lines = _warning_lines(p.stderr, "convert")
    assert len(lines) == 2, p.stderr  # each once, though discovery and the worker both read
    assert any(f"{two_warning_files / 'rtdose_1frame.dcm'}: Invalid value for VR UI" in ln
               for ln in lines)
    assert any(f"{two_warning_files / 'SC_rgb_jpeg.dcm'}: Expected explicit VR, but found "
               "implicit VR" in ln for ln in lines)
    p = run_script("convert", two_warning_files, "-o", tmp_path / "out2", "-j", "2", "-q")
    assert p.returncode == 0 and p.stderr == ""


def test_preview_warnings_and_quiet(bad_uid, tmp_path):
    p = run_script("mosaic", bad_uid, tmp_path / "m.webp")
    assert p.returncode == 0, p.stderr
    assert len(_warning_lines(p.stderr, "mosaic")) == 1
    assert str(bad_uid / "rtdose_1frame.dcm") in p.stderr
    # '-q' is --quality there (the options of dicom-series-preview): --quiet or dicube -q
    for args in (("mosaic", bad_uid, tmp_path / "m.webp", "--quiet"),
                 ("-q", "mosaic", bad_uid, tmp_path / "m.webp")):
        p = run_script(*args)
        assert p.returncode == 0 and p.stderr == "", p.stderr


def test_legacy_file_warnings(legacy_dcbs, tmp_path):
    p = run_script("export", legacy_dcbs, tmp_path / "out")
    assert p.returncode == 0, p.stderr
    lines = _warning_lines(p.stderr, "export")
    assert len(lines) == 4, p.stderr
    assert all(ln.startswith(f"dicube export: warning: {legacy_dcbs}: ") for ln in lines)
    assert "version-1 file (dicube 0.3.0): no checksums" in lines[0]
    p = run_script("export", legacy_dcbs, tmp_path / "out", "--overwrite", "-q")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = run_script("verify", legacy_dcbs, "-q")
    assert p.returncode == 0 and p.stderr == "" and "warning" not in p.stdout, p.stdout


def test_in_process_as_well(legacy_dcbs, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "export", legacy_dcbs, "--nifti", tmp_path / "x.nii.gz")
    assert rc == 0
    assert len(_warning_lines(err, "export")) == 4


def test_pydicom_logger_and_warning_give_one_line(request):
    """pydicom logs and warns the same message (warn_and_log): one line; a message only
    logged is passed on too."""
    from pydicom.misc import warn_and_log

    from dicube.commands._output import WarningLog, collect_warnings

    pydicom_log = logging.getLogger("pydicom")
    request.addfinalizer(lambda level=pydicom_log.level: pydicom_log.setLevel(level))
    pydicom_log.setLevel(logging.WARNING)  # test_dicom_json.py raises it for the session
    log = WarningLog("some.dcm")
    with collect_warnings(log):
        warn_and_log("both logged and warned")
        logging.getLogger("pydicom").warning("only logged")
        warnings.warn("some.dcm: names its file already")
    assert log.lines == ["some.dcm: both logged and warned", "some.dcm: only logged",
                         "some.dcm: names its file already"]
    quiet = WarningLog("some.dcm", quiet=True)
    with collect_warnings(quiet):
        warn_and_log("dropped")
    assert quiet.lines == []
