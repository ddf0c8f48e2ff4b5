"""The wheel's packaging (issue 16), fast parts: pyproject metadata, the licence step of
tools/build_wheel.sh on a crafted repaired wheel, and the scripts' shape. The slow proof
(build, auditwheel, a debootstrap root) is tools/check_wheel.sh, run by .ci/run."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def _wheel_licenses():
    spec = importlib.util.spec_from_file_location("wheel_licenses", TOOLS / "wheel_licenses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_metadata_complete():
    project = _project()
    assert project["license"] == {"text": "MIT"}
    classifiers = project["classifiers"]
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Topic :: Scientific/Engineering :: Medical Science Apps." in classifiers
    python = [c.rsplit(" :: ", 1)[1] for c in classifiers
              if c.startswith("Programming Language :: Python :: 3.")]
    assert python and min(python, key=lambda v: tuple(map(int, v.split(".")))) == \
        project["requires-python"].removeprefix(">=")
    assert all(u.startswith("https://") for u in project["urls"].values())
    extras = project["optional-dependencies"]
    assert {"test", "torch", "dist"} <= set(extras)
    assert any(r.startswith("auditwheel") for r in extras["dist"])


def _crafted_wheel(path: Path, sbom_packages: list[str]) -> Path:
    """A wheel laid out as auditwheel repairs it: dicube.libs/ with two libraries, an SBOM."""
    dist_info = "dicube-0.4.0.dist-info"
    files = {
        "dicube/__init__.py": b"",
        "dicube.libs/libopenjph-baa1bba1.so.0.9.0": b"\x7fELF openjph",
        "dicube.libs/libzstd-37412b7a.so.1.5.4": b"\x7fELF zstd",
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: dicube\nVersion: 0.4.0\n",
        f"{dist_info}/sboms/auditwheel.cdx.json": json.dumps({"components": [
            {"name": "dicube", "purl": "pkg:pypi/dicube@0.4.0"},
            *({"name": p, "purl": f"pkg:deb/debian/{p}@1"} for p in sbom_packages)]}).encode(),
    }
    wheel = path / "dicube-0.4.0-cp311-cp311-manylinux_2_34_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist_info}/RECORD", "".join(f"{n},sha256=x,{len(d)}\n" for n, d in files.items())
                    + f"{dist_info}/RECORD,,\n")
    return wheel


def _docs(tmp_path: Path, packages: list[str]) -> Path:
    for pkg in packages:
        (tmp_path / "doc" / pkg).mkdir(parents=True)
        (tmp_path / "doc" / pkg / "copyright").write_text(f"Licence of {pkg}\n")
    return tmp_path / "doc"


def test_licenses_of_grafted_libraries_added(tmp_path, monkeypatch):
    mod = _wheel_licenses()
    packages = ["libopenjph0.9", "libzstd1"]
    monkeypatch.setattr(mod, "DOC", _docs(tmp_path, packages))
    wheel = _crafted_wheel(tmp_path, packages)
    added = mod.add_licenses(wheel)
    assert added == [f"dicube-0.4.0.dist-info/licenses/dicube.libs/{p}.copyright" for p in packages]
    with zipfile.ZipFile(wheel) as zf:
        record = zf.read("dicube-0.4.0.dist-info/RECORD").decode().splitlines()
        assert record[-1] == "dicube-0.4.0.dist-info/RECORD,,"
        for name in added:
            data = zf.read(name)
            assert data.startswith(b"Licence of lib")
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert f"{name},sha256={digest},{len(data)}" in record
        assert zf.read("dicube.libs/libzstd-37412b7a.so.1.5.4") == b"\x7fELF zstd"
    assert mod.add_licenses(wheel) == added  # again: no duplicate RECORD lines
    with zipfile.ZipFile(wheel) as zf:
        assert len(zf.read("dicube-0.4.0.dist-info/RECORD").decode().splitlines()) == len(record)
        assert len(zf.namelist()) == len(set(zf.namelist()))


def test_grafted_library_without_licence_fails(tmp_path, monkeypatch):
    mod = _wheel_licenses()
    monkeypatch.setattr(mod, "DOC", _docs(tmp_path, ["libopenjph0.9"]))
    with pytest.raises(SystemExit, match="2 grafted libraries"):
        mod.add_licenses(_crafted_wheel(tmp_path, ["libopenjph0.9"]))
    wheel = _crafted_wheel(tmp_path, ["libopenjph0.9", "libzstd1"])
    with pytest.raises(SystemExit, match="no licence text for libzstd1"):
        mod.add_licenses(wheel)


@pytest.mark.parametrize("script", ["build_wheel.sh", "check_wheel.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(TOOLS / script)], check=True)


def test_check_wheel_builds_a_bare_root_and_unmounts():
    text = (TOOLS / "check_wheel.sh").read_text()
    assert "--variant=minbase --include=python3,python3-venv,python3-pip" in text
    assert "--purge" in text and "libzstd1" in text
    assert "trap cleanup EXIT" in text and 'umount "$m"' in text
    assert "dicube demo" in text and "wheel_smoke.py" in text and "ldd" in text


def test_ci_runs_the_wheel_check_after_the_tests():
    lines = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()]
    tests = lines.index("python3 -m pytest -q")
    assert any("tools/check_wheel.sh" in l for l in lines[tests + 1:])
