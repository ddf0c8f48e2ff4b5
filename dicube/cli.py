"""The ``dicube`` command line: one subcommand per module in :mod:`dicube.commands`."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
from typing import Dict, Iterator, List, Optional

# Subcommand modules, in the order ``dicube --help`` lists them. Each defines
# ``register(subparsers)``, which adds its parser(s) and sets ``func`` (args -> exit code).
COMMANDS = ("demo", "convert", "info", "export", "verify", "preview")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicube",
                                     description="Lossless single-file storage of DICOM series.")
    parser.add_argument("--connect-timeout", type=_seconds, metavar="S",
                        help="seconds to connect to a remote source (default 10; "
                             "env DICUBE_CONNECT_TIMEOUT)")
    parser.add_argument("--read-timeout", type=_seconds, metavar="S",
                        help="seconds a remote read may wait for its next bytes (default 30; "
                             "env DICUBE_READ_TIMEOUT)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dicube.commands.{name}").register(sub)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


@contextlib.contextmanager
def _environment(values: Dict[str, Optional[float]]) -> Iterator[None]:
    """The timeout options as the environment variables the remote sources read, for the
    duration of one command (restored after, for callers running several in one process)."""
    saved = {k: os.environ.get(k) for k, v in values.items() if v is not None}
    os.environ.update({k: repr(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .exceptions import DicomCubeError

    try:
        with _environment({"DICUBE_CONNECT_TIMEOUT": args.connect_timeout,
                           "DICUBE_READ_TIMEOUT": args.read_timeout}):
            return int(args.func(args) or 0)
    except DicomCubeError as exc:  # typed errors: one line, no traceback
        print(f"dicube {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `dicube info FILE | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"dicube {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - any other failure: one line, no traceback
        if os.environ.get("DICUBE_TRACEBACK"):
            raise
        from .commands._output import error_message

        first = (error_message(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"dicube {args.command}: error: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
