"""Add the licence texts of the libraries auditwheel grafted into a wheel.

    python tools/wheel_licenses.py dist/dicube-<v>-<tag>.whl

auditwheel copies the shared libraries into ``dicube.libs/`` and lists the Debian packages
they came from in ``<dist-info>/sboms/auditwheel.cdx.json``. For each such package this
copies its Debian copyright file (``/usr/share/doc/<pkg>/copyright``) into
``<dist-info>/licenses/dicube.libs/<pkg>.copyright`` and rewrites RECORD; the wheel is
replaced in place. Fails if a grafted library has no licence text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path

DOC = Path("/usr/share/doc")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def grafted_packages(zf: zipfile.ZipFile, dist_info: str) -> list[str]:
    """Debian package names of the grafted libraries, from auditwheel's SBOM."""
    sbom = f"{dist_info}/sboms/auditwheel.cdx.json"
    if sbom not in zf.namelist():
        raise SystemExit(f"{sbom} missing: use auditwheel >= 6.4, which records what it grafts")
    components = json.loads(zf.read(sbom))["components"]
    return [c["name"] for c in components if c.get("purl", "").startswith("pkg:deb/")]


def add_licenses(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        libs = [n for n in names if n.split("/")[0].endswith(".libs") and not n.endswith("/")]
        packages = grafted_packages(zf, dist_info)
        if len(packages) != len(libs):
            raise SystemExit(f"{wheel.name}: {len(libs)} grafted libraries but SBOM names {packages}")
        extra = {}
        for pkg in packages:
            src = DOC / pkg / "copyright"
            if not src.is_file():
                raise SystemExit(f"no licence text for {pkg}: {src} missing")
            extra[f"{dist_info}/licenses/dicube.libs/{pkg}.copyright"] = src.read_bytes()
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    record = f"{dist_info}/RECORD"
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        lines = []
        for info, data in entries:
            if info.filename == record:
                lines = [l for l in data.decode().splitlines()
                         if l and not l.startswith((record + ",", *extra))]
                continue
            if info.filename not in extra:  # replaced below when run again
                out.writestr(info, data)
        for name, data in extra.items():
            out.writestr(name, data)
            lines.append(_record_line(name, data))
        out.writestr(record, "\n".join([*lines, f"{record},,"]) + "\n")
    tmp.replace(wheel)
    return sorted(extra)


if __name__ == "__main__":
    for name in add_licenses(Path(sys.argv[1])):
        print("licence:", name)
