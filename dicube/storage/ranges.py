"""Byte ranges merged into as few reads as sensible (for range requests to a remote object)."""
from __future__ import annotations

import numpy as np

__all__ = ["COALESCE_GAP", "coalesce"]

#: Ranges at most this many bytes apart are read in one request (the gap read and dropped):
#: on a link of 5 ms round trip and 1 Gbit/s, a request costs about what 600 KB cost to move.
COALESCE_GAP = 1 << 20


def coalesce(offsets, lengths, gap: int = COALESCE_GAP) -> tuple[list, np.ndarray]:
    """Merge ranges (``offsets``, ``lengths``; any order, repeated or overlapping) into runs.

    Returns ``(runs, where)``: ``runs`` the (start, end) pairs to read, sorted, two runs
    always more than ``gap`` bytes apart; ``where`` the position of each range's first byte
    in the runs laid end to end (int64, in the order given).
    """
    if gap < 0:
        raise ValueError(f"coalesce gap must be >= 0, got {gap}")
    offs = np.asarray(offsets, np.int64).reshape(-1)
    lens = np.asarray(lengths, np.int64).reshape(-1)
    if len(offs) == 0:
        return [], np.zeros(0, np.int64)
    order = np.argsort(offs, kind="stable")
    s, e = offs[order], offs[order] + lens[order]
    reach = np.maximum.accumulate(e)  # the furthest byte any earlier range needs
    first = np.ones(len(s), bool)
    first[1:] = s[1:] - reach[:-1] > gap
    starts = np.flatnonzero(first)
    run_start, run_end = s[starts], np.maximum.reduceat(e, starts)
    run_pos = np.zeros(len(starts), np.int64)
    run_pos[1:] = np.cumsum(run_end - run_start)[:-1]
    run_of = np.cumsum(first) - 1
    where = np.empty(len(s), np.int64)
    where[order] = run_pos[run_of] + (s - run_start[run_of])
    return list(zip(run_start.tolist(), run_end.tolist())), where
