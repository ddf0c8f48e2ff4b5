"""What a new user meets first: setup, --version, the README's synopses, the demo's proof,
and small things (meta.display, dir(dicube), plurals, the demo's series hint)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from cli_helpers import run_cli, run_script
from pydicom.data import get_testdata_file

import dicube

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


# --------------------------------------------------------------------------- setup
def _stubbed(tmp_path) -> tuple[dict, Path]:
    """An environment in which .ci/setup's commands only record their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(parents=True)
    for name in ("python3", "dpkg", "apt-get", "sudo"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _setup_calls(tmp_path, *args, script=".ci/setup", **env) -> list[str]:
    environ, log = _stubbed(tmp_path)
    environ.update(env)
    subprocess.run(["bash", str(REPO / script), *args], env=environ, check=True,
                   capture_output=True, timeout=60)
    return [ln for ln in log.read_text().splitlines() if ln.startswith("python3")]


def test_setup_installs_torch_only_for_the_tests(tmp_path):
    plain = _setup_calls(tmp_path)
    assert plain[-1] == "python3 -m pip install -q --no-build-isolation -e ."
    assert not any("torch" in c or "[test" in c for c in plain)
    for calls in (_setup_calls(tmp_path / "a", "--test"),
                  _setup_calls(tmp_path / "b", DICUBE_SETUP_TEST="1")):
        assert calls[-1] == ('python3 -m pip install -q --no-build-isolation -e .[test,torch,serve,monai] '
                             'torch==2.13.0')
    # CI installs everything the tests need, torch included, then runs the README's command
    ci = _setup_calls(tmp_path / "c", script=".ci/run", DICUBE_CI_WHEEL="0")
    assert "torch==2.13.0" in ci[-2] and ci[-1] == "python3 -m pytest -q"
    bad = subprocess.run(["bash", str(REPO / ".ci/setup"), "--bogus"], capture_output=True,
                         text=True, env=_stubbed(tmp_path / "d")[0])
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_setup_installs_test_tools_only_for_the_tests(tmp_path):
    """Without --test only the build's Debian packages are installed (no dcmtk, Orthanc...)."""
    def apt(sub, *args):
        environ, log = _stubbed(tmp_path / sub)
        (tmp_path / sub / "bin" / "dpkg").write_text("#!/bin/sh\nexit 1\n")  # nothing installed
        subprocess.run(["bash", str(REPO / ".ci/setup"), *args], env=environ, check=True,
                       capture_output=True, timeout=60)
        return [ln for ln in log.read_text().splitlines() if " install " in ln and "apt-get" in ln][0]

    plain, full = apt("a"), apt("b", "--test")
    assert "libopenjph-dev" in plain and "libzstd-dev" in plain
    for tool in ("dcmtk", "orthanc", "nginx", "dicom3tools", "dcm2niix", "openjph-tools"):
        assert tool not in plain and tool in full, tool


def test_readme_first_run():
    first = re.findall(r"^    (bash \.ci/setup.*)$", README, re.M)
    assert first[:2] == ["bash .ci/setup && dicube demo [DICOM_FOLDER]",
                         "bash .ci/setup --test && python3 -m pytest -q"]
    for needed in ("Debian 12 or later", "sudo", "libopenjph-dev", "libzstd-dev",
                   "pkg-config", "pip install .", "DICUBE_TESTDATA", "CPU wheel"):
        assert needed in README, needed
    synopsis = re.search(r"^    dicube convert .*$", README, re.M).group(0)
    assert "--codec htj2k|zstd" in synopsis


def test_version(capsys):
    p = run_script("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"dicube {dicube.__version__} (OpenJPH ")
    from dicube.codecs.jph import OPENJPH_VERSION

    assert OPENJPH_VERSION in p.stdout


def test_convert_help_shows_codec(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "convert", "--help")
    assert "--codec {htj2k,zstd}" in capsys.readouterr().out


# ---------------------------------------------------------------------------- demo
def _printed_paths(out: str) -> list[str]:
    return re.findall(r"(/[^\s:,()]+)", out)


def test_demo_default_prints_no_removed_path(capsys):
    rc, out, err = run_cli(capsys, "demo")
    assert rc == 0, err
    assert "24 byte-identical, 24 with every element and pixel equal" in out
    assert "round trip bit-exact" in out
    assert all(os.path.exists(p) for p in _printed_paths(out)), out
    assert "dicube-demo-" not in out


def test_demo_keeps_output(sample_10, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "demo", sample_10, "-o", tmp_path / "kept")
    assert rc == 0, err
    assert "compared with the 10 source files: 10 byte-identical" in out
    assert f"files kept in {tmp_path / 'kept'}" in out
    assert (tmp_path / "kept" / "series.dcbs").is_file()
    kept = (tmp_path / "kept" / "dicom").iterdir()
    assert sorted(p.name for p in kept if not p.name.startswith(".")) == \
        sorted(p.name for p in sample_10.iterdir())
    rc, out, err = run_cli(capsys, "demo", "-o", tmp_path / "built")
    assert rc == 0 and len(list((tmp_path / "built" / "source").iterdir())) == 24
    assert all(os.path.exists(p) for p in _printed_paths(out)), out


def test_demo_lossy_source_is_not_called_bit_exact(tmp_path, capsys):
    folder = tmp_path / "jpeg"
    folder.mkdir()
    shutil.copy(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"), folder)
    rc, out, err = run_cli(capsys, "demo", folder)
    assert "bit-exact" not in out
    assert "lossy-compressed (JPEG baseline)" in out, out + err


def test_compare_files_finds_element_and_pixel_differences(sample_10, tmp_path):
    from dicube.demo import compare_files

    img = dicube.load_from_dicom_folder(sample_10)
    exported = dicube.save_to_dicom_folder(img, tmp_path / "out")
    sources = sorted(str(p) for p in sample_10.iterdir())
    found = compare_files(sources, exported)
    assert (found["identical"], found["equal"], found["differences"]) == (10, 10, [])
    ds = pydicom.dcmread(exported[3])
    ds.PatientName = "Someone^Else"
    arr = ds.pixel_array.copy()
    arr[5, 7] += 1
    ds.PixelData = arr.tobytes()
    ds.save_as(exported[3])
    found = compare_files(sources, exported)
    assert found["identical"] == found["equal"] == 9
    assert len(found["differences"]) == 2, found["differences"]
    assert any("PatientName (0010,0010)" in d for d in found["differences"])
    assert any("pixels: 1 samples differ (up to 1)" in d for d in found["differences"])


def test_demo_several_series_hint(tmp_path, capsys):
    folder = tmp_path / "multi"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), folder)
    rc, out, err = run_cli(capsys, "demo", folder)
    assert rc == 1 and "series_uid=" not in err and "--series-uid UID" in err
    uid = str(pydicom.dcmread(folder / "MR_small.dcm").SeriesInstanceUID)
    rc, out, err = run_cli(capsys, "demo", folder, "--series-uid", uid)
    assert rc == 0, err
    assert "compared with the 1 source file: 1 byte-identical" in out


# ---------------------------------------------------------------------------- small
def test_meta_display_prints_once(sample_10, capsys):
    meta = dicube.load_from_dicom_folder(sample_10).dicom_meta
    capsys.readouterr()
    assert meta.display() is None
    printed = capsys.readouterr().out
    assert printed == meta.table() + "\n" and "PatientName" in printed


def test_dir_lists_the_public_api():
    names = dir(dicube)
    for name in ("load", "save", "load_meta", "load_from_dicom_folder", "save_to_dicom_folder",
                 "save_to_nifti", "DicomMeta", "DcbsReader", "DcbStreamingReader",
                 "DicomCubeError", "__version__"):
        assert name in names, name
    assert all(hasattr(dicube, n) for n in names)


def test_plurals(tmp_path, capsys):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), one)
    assert run_cli(capsys, "convert", one, "-o", tmp_path / "out", "-q")[0] == 0
    (dcbs,) = (tmp_path / "out").iterdir()
    rc, out, err = run_cli(capsys, "verify", dcbs)
    assert rc == 0 and "1 frame decoded" in out, out
    rc, out, err = run_cli(capsys, "export", dcbs, tmp_path / "back")
    assert rc == 0 and f"{tmp_path / 'back'}: 1 DICOM file, " in out, out
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "README.txt").write_text("not DICOM")
    rc, out, err = run_cli(capsys, "convert", junk, "-o", tmp_path / "out2", "-q")
    assert rc == 1 and "(1 non-DICOM file)" in err, err
