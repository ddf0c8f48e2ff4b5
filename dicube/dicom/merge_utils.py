"""Split per-file DICOM JSON into shared and per-slice values, and merge it back.

Each top-level element is shared when it is present and identical on every slice;
otherwise it is stored per slice as a list with one entry per slice, ``None`` where the
element is absent. Sequences are compared whole, so values inside a sequence item that
differ between slices stay with their slice.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["split_shared", "merge_slice"]


def split_shared(headers: list[dict]) -> tuple[dict, dict]:
    """Return ``(shared, per_slice)`` for a list of DICOM JSON dicts (one per slice).

    Tag order follows the first appearance of each tag.
    """
    n = len(headers)
    if n == 0:
        return {}, {}
    order: dict[str, None] = dict.fromkeys(headers[0])
    for h in headers[1:]:
        if h.keys() != order.keys():
            for k in h:
                if k not in order:
                    order[k] = None
    shared: dict = {}
    per_slice: dict = {}
    first = headers[0]
    for key in sorted(order):  # DICOM order: ascending tags
        ref = first.get(key)
        if ref is not None:
            for h in headers:
                if h.get(key) != ref:
                    break
            else:
                shared[key] = ref
                continue
        per_slice[key] = [h.get(key) for h in headers]
    return shared, per_slice


def merge_slice(shared: dict, per_slice: dict, index: int) -> dict:
    """The DICOM JSON of slice ``index`` (shared and its own values, ascending tags)."""
    out = dict(shared)
    for key, values in per_slice.items():
        v: Optional[dict] = values[index]
        if v is not None:
            out[key] = v
    return dict(sorted(out.items()))
