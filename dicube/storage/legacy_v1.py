"""Read the version-1 .dcbs layout written by dicube 0.3.0.

Layout facts: ``docs/format.md`` (section "Version 1") and the shared note on that
release. Version-1 files carry no checksums; a damaged codestream is still reported
by the decoder. Their metadata is a merged, non-standard JSON that
:func:`merged_to_headers` converts into one DICOM JSON dict per slice.
"""
from __future__ import annotations

import math
import struct
from typing import Any, List, Optional, Tuple

import numpy as np

from ..codecs.jph import read_header
from ..exceptions import CodecError, InvalidCubeFileError, MetaDataError
from . import limits
from .format import (
    CODEC_HTJ2K,
    ENC_RAW,
    ENC_ZSTD,
    FRAME_INDEX_DTYPE,
    LEGACY_VERSION,
    SEC_PIXEL,
    SEC_SPACE,
    Header,
    Layout,
    Section,
)

V1_HEADER = struct.Struct("<8sI13Q")
SEC_STATUS = b"STAT"  # status name (UTF-8 text)
SEC_META_V1 = b"MET1"  # merged metadata JSON (zstd)
ABSENT = "None"  # placeholder of a slice lacking an element


def parse_v1(reader, head: bytes) -> Tuple[Layout, List[str]]:
    """Layout of a version-1 file opened by ``reader`` (a DcbsReader), plus warnings."""
    path = reader.path
    if len(head) < V1_HEADER.size:
        raise InvalidCubeFileError(f"truncated header ({len(head)} of {V1_HEADER.size} bytes)", path)
    f = V1_HEADER.unpack_from(head, 0)[2:]
    pairs = [(f[k], f[k + 1]) for k in range(0, 12, 2)]
    count = f[12]
    size = reader.size
    for off, length in pairs:
        if length and (off < V1_HEADER.size or off + length > size):
            raise InvalidCubeFileError("truncated or corrupt version-1 file (section out of range)", path)
    (so, sl), (mo, ml), (spo, spl), (po, pl), (oo, ol), (lo, ll) = pairs
    if ol != 8 * count or ll != 8 * count or count > (1 << 24):
        raise InvalidCubeFileError(f"version-1 frame index does not match {count} frames", path)
    reader._head = head  # sections, index and first codestream header: usually in this read
    offsets = np.frombuffer(reader._head_bytes(oo, ol), "<u8") if count else np.zeros(0, "<u8")
    lengths = np.frombuffer(reader._head_bytes(lo, ll), "<u8") if count else np.zeros(0, "<u8")
    present = (offsets != 0) & (lengths != 0)
    index_end = max(oo + ol, lo + ll, V1_HEADER.size)
    frames_start = int(offsets[present].min()) if present.any() else index_end
    if present.any():
        offs, lens = offsets[present], lengths[present]
        if int(offs.min()) < index_end or int(offs.max()) > size or int(lens.max()) > size \
                or int((offs + lens).max()) > size:
            raise InvalidCubeFileError("truncated or corrupt version-1 file (frame out of range)", path)
        if (offs[1:] < (offs + lens)[:-1]).any():  # dicube 0.3.0 wrote them one after another
            raise InvalidCubeFileError("version-1 frame index entries overlap or are out of order",
                                       path)
    index = np.zeros(count, FRAME_INDEX_DTYPE)
    index["offset"] = np.where(present, offsets - frames_start, 0)
    index["length"] = np.where(present, lengths, 0)

    sections = {}
    for kind, (off, length), enc in ((SEC_STATUS, (so, sl), ENC_RAW), (SEC_META_V1, (mo, ml), ENC_ZSTD),
                                     (SEC_SPACE, (spo, spl), ENC_RAW), (SEC_PIXEL, (po, pl), ENC_RAW)):
        if length:
            sections[kind] = Section(kind, enc, off, length, None, 0)
    reader.layout = Layout(LEGACY_VERSION, None, sections)  # lets section_json work below
    pixel = reader.section_json(SEC_PIXEL) or {}
    try:
        dtype = np.dtype(pixel.get("PixelDtype") or "int16")
    except (TypeError, ValueError):
        raise InvalidCubeFileError(f"unknown PixelDtype {pixel.get('PixelDtype')!r}", path) from None
    limits.check_dtype(dtype, path)
    rows = cols = 0
    samples = 1
    if present.any():
        k = int(np.flatnonzero(present)[0])
        first = reader._head_bytes(int(offsets[k]), min(int(lengths[k]), 4096))
        try:
            info = read_header(first)
        except CodecError as exc:
            raise CodecError(f"frame {k} has no valid codestream header: {exc.reason}", path) from exc
        rows, cols, samples = info.rows, info.columns, info.components
        limits.check_geometry(rows, cols, samples, dtype, path)
    header = Header(frames_start, size - frames_start, size, count, rows, cols, samples,
                    CODEC_HTJ2K, dtype, dtype.itemsize * 8, len(sections))
    warnings = ["version-1 file (dicube 0.3.0): no checksums, so corruption is found only "
                "where a codestream fails to decode"]
    if (~present).any():
        warnings.append(f"{int((~present).sum())} empty frame(s) read as zeros")
    return Layout(LEGACY_VERSION, header, sections, index), warnings


