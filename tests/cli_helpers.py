"""Helpers of the command-line tests: run ``dicube`` in-process or as the installed script."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dicube.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``dicube ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([os.fspath(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def dicube_script() -> str:
    """The installed ``dicube`` console script."""
    found = shutil.which("dicube") or os.fspath(Path(sys.executable).parent / "dicube")
    assert os.path.exists(found), "the dicube console script is not installed"
    return found


def run_script(*args, cwd=None) -> subprocess.CompletedProcess:
    """``dicube ARGS`` through the console script in a child process."""
    return subprocess.run([dicube_script(), *map(os.fspath, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def make_dcbs(folder, path) -> Path:
    """Convert a DICOM series folder to ``path`` with the library (not the CLI)."""
    import dicube

    dicube.save(dicube.load_from_dicom_folder(folder), path)
    return Path(path)


def flip_byte(path, offset: int, mask: int = 1) -> None:
    """Invert the bits ``mask`` (default: the lowest) of the byte at ``offset`` of a file."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ mask]))


def flip_frame_byte(path, frame: int, mask: int = 1) -> None:
    """Invert bits ``mask`` of the middle byte of frame ``frame`` of a .dcbs file."""
    from dicube.storage.reader import DcbsReader

    with DcbsReader(path) as r:
        rec = r.layout.index[frame]
        pos = r.layout.header.frames_offset + int(rec["offset"]) + int(rec["length"]) // 2
    flip_byte(path, pos, mask)
