"""Shared test helpers: strict recursive comparison of pydicom datasets.

``dataset_differences(a, b)`` returns a list of human-readable differences (empty when
equal). Elements are compared by tag, VR and value, recursing into sequences; bytes are
compared exactly; DS/IS/DA/DT/TM are compared by their exact string form as well as by
value; PN by its full string. Pixel data elements are skipped unless asked.
"""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}


def _as_list(value: Any) -> list:
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


def _value_diff(vr: str, a: Any, b: Any) -> str | None:
    if isinstance(a, (bytes, bytearray)) or isinstance(b, (bytes, bytearray)):
        if type(a) is not type(b) and not (isinstance(a, (bytes, bytearray))
                                          and isinstance(b, (bytes, bytearray))):
            return f"type {type(a).__name__} != {type(b).__name__}"
        if bytes(a) != bytes(b):
            return f"bytes differ (len {len(a)} vs {len(b)})"
        return None
    la, lb = _as_list(a), _as_list(b)
    if len(la) != len(lb):
        return f"multiplicity {len(la)} != {len(lb)}: {a!r} vs {b!r}"
    for x, y in zip(la, lb):
        if x is None or y is None:
            if not (x is None and y is None):
                return f"{x!r} != {y!r}"
            continue
        if isinstance(x, PersonName) or isinstance(y, PersonName):
            if str(x) != str(y):
                return f"PN {str(x)!r} != {str(y)!r}"
            continue
        if type(x) is not type(y):
            return f"type {type(x).__name__} != {type(y).__name__} ({x!r} vs {y!r})"
        if vr in ("DS", "IS", "DA", "DT", "TM") and str(x) != str(y):
            return f"string form {str(x)!r} != {str(y)!r}"
        if x != y and not (x != x and y != y):  # NaN == NaN here
            return f"{x!r} != {y!r}"
    return None


def dataset_differences(a: Dataset, b: Dataset, *, skip_pixels: bool = True,
                        path: str = "") -> list[str]:
    """Every difference between datasets ``a`` and ``b`` (values and VRs, recursive)."""
    diffs: list[str] = []
    tags_a = {t for t in a.keys() if not (skip_pixels and t in PIXEL_TAGS)}
    tags_b = {t for t in b.keys() if not (skip_pixels and t in PIXEL_TAGS)}
    for t in sorted(tags_a ^ tags_b):
        side = "only in first" if t in tags_a else "only in second"
        diffs.append(f"{path}{t}: {side}")
    for t in sorted(tags_a & tags_b):
        ea, eb = a[t], b[t]
        where = f"{path}{t}"
        if ea.VR != eb.VR:
            diffs.append(f"{where}: VR {ea.VR} != {eb.VR}")
            continue
        if ea.VR == "SQ":
            ia, ib = list(ea.value or []), list(eb.value or [])
            if len(ia) != len(ib):
                diffs.append(f"{where}: {len(ia)} items != {len(ib)} items")
                continue
            for k, (x, y) in enumerate(zip(ia, ib)):
                diffs.extend(dataset_differences(x, y, skip_pixels=False,
                                                 path=f"{where}[{k}]."))
            continue
        d = _value_diff(str(ea.VR), ea.value, eb.value)
        if d:
            diffs.append(f"{where} ({ea.VR}): {d}")
    return diffs


def assert_datasets_equal(a: Dataset, b: Dataset, *, skip_pixels: bool = True,
                          context: str = "") -> None:
    """Assert two datasets are equal element for element (see module docstring)."""
    diffs = dataset_differences(a, b, skip_pixels=skip_pixels)
    assert not diffs, f"{context}: {len(diffs)} differences:\n" + "\n".join(diffs[:20])


def assert_file_meta_equal(a: Dataset, b: Dataset, context: str = "") -> None:
    """Assert the file meta information (group 0002) of two datasets is equal."""
    diffs = dataset_differences(a, b, skip_pixels=False)
    assert not diffs, f"{context}: file meta differs:\n" + "\n".join(diffs[:20])


def copy_series(src, dst, names=None):
    """Copy the files of a series folder (optionally only ``names``) into ``dst``."""
    import shutil
    from pathlib import Path

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(src).iterdir() if p.is_file())
    for p in files:
        if names is None or p.name in names:
            shutil.copy(p, dst / p.name)
    return dst


def sorted_by_position(folder):
    """(path, dataset) pairs of a folder's files sorted by z position (ascending)."""
    from pathlib import Path

    import pydicom

    out = [(p, pydicom.dcmread(p)) for p in sorted(Path(folder).iterdir()) if p.is_file()]
    out.sort(key=lambda t: float(t[1].ImagePositionPatient[2]))
    return out