def check_section(kind: bytes, doc: Any, reader) -> None:
    """Refuse a parsed version-1 section whose shape the reader relies on is wrong."""
    if kind == SEC_PIXEL and not isinstance(doc, dict):
        raise MetaDataError("version-1 pixel header is not a JSON object", reader.path)
    if kind == SEC_META_V1 and isinstance(doc, dict) and "slice_count" in doc:
        n = doc["slice_count"]
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n != reader.frame_count:
            raise MetaDataError(f"version-1 metadata: slice_count {n!r} does not match the "
                                f"{reader.frame_count} frames", reader.path)


# --------------------------------------------------------------------------- metadata
def _ds_text(v: Any) -> Any:
    """Version 1 kept DS numbers as JSON numbers; rebuild their likely text."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def _is_text(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _element(vr: str, value: Any, kind: str) -> dict:
    """Our DICOM JSON element from one slice's value (list, scalar or None)."""
    if value is None:
        return {"vr": vr}
    if kind == "InlineBinary":
        return {"vr": vr, "InlineBinary": value} if value else {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "DS":
        values = [_ds_text(v) for v in values]
    elif vr == "IS":
        values = [_is_text(v) for v in values]
    return {"vr": vr, "Value": values} if values else {"vr": vr}


class _Lost:
    def __init__(self) -> None:
        self.binary: set = set()
        self.numbers = False


def _slice_element(tag: str, e: dict, i: int, n: int, lost: _Lost, where: str) -> Optional[dict]:
    """Element ``e`` of the merged metadata as slice ``i`` holds it; None when absent."""
    if not isinstance(e, dict) or "vr" not in e:
        raise MetaDataError(f"version-1 metadata: element {where}{tag} is malformed")
    vr = e["vr"]
    if vr in ("DS", "IS"):
        lost.numbers = True
    if vr == "SQ":
        items_out = []
        for item in e.get("Value") or []:
            sub = {}
            for t, se in item.items():
                v = _slice_element(t, se, i, n, lost, f"{where}{tag}.")
                if v is not None:
                    sub[t] = v
            if sub:
                items_out.append(dict(sorted(sub.items())))
        return {"vr": "SQ", "Value": items_out}
    if "BulkDataURI" in e:
        lost.binary.add(where + tag)
        return None
    kind = "InlineBinary" if "InlineBinary" in e else "Value"
    if kind not in e:
        return {"vr": vr}
    if e.get("shared") is not False:  # shared (true) or unspecified: one value for all
        v = e[kind]
        if v == ABSENT:
            return None
        return _element(vr, v, kind)
    per = e[kind]
    if not isinstance(per, list) or len(per) != n:
        raise MetaDataError(f"version-1 metadata: element {where}{tag} has "
                            f"{len(per) if isinstance(per, list) else 'no'} values for {n} slices")
    v = per[i]
    if isinstance(v, str) and v == ABSENT:
        return None
    return _element(vr, v, kind)


def merged_to_headers(doc: dict) -> Tuple[List[dict], List[str]]:
    """One DICOM JSON dict per slice from version-1 merged metadata, plus warnings."""
    try:
        merged = doc["_merged_data"]
        n = int(doc["slice_count"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MetaDataError(f"version-1 metadata lacks {exc}") from exc
    if not isinstance(merged, dict) or n < 0:
        raise MetaDataError("version-1 metadata is malformed")
    lost = _Lost()
    merged, reordered = _realign(merged, n)
    headers = []
    for i in range(n):
        h = {}
        for tag in sorted(merged):
            v = _slice_element(tag, merged[tag], i, n, lost, "")
            if v is not None:
                h[tag] = v
        headers.append(h)
    warnings = []
    if lost.binary:
        warnings.append("the version-1 file dropped binary values over 10 KiB; these elements "
                        "are missing: " + ", ".join(sorted(lost.binary)))
    if lost.numbers:
        warnings.append("the version-1 file stored DS/IS values as numbers; their original "
                        "text (e.g. '120' vs '120.0') is reconstructed, not exact")
    if reordered:
        warnings.append("the version-1 file listed per-slice binary values and values inside "
                        "sequences in file-read order, not slice order; realigned using "
                        f"{reordered}")
    elif _has_misalignable(merged):
        warnings.append("the version-1 file may list per-slice binary values and values inside "
                        "sequences in file-read order; no evidence was found to realign them")
    warnings.append("the version-1 file kept no file meta information (group 0002) and "
                    "no preambles")
    return headers, warnings



# dicube 0.3.0 sorted the per-slice "Value" lists of top-level elements into slice order but
# left per-slice "InlineBinary" lists and per-slice values inside sequences in the order the
# files were read. When an element inside a sequence repeats a top-level per-slice element
# with unique values (e.g. InstanceNumber), that pairing gives the permutation back.
def _key(v: Any) -> Any:
    return tuple(_key(x) for x in v) if isinstance(v, list) else json_key(v)


def json_key(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, json_key(x)) for k, x in v.items()))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return v


def _unique_per_slice(e: dict, n: int) -> Optional[list]:
    if e.get("shared") is not False or e.get("vr") == "SQ":
        return None
    vals = e.get("Value")
    if not isinstance(vals, list) or len(vals) != n or any(v == ABSENT for v in vals):
        return None
    keys = [_key(v) for v in vals]
    return keys if len(set(keys)) == n else None


def _nested_per_slice(merged: dict, path: str = ""):
    for tag, e in merged.items():
        if isinstance(e, dict) and e.get("vr") == "SQ":
            for k, item in enumerate(e.get("Value") or []):
                if isinstance(item, dict):
                    for t, se in item.items():
                        if isinstance(se, dict) and se.get("shared") is False:
                            yield f"{path}{tag}[{k}].{t}", t, se
                    yield from _nested_per_slice(item, f"{path}{tag}[{k}].")


def _has_misalignable(merged: dict) -> bool:
    if any(True for _ in _nested_per_slice(merged)):
        return True
    return any(isinstance(e, dict) and e.get("shared") is False and "InlineBinary" in e
               for e in merged.values())


def _realign(merged: dict, n: int) -> Tuple[dict, str]:
    """Reorder misaligned per-slice lists; returns (merged, evidence or '')."""
    if n < 2:
        return merged, ""
    for where, tag, se in _nested_per_slice(merged):
        nested = _unique_per_slice(se, n)
        top = merged.get(tag)
        ref = _unique_per_slice(top, n) if isinstance(top, dict) else None
        if nested is None or ref is None or set(nested) != set(ref):
            continue
        pos = {k: i for i, k in enumerate(ref)}
        perm = [pos[k] for k in nested]  # file-read position j -> slice perm[j]
        if perm == list(range(n)):
            return merged, ""
        return _apply(merged, perm, n, top_level=True), f"{where} == {tag}"
    return merged, ""


def _reorder(values: list, perm: list) -> list:
    out = [None] * len(values)
    for j, v in enumerate(values):
        out[perm[j]] = v
    return out


def _apply(merged: dict, perm: list, n: int, top_level: bool) -> dict:
    out = {}
    for tag, e in merged.items():
        if not isinstance(e, dict):
            out[tag] = e
            continue
        e = dict(e)
        if e.get("vr") == "SQ":
            e["Value"] = [_apply(item, perm, n, False) if isinstance(item, dict) else item
                          for item in e.get("Value") or []]
        elif e.get("shared") is False:
            kind = "InlineBinary" if "InlineBinary" in e else "Value"
            if (not top_level or kind == "InlineBinary") and isinstance(e.get(kind), list) \
                    and len(e[kind]) == n:
                e[kind] = _reorder(e[kind], perm)
        out[tag] = e
    return out
