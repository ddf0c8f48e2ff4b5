"""Helpers shared by the benchmark scripts: test data location, timing, tables."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Sequence

REPO = Path(__file__).resolve().parents[1]


def testdata_root() -> Path:
    return Path(os.environ.get("DICUBE_TESTDATA", REPO.parent / "shared" / "dicube-testdata"))


def series_folder(name: str = "sample_200") -> Path:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else testdata_root() / "dicom" / name
    if not folder.is_dir():
        sys.exit(f"series folder not found: {folder} (pass one as the first argument)")
    return folder


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of fn over `repeat` runs, in seconds (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def print_table(headers: Sequence[str], rows: List[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "| " + " | ".join("{:<%d}" % w for w in widths) + " |"
    print(line.format(*cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line.format(*row))
