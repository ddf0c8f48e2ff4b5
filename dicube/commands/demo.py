"""``dicube demo [FOLDER]``: the main job (see :mod:`dicube.demo`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="round-trip a DICOM series through dicube and report size and speed")
    p.add_argument("folder", nargs="?",
                   help="DICOM series folder (default: a series built from pydicom's bundled files)")
    p.set_defaults(func=lambda args: _run(args.folder))


def _run(folder) -> int:
    from ..demo import run_demo

    return run_demo(folder)
