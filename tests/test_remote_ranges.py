"""storage.ranges.coalesce: which frames share a range request, and where each lands."""
from __future__ import annotations

import numpy as np
import pytest

from dicube.storage.ranges import coalesce


def _gather(runs, where, lengths, data: bytes):
    """The bytes each range gets from the runs laid end to end."""
    buf = b"".join(data[s:e] for s, e in runs)
    return [buf[w:w + n] for w, n in zip(where.tolist(), lengths)]


def test_adjacent_ranges_make_one_run():
    runs, where = coalesce([0, 10, 20, 30], [10, 10, 10, 10], gap=0)
    assert runs == [(0, 40)] and where.tolist() == [0, 10, 20, 30]


def test_gap_decides_and_order_and_repeats_are_kept():
    offs, lens = [50, 0, 20, 50, 25], [10, 10, 5, 10, 5]
    data = bytes(range(100))
    runs, where = coalesce(offs, lens, gap=0)
    assert runs == [(0, 10), (20, 30), (50, 60)]
    assert _gather(runs, where, lens, data) == [data[o:o + n] for o, n in zip(offs, lens)]
    runs, where = coalesce(offs, lens, gap=10)
    assert runs == [(0, 30), (50, 60)]
    assert _gather(runs, where, lens, data) == [data[o:o + n] for o, n in zip(offs, lens)]
    runs, _ = coalesce(offs, lens, gap=20)
    assert runs == [(0, 60)]


def test_overlapping_and_contained_ranges():
    offs, lens = [0, 5, 2, 40], [30, 10, 3, 1]
    data = bytes(range(100))
    runs, where = coalesce(offs, lens, gap=0)
    assert runs == [(0, 30), (40, 41)]
    assert _gather(runs, where, lens, data) == [data[o:o + n] for o, n in zip(offs, lens)]


def test_empty_and_bad_gap():
    runs, where = coalesce([], [], gap=0)
    assert runs == [] and len(where) == 0
    with pytest.raises(ValueError):
        coalesce([0], [1], gap=-1)


def test_random_selections_read_the_right_bytes():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 10_000, np.uint8).tobytes()
    for _ in range(50):
        offs = rng.integers(0, 9_000, 20)
        lens = rng.integers(1, 500, 20)
        gap = int(rng.integers(0, 800))
        runs, where = coalesce(offs, lens, gap)
        assert all(b[0] - a[1] > gap for a, b in zip(runs, runs[1:]))
        assert _gather(runs, where, lens.tolist(), data) == \
            [data[o:o + n] for o, n in zip(offs.tolist(), lens.tolist())]
