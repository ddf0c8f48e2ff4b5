"""The ``dicube`` command line: one subcommand per module in :mod:`dicube.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# Subcommand modules, in the order ``dicube --help`` lists them. Each defines
# ``register(subparsers)``, which adds its parser(s) and sets ``func`` (args -> exit code).
COMMANDS = ("demo", "convert", "info", "export", "verify", "preview")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicube",
                                     description="Lossless single-file storage of DICOM series.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dicube.commands.{name}").register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .exceptions import DicomCubeError

    try:
        return int(args.func(args) or 0)
    except DicomCubeError as exc:  # typed errors: one line, no traceback
        print(f"dicube {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `dicube info FILE | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"dicube {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - any other failure: one line, no traceback
        import os

        if os.environ.get("DICUBE_TRACEBACK"):
            raise
        from .commands._output import error_message

        first = (error_message(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"dicube {args.command}: error: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
