"""Shared benchmark machinery: test data, the machine, one interleaving runner, one table printer.

Contenders are timed interleaved (A, B, C, A, B, C, ...) in one process tree, so load from
other work on a shared machine falls on all of them alike; results are reported as the
median with min-max, and a ratio as the ratio of medians with the min-max of the ratios of
the measurements taken in the same round.
"""
from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
Samples = Dict[str, List[float]]


def testdata_root() -> Path:
    return Path(os.environ.get("DICUBE_TESTDATA", REPO.parent / "shared" / "dicube-testdata"))


def default_series(quick: bool = False) -> Path:
    """The shared CT series: sample_200, or sample_10 for --quick smoke runs."""
    return testdata_root() / "dicom" / ("sample_10" if quick else "sample_200")


def series_arg(ap, env: str = "DICUBE_BENCH_SERIES") -> None:
    """The optional series folder argument and --quick."""
    ap.add_argument("folder", nargs="?", default=os.environ.get(env),
                    help="DICOM series folder (default: the shared sample_200 CT)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: sample_10 and a few repeats (seconds, not minutes)")


def series_of(args) -> Path:
    folder = Path(args.folder) if args.folder else default_series(args.quick)
    if not folder.is_dir():
        sys.exit(f"series folder not found: {folder} (pass one as the first argument)")
    return folder


# --- the machine ---------------------------------------------------------------------------

def openjph_build() -> Tuple[str, str]:
    """dicube's own OpenJPH: (version, details such as TLM and SIMD level), from
    dicube.codecs.jph.build_info() when this build has it, else from the extension's constants."""
    from dicube.codecs import jph

    try:
        b = jph.build_info()
        details = [f"TLM {'yes' if b.tlm else 'no'}"]
        if getattr(b, "runtime_version", None) and b.runtime_version != b.openjph_version:
            details.append(f"loaded library {b.runtime_version}")
        if getattr(b, "simd", None):
            details.append(f"SIMD {b.simd}")
        return str(b.openjph_version), ", ".join(details)
    except Exception:  # no build_info() yet, or an extension older than it
        pass
    version = getattr(jph, "OPENJPH_VERSION", None)
    if version is None:
        from dicube import _native

        version = getattr(_native, "openjph_version", "unknown")
    tlm = getattr(jph, "HAS_TLM", None)
    return str(version), "" if tlm is None else f"TLM {'yes' if tlm else 'no'}"


def tool_version(exe: str) -> str:
    """Version of an OpenJPH command-line tool: what `exe -v` prints, else the Debian package
    owning the binary, else "unknown"."""
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
        m = re.search(r"version\D{0,3}(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr, re.I)
        if m:
            return m.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    for path in dict.fromkeys([exe, os.path.realpath(exe)]):
        try:
            owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                                   timeout=10)
            pkg = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
            if pkg:
                ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                     capture_output=True, text=True, timeout=10).stdout.strip()
                if ver:
                    return f"{ver.split('-')[0]} (Debian {pkg} {ver})"
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"


def evict(paths) -> None:
    """Drop the files' pages from the page cache (theirs only: other processes' files stay)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def print_machine(note: str = "") -> None:
    """The machine line and the load average before the run (print_load_after() ends it)."""
    import dicube

    version, details = openjph_build()
    details = f" ({details})" if details else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} cores usable of {os.cpu_count()}, {platform.machine()}, "
          f"Python {platform.python_version()}, dicube {getattr(dicube, '__version__', '?')}, "
          f"OpenJPH {version}{details}{note}")
    print(f"load average before: {load_average()}")


def print_load_after() -> None:
    print(f"load average after: {load_average()}")


# --- the interleaving runner ---------------------------------------------------------------

def _timed(fn: Callable, arg, before: Optional[Callable]) -> float:
    if before is not None:
        before()
    t = time.perf_counter()
    fn() if arg is _NO_ARG else fn(arg)
    return time.perf_counter() - t


def _timed_in_child(fn: Callable, arg, before: Optional[Callable]) -> float:
    """Time fn in a forked child: a fresh process state (heap, caches of the library) that
    inherits the parent's imports. The time is taken inside the child."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            msg = repr(_timed(fn, arg, before))
        except BaseException as exc:  # report, never return into the parent's code
            msg, code = f"error {type(exc).__name__}: {exc}", 1
        os.write(w, msg.encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0 or msg.startswith("error"):
        raise RuntimeError(f"benchmark child failed (status {status}): {msg}")
    return float(msg)


_NO_ARG = object()


def interleave(contenders: Mapping[str, Callable], repeat: int = 5, *, warmup: int = 1,
               fresh: bool = False, before: Optional[Mapping[str, Callable]] = None,
               args: Optional[Sequence] = None) -> Samples:
    """Wall times in seconds of every contender, taken round-robin: each round runs every
    contender once, the starting contender rotating from round to round (A B C, B C A, ...).

    warmup: untimed rounds first. fresh: every timed call runs in a forked child process.
    before: name -> untimed callable run just before each timed call of that contender
    (e.g. evicting files from the page cache). args: one argument per round, passed to every
    contender (repeat is then len(args)); without it, contenders take no argument."""
    names = list(contenders)
    before = before or {}
    rounds = list(args) if args is not None else [_NO_ARG] * repeat
    for _ in range(warmup):
        for name in names:
            _timed(contenders[name], rounds[0] if rounds else _NO_ARG, before.get(name))
    times: Samples = {name: [0.0] * len(rounds) for name in names}
    run = _timed_in_child if fresh else _timed
    for k, arg in enumerate(rounds):
        shift = k % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            times[name][k] = run(contenders[name], arg, before.get(name))
    return times


def scaled(samples: Samples, factor: float) -> Samples:
    """Every measurement multiplied by factor (e.g. 1e3 for ms)."""
    return {k: [x * factor for x in v] for k, v in samples.items()}


def rates(samples: Samples, amount: float) -> Samples:
    """amount / time for every measurement (MB/s, samples/s...)."""
    return {k: [amount / x for x in v] for k, v in samples.items()}


def ratio(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    """(median(a) / median(b), min and max of a[i] / b[i] over the rounds)."""
    pairs = [x / y for x, y in zip(a, b)]
    return statistics.median(a) / statistics.median(b), min(pairs), max(pairs)


# --- the table printer ---------------------------------------------------------------------

def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def print_table(headers: Sequence[str], rows: List[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "| " + " | ".join("{:<%d}" % w for w in widths) + " |"
    print(line.format(*cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line.format(*row))


def print_results(samples: Samples, unit: str, ratios: Sequence[Tuple[str, str, str]] = (),
                  first: str = "contender", extra: Optional[Mapping[str, Sequence]] = None,
                  extra_headers: Sequence[str] = ()) -> None:
    """One row per contender: runs, median and min-max of its values (in ``unit``), plus
    optional extra columns; then one row per (label, a, b) ratio: ratio of medians and
    per-round ratio min-max."""
    rows = []
    for name, xs in samples.items():
        row = [name, len(xs), statistics.median(xs), f"{_fmt(min(xs))}-{_fmt(max(xs))}"]
        rows.append(row + list((extra or {}).get(name, ["-"] * len(extra_headers))))
    print_table([first, "runs", f"median {unit}", f"min-max {unit}", *extra_headers], rows)
    if ratios:
        print()
        rrows = []
        for label, a, b in ratios:
            med, lo, hi = ratio(samples[a], samples[b])
            rrows.append([label, f"{med:.3g}x", f"{lo:.3g}-{hi:.3g}x"])
        print_table(["ratio", "ratio of medians", "per-pair min-max"], rrows)
