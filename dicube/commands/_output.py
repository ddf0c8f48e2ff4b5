"""Output helpers shared by the subcommands: error lines, tables, sizes, progress, logging.

Conventions: results go to stdout; errors, warnings, progress bars and log messages go
to stderr, so that ``dicube info --json FILE > out.json`` stays machine-readable.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from typing import IO, Iterable, Iterator, Optional, Sequence

from ..exceptions import DicomCubeError

__all__ = ["human_bytes", "ratio", "error_message", "print_error", "print_warning",
           "print_table", "progress", "configure_logging", "cpu_count", "plural",
           "collect_warnings", "WarningLog", "pass_on"]


def plural(n: int, word: str, many: Optional[str] = None) -> str:
    """``'1 frame'``, ``'3 frames'`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


# ----------------------------------------------------------------- warnings of libraries
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _warned_file(depth: int = 2, limit: int = 80) -> Optional[str]:
    """The file a warning is about: the nearest frame on the caller's stack reading one
    (pydicom's ``dcmread(fp)`` given a name; in dicube, a ``path`` argument or a parsed
    file ``pf`` with ``.path``). pydicom's warnings (e.g. an invalid value) do not name the
    file being read; its reader's frame does."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    for _ in range(limit):
        if frame is None:
            return None
        local = frame.f_locals
        if frame.f_code.co_name == "dcmread":  # pydicom reading a file by name
            fp = local.get("fp")
            fp = getattr(fp, "name", fp)  # the file it opened
            if isinstance(fp, (str, os.PathLike)):
                return os.fspath(fp)
        if frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            path = local.get("path")
            if path is None and hasattr(local.get("pf"), "path"):
                path = local["pf"].path
            if isinstance(path, (str, os.PathLike)):
                return os.fspath(path)
        frame = frame.f_back
    return None


class WarningLog:
    """Warnings of the warnings module and of pydicom's logger, as ``'<file>: <message>'``
    lines, each once (pydicom both logs and warns the same message). ``emit`` (when given)
    receives each new line at once; otherwise they collect in ``lines``."""

    def __init__(self, default_file: Optional[str] = None, emit=None, quiet: bool = False):
        self.default_file = default_file
        self.emit = emit
        self.quiet = quiet
        self.lines: list[str] = []
        self._seen: set = set()
        self._lock = threading.Lock()

    def add(self, message: str, file: Optional[str] = None, named: bool = False) -> None:
        """One warning about ``file`` (default: ``default_file``); ``named``: the message
        names its file already."""
        text = " ".join(str(message).split())  # one line
        file = None if named else file or self.default_file
        if file and file not in text:
            text = f"{file}: {text}"
        with self._lock:
            if self.quiet or text in self._seen:
                return
            self._seen.add(text)
        if self.emit is not None:
            self.emit(text)
        else:
            self.lines.append(text)


_logs: list = []  # the active WarningLogs, innermost last


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    if _logs:
        _logs[-1].add(str(message), _warned_file())


class _LogHandler(logging.Handler):
    """pydicom's logger messages (WARNING and above) into the active WarningLog."""

    def emit(self, record: logging.LogRecord) -> None:
        if _logs:
            _logs[-1].add(record.getMessage(), _warned_file(depth=2))


_LIBRARY_LOGGERS = ("pydicom",)


def pass_on(text: str, command: str) -> None:
    """A warning line collected elsewhere (e.g. in a worker process) to the active
    WarningLog, which drops repeats (and everything when quiet); printed when none is."""
    if _logs:
        _logs[-1].add(text, named=True)
    else:
        print_warning(command, text)


@contextlib.contextmanager
def collect_warnings(log: WarningLog) -> Iterator[WarningLog]:
    """Route Python warnings and pydicom's log messages into ``log`` for the duration
    (main thread only: :func:`warnings.catch_warnings` is process-wide). Every warning is
    passed on, once per file and message, instead of once per source line."""
    handler = _LogHandler(logging.WARNING)
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    with warnings.catch_warnings():
        if not sys.warnoptions:  # -W / PYTHONWARNINGS win
            warnings.simplefilter("always")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category)
        warnings.showwarning = _showwarning
        _logs.append(log)
        for lg in loggers:
            lg.addHandler(handler)
        try:
            yield log
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
            _logs.remove(log)
