"""Output helpers shared by the subcommands: error lines, tables, sizes, progress, logging.

Conventions: results go to stdout; errors, warnings, progress bars and log messages go
to stderr, so that ``dicube info --json FILE > out.json`` stays machine-readable.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import IO, Iterable, Optional, Sequence

from ..exceptions import DicomCubeError

__all__ = ["human_bytes", "ratio", "error_message", "print_error", "print_warning",
           "print_table", "progress", "configure_logging", "cpu_count"]


def human_bytes(n: Optional[float]) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``None`` -> ``'-'``."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def ratio(before: Optional[float], after: Optional[float]) -> str:
    """``before / after`` as ``'3.21x'`` (``'-'`` when unknown)."""
    if not before or not after:
        return "-"
    return f"{before / after:.2f}x"


def error_message(exc: BaseException, path: "Optional[os.PathLike[str] | str]" = None) -> str:
    """``'<path>: <problem>'`` for any exception, naming ``path`` when the error does not."""
    if isinstance(exc, DicomCubeError):
        if exc.path is not None or path is None:
            return str(exc)
        return f"{os.fspath(path)}: {exc.reason}"
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else path
        text = exc.strerror or str(exc)
    else:
        where, text = path, f"{type(exc).__name__}: {exc}"
    return f"{os.fspath(where)}: {text}" if where is not None else text


def print_error(command: str, exc_or_message, path=None, file: Optional[IO[str]] = None) -> None:
    """One line ``dicube <command>: error: <path>: <problem>`` on stderr."""
    text = exc_or_message if isinstance(exc_or_message, str) else error_message(exc_or_message, path)
    if isinstance(exc_or_message, str) and path is not None:
        text = f"{os.fspath(path)}: {text}"
    print(f"dicube {command}: error: {text}", file=file or sys.stderr, flush=True)


def print_warning(command: str, message: str, file: Optional[IO[str]] = None) -> None:
    """One line ``dicube <command>: warning: <message>`` on stderr."""
    print(f"dicube {command}: warning: {message}", file=file or sys.stderr, flush=True)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str],
                file: Optional[IO[str]] = None, align: Optional[str] = None) -> None:
    """Print a plain-text table; ``align`` has one ``'l'``/``'r'`` per column (default:
    first column left, the others right)."""
    out = file or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(row, widths, align)).rstrip()

    print(fmt(cells[0]), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells[1:]:
        print(fmt(r), file=out)


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
             desc: Optional[str] = None, unit: str = "it", quiet: bool = False):
    """A tqdm progress bar on stderr, shown only when stderr is a terminal and not ``quiet``."""
    from tqdm import tqdm

    disable = quiet or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                dynamic_ncols=True, leave=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each message (it may be replaced after the
    handler is installed, e.g. by a caller capturing output)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """Log dicube's messages to stderr: warnings by default, INFO with ``-v``, DEBUG with ``-vv``."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("dicube")
    if not any(getattr(h, "_dicube_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._dicube_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
