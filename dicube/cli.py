"""The ``dicube`` command line."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="dicube", description="Lossless single-file storage of DICOM series.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="round-trip a DICOM series through dicube and report size and speed")
    demo.add_argument("folder", nargs="?", help="DICOM series folder (default: a series built from pydicom's bundled files)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.folder)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
