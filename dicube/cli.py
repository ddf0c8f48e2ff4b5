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
COMMANDS = ("demo", "convert", "info", "export", "verify", "preview", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicube",
                                     description="Lossless single-file storage of DICOM series.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the dicube and OpenJPH versions and exit")
    parser.add_argument("-q", "--quiet", action="store_true", dest="quiet_all",
                        help="no warnings (for every command; most also take -q/--quiet)")
    parser.add_argument("--connect-timeout", type=_seconds, metavar="S",
                        help="seconds to connect to a remote source (default 10; "
                             "env DICUBE_CONNECT_TIMEOUT)")
    parser.add_argument("--read-timeout", type=_seconds, metavar="S",
                        help="seconds a remote read may wait for its next bytes (default 30; "
                             "env DICUBE_READ_TIMEOUT)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dicube.commands.{name}").register(sub)
    for p in sub.choices.values():  # -q/--quiet everywhere ('-q' is --quality in previews)
        taken = {o for a in p._actions for o in a.option_strings}
        if "--quiet" not in taken:
            flags = [f for f in ("-q", "--quiet") if f not in taken]
            p.add_argument(*flags, action="store_true", dest="quiet", help="no warnings")
    return parser


class _Version(argparse.Action):
    """``dicube --version``: the package version and the OpenJPH the codec was built with
    (the extension is imported only when asked)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__

        print(f"dicube {__version__}" + _openjph_text())
        parser.exit()


def _openjph_text() -> str:
    try:
        from .codecs.jph import build_info

        info = build_info()
    except Exception as exc:  # noqa: BLE001 - the version must print without the extension
        return f" (codec extension not loadable: {type(exc).__name__}: {exc})"
    extra = f", TLM {'yes' if info.tlm else 'no'}: frames meet {info.transfer_syntax}"
    if info.runtime_version and not info.runtime_matches:
        extra += f", running {info.runtime_version}"
    return f" (OpenJPH {info.openjph_version}{extra})"


def _default_file(args) -> Optional[str]:
    """The input a command's warnings are about when the warning does not say (one file)."""
    for name in ("file", "source", "folder"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            return value
    for name in ("files", "sources"):
        value = getattr(args, name, None)
        if isinstance(value, list) and len(value) == 1:
            return value[0]
    return None


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
    from .commands._output import WarningLog, collect_warnings, print_warning
    from .exceptions import DicomCubeError

    args.quiet = bool(args.quiet_all or getattr(args, "quiet", False))
    # library warnings (pydicom's, dicube's own): one line each, naming the file; -q: none
    log = WarningLog(_default_file(args), quiet=args.quiet,
                     emit=lambda text: print_warning(args.command, text))
    try:
        with _environment({"DICUBE_CONNECT_TIMEOUT": args.connect_timeout,
                           "DICUBE_READ_TIMEOUT": args.read_timeout}), collect_warnings(log):
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
