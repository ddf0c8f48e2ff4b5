"""Validation of stored metadata (the .dcbs META document) against the DICOM JSON model.

A file's metadata is checked once, when it is read, so that a crafted or damaged file
(its checksums recomputed) fails at load time with one :class:`MetaDataError` naming the
element and the problem, instead of loading and failing later, untyped, at export.

The model (PS3.18 F.2, with dicube's lossless choices, see :mod:`dicube.dicom.dicom_json`):
tag keys are 8 uppercase hex digits; an element is an object with a DICOM ``vr`` and at
most one of ``Value`` (a list whose entries fit the VR) and ``InlineBinary`` (base64);
sequence items are data sets, nested at most :data:`MAX_SEQUENCE_DEPTH` deep;
``per_slice`` values are lists of ``num_slices`` entries (an element or null);
``filenames`` and ``slice_info`` have ``num_slices`` entries. Elements whose values
dicube interprets (bits, pixel representation, rescale) must hold numbers.

The check runs over whole lists with builtins (one tag of all slices, or of all items of
a sequence, at a time: types, joins, min/max, one regular expression over the keys); only
when it finds something wrong does an element-by-element walk (:func:`model_problem`, the
reference) look for the first culprit to name. It visits every element several times, so
it costs about 0.8x the JSON parse (1.4-2 ms of CPU for the 6,000 elements of the shared
200-slice sample, on a busy 2-core machine).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from functools import partial
from itertools import chain, repeat
from operator import is_not, itemgetter, sub
from typing import Any, Optional

from ..exceptions import MetaDataError
from .dicom_json import BINARY_VRS, CHARSET_VRS, PN_KEYS, STRING_VRS

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_SEQUENCE_DEPTH", "check_document", "check_model",
           "model_problem", "per_slice_keys_ok", "check_qc_document", "check_space_document"]

FORMAT = "dicube-meta"
FORMAT_VERSION = 1
#: Deepest nesting of sequences accepted (real data sets nest a few levels).
MAX_SEQUENCE_DEPTH = 64

#: VRs pydicom leaves unresolved when a data set does not say which applies (implicit VR
#: files); dicube stores their values as text or InlineBinary, so they must keep loading.
AMBIGUOUS_VRS = frozenset({"US or SS", "OB or OW", "US or OW", "US or SS or OW"})
VRS = frozenset("AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
                "TM UC UI UL UN UR US UT UV".split()) | AMBIGUOUS_VRS
ELEMENT_KEYS = frozenset({"vr", "Value", "InlineBinary"})
INT_RANGES = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF),
              "SL": (-0x80000000, 0x7FFFFFFF), "UV": (0, (1 << 64) - 1),
              "SV": (-(1 << 63), (1 << 63) - 1)}
FLT_MAX = 3.4028234663852886e38
#: VRs whose text must be ISO 646 / Latin-1 (the others follow the Specific Character Set)
LATIN1_VRS = (STRING_VRS - CHARSET_VRS) | AMBIGUOUS_VRS
#: Top-level elements whose first value dicube uses as a number (export, streaming):
#: PlanarConfiguration, BitsAllocated, BitsStored, PixelRepresentation, rescale.
INTERPRETED = ("00280006", "00280100", "00280101", "00280103", "00281052", "00281053")
_NUMERIC_VRS = frozenset(INT_RANGES) | {"FL", "FD", "DS", "IS"}
#: text VRs whose Values dicube writes as lists of strings
_PLAIN_TEXT_VRS = (STRING_VRS - {"PN"}) | AMBIGUOUS_VRS
#: VRs whose valid values hold only strings (so that equal elements are identical)
_TEXT_VRS = (STRING_VRS | BINARY_VRS | {"AT"}) - {"DS", "IS"}

_MISSING = object()
_present = partial(is_not, _MISSING)
_not_none = partial(is_not, None)
_HEX = re.compile(r"[0-9A-F]*")
_AT = re.compile(r"[0-9A-Fa-f]{8}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_PLAIN_KEYS = frozenset({"vr", "Value"})
_VALUE_TYPES = frozenset({list, tuple})  # a JSON list, or () for an absent Value
_LIST = frozenset({list})
_NoneType = type(None)
_get_vr = itemgetter("vr")
_get_value = itemgetter("Value")


class _Bad(Exception):
    """Raised by the fast check: something is wrong, the slow walk finds what."""


# ----------------------------------------------------------------------------- documents
def check_document(doc: Any, frame_count: Optional[int] = None) -> None:
    """Validate a DicomMeta document (``DicomMeta.to_dict()`` form) before anything is
    built from it; ``frame_count`` (the file's) bounds ``num_slices`` to it or 1.
    Raises MetaDataError (without a path: the caller names the file)."""
    if not isinstance(doc, dict):
        raise MetaDataError(f"metadata is a JSON {_json_type(doc)}, not an object")
    if doc.get("format") != FORMAT:
        raise MetaDataError("not a dicube metadata document")
    version = doc.get("version", 0)
    if not _is_int(version):
        raise MetaDataError(f"metadata version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise MetaDataError(f"metadata version {version} is newer than supported")
    n = doc.get("num_slices", _MISSING)
    if n is _MISSING:
        raise MetaDataError("metadata has no num_slices")
    if not _is_int(n) or n < 0:
        raise MetaDataError(f"num_slices {_short(n)} is not a count of slices")
    if frame_count is not None and n not in (frame_count, 1):
        raise MetaDataError(f"num_slices is {n} for {frame_count} frames (must be equal, or 1 "
                            "for one multi-frame source file)")
    for name in ("shared", "per_slice"):
        if name not in doc:
            raise MetaDataError(f"metadata has no {name!r}")
        if not isinstance(doc[name], dict):
            raise MetaDataError(f"metadata {name!r} is a JSON {_json_type(doc[name])}, "
                                "not an object of elements")
    _check_slice_lists(doc.get("filenames"), doc.get("slice_info"), n)
    check_model(doc["shared"], doc["per_slice"], n)


def _check_slice_lists(filenames: Any, slice_info: Any, n: int) -> None:
    for name, value, types in (("filenames", filenames, {str, _NoneType}),
                               ("slice_info", slice_info, {dict})):
        if value is None:
            continue
        if type(value) is not list:
            raise MetaDataError(f"metadata {name!r} is a JSON {_json_type(value)}, not a list")
        if len(value) != n:
            raise MetaDataError(f"metadata {name!r} has {len(value)} entries for {n} slices")
        if not set(map(type, value)) <= types:
            i, v = next((i, v) for i, v in enumerate(value) if type(v) not in types)
            want = "a string or null" if name == "filenames" else "an object"
            raise MetaDataError(f"metadata {name!r} entry {i} is {_short(v)}, not {want}")
    if not slice_info:
        return
    scalars = {str, int, float, bool, _NoneType}
    if not set(map(type, chain.from_iterable(map(dict.values, slice_info)))) <= scalars:
        i = next(i for i, e in enumerate(slice_info) if not set(map(type, e.values())) <= scalars)
        raise MetaDataError(f"metadata slice_info[{i}] holds a value that is not text or a number")
    for key, ok, want in (("pixel_tag", _AT.fullmatch, "8 hex digits"),
                          ("pixel_vr", VRS.__contains__, "a DICOM VR"),
                          ("preamble", _is_base64, "base64 text")):
        values = list(map(dict.get, slice_info, repeat(key)))
        try:
            distinct = set(values)
        except TypeError:
            distinct = values
        for v in distinct:
            if v is not None and not (isinstance(v, str) and ok(v)):
                i = values.index(v)
                raise MetaDataError(f"metadata slice_info[{i}] {key} {_short(v)} is not {want}")


# ----------------------------------------------------------------------------- the model
def check_model(shared: Any, per_slice: Any, n: int) -> None:
    """Validate the elements of a DicomMeta (shared and per-slice, ``n`` slices); raise
    MetaDataError naming the first offending element."""
    problem = None if _fast_ok(shared, per_slice, n) else model_problem(shared, per_slice, n)
    if problem is None:
        problem = _interpreted_problem(shared, per_slice)
    if problem is not None:
        raise MetaDataError(f"metadata {problem}")


def model_problem(shared: Any, per_slice: Any, n: int) -> Optional[str]:
    """What is wrong with the elements, found element by element (None when nothing is)."""
    if not isinstance(shared, dict) or not isinstance(per_slice, dict):
        return "shared and per_slice must be JSON objects"
    for key, elem in shared.items():
        p = _key_problem(key) or _element_problem(elem, 0)
        if p:
            return f"element {_name(key)}: {p}"
    for key, values in per_slice.items():
        p = _key_problem(key)
        if p:
            return f"element {_name(key)}: {p}"
        if key in shared:
            return f"element {_name(key)} is both shared and per slice"
        if type(values) is not list:
            return (f"element {_name(key)}: per-slice values are a JSON {_json_type(values)}, "
                    "not a list")
        if len(values) != n:
            return f"element {_name(key)}: {len(values)} per-slice values for {n} slices"
        for i, elem in enumerate(values):
            p = None if elem is None else _element_problem(elem, 0)
            if p:
                return f"element {_name(key)} of slice {i}: {p}"
    return None


def per_slice_keys_ok(shared: dict, keys: list) -> bool:
    """Per-slice tags are 8 uppercase hex digits and none is also shared: what
    :func:`check_model` checks of per-slice elements beyond their values (a lazy reading
    checks the values of each tag with check_model when it parses them)."""
    return _keys_ok(keys) and not shared.keys() & set(keys)


def _key_problem(key: Any) -> Optional[str]:
    if not (isinstance(key, str) and len(key) == 8 and _HEX.fullmatch(key)):
        return "the tag is not 8 uppercase hex digits"
    return None


def _element_problem(elem: Any, depth: int) -> Optional[str]:
    """What is wrong with one element (its sequence items included), or None."""
    if type(elem) is not dict:
        return f"the element is {_short(elem)}, not a JSON object"
    if "BulkDataURI" in elem:
        return "BulkDataURI is not supported (values must be stored inline)"
    extra = set(elem) - ELEMENT_KEYS
    if extra:
        return f"unknown member {sorted(map(str, extra))[0]!r}"
    vr = elem.get("vr")
    if not (isinstance(vr, str) and vr in VRS):
        return f"VR {_short(vr)} is not a DICOM VR"
    if "InlineBinary" in elem:
        if "Value" in elem:
            return "both Value and InlineBinary"
        b64 = elem["InlineBinary"]
        if not (isinstance(b64, str) and _is_base64(b64)):
            return f"InlineBinary {_short(b64)} is not base64 text"
        return None
    if "Value" not in elem:
        return None
    values = elem["Value"]
    if type(values) is not list:
        return f"Value is a JSON {_json_type(values)}, not a list"
    for k, v in enumerate(values):
        p = _value_problem(vr, v, depth)
        if p:
            return p if p.startswith("item ") else f"value {k} {p}"
    return None


def _value_problem(vr: str, v: Any, depth: int) -> Optional[str]:
    t = type(v)
    if vr in INT_RANGES:
        lo, hi = INT_RANGES[vr]
        return None if t is int and lo <= v <= hi else f"{_short(v)} is not an integer in {lo}..{hi} ({vr})"
    if vr in ("FL", "FD"):
        limit = FLT_MAX if vr == "FL" else math.inf
        ok = t in (int, float) and _finite(v) and abs(v) <= limit
        return None if ok else f"{_short(v)} is not a finite number that fits {vr}"
    if vr == "SQ":
        if t is not dict:
            return f"is {_short(v)}, not a sequence item (a JSON object)"
        if depth + 1 > MAX_SEQUENCE_DEPTH:
            return f"sequences nested more than {MAX_SEQUENCE_DEPTH} deep"
        for key, elem in v.items():
            p = _key_problem(key) or _element_problem(elem, depth + 1)
            if p:
                return f"item element {_name(key)}: {p}"
        return None
    if vr in BINARY_VRS:
        return f"{_short(v)}: binary VR {vr} needs InlineBinary"
    if vr == "AT":
        ok = (t is str and _AT.fullmatch(v)) or (t is int and 0 <= v <= 0xFFFFFFFF)
        return None if ok else f"{_short(v)} is not a tag (8 hex digits)"
    if vr == "PN":
        if t is dict:
            if not set(v) <= set(PN_KEYS) or not set(map(type, v.values())) <= {str, _NoneType}:
                return f"{_short(v)} is not a person name (Alphabetic/Ideographic/Phonetic)"
            return None
        return None if t in (str, _NoneType) else f"{_short(v)} is not a person name"
    if t is _NoneType:
        return None
    if t is str:
        if vr in LATIN1_VRS and not _latin1(v):
            return f"{_short(v)} has characters outside ISO 8859-1 ({vr})"
        return None
    if vr in ("DS", "IS") and t in (int, float) and _finite(v):
        return None
    return f"{_short(v)} is not a string ({vr})"


# ----------------------------------------------------------------------------- fast path
def _fast_ok(shared: Any, per_slice: Any, n: int) -> bool:
    """True when every element certainly fits the model; False means "look closer".

    Elements are taken in units that usually share one VR (one tag over all slices, or
    over all items of a sequence), each unit checked with builtins over its whole list.
    """
    try:
        if type(shared) is not dict or type(per_slice) is not dict:
            return False
        if not _keys_ok(chain(shared, per_slice)) or shared.keys() & per_slice.keys():
            return False
        lists = list(per_slice.values())
        if not set(map(type, lists)) <= {list} or not set(map(len, lists)) <= {n}:
            return False
        by_vr: dict = defaultdict(list)
        groups: list = []  # lists of sequence items, checked one nesting level at a time
        _mixed_unit(list(shared.values()), by_vr, groups)
        for lst in lists:
            try:
                vrs = "|".join(map(_get_vr, lst))
            except TypeError:  # null where the element is absent from a slice (or worse)
                lst = list(filter(_not_none, lst))
                vrs = None
            if lst:
                _unit(lst, by_vr, groups, vrs)
        depth = 0
        while groups:
            depth += 1
            if depth > MAX_SEQUENCE_DEPTH:
                return False
            level, groups = groups, []
            for items in level:
                _items(items, by_vr, groups)
        texts: dict = {True: [], False: []}  # text of all VRs in two checks: Latin-1 or not
        for vr, units in by_vr.items():
            if vr in _PLAIN_TEXT_VRS:
                texts[vr in LATIN1_VRS].extend(units)
            else:
                _values_ok(vr, units)
        for latin1, units in texts.items():
            values = list(chain.from_iterable(units))
            if not set(map(type, values)) <= _VALUE_TYPES:
                raise _Bad
            text = "".join(chain.from_iterable(values))  # TypeError unless all strings
            if latin1:
                text.encode("latin-1")
        return True
    except (_Bad, TypeError, ValueError, KeyError, OverflowError):
        return False


def _items(items: list, by_vr: dict, groups: list) -> None:
    """Sequence items (data sets): keys, then their elements tag by tag."""
    if not set(map(type, items)) <= {dict}:
        raise _Bad
    keys = set().union(*items)
    if not _keys_ok(keys):
        raise _Bad
    count = sum(map(len, items))
    if len(keys) * len(items) > 4 * count + 256:  # items unlike each other: one pass
        _mixed_unit(list(chain.from_iterable(map(dict.values, items))), by_vr, groups)
        return
    if count == len(keys) * len(items):  # every item has every key
        for k in keys:
            unit = list(map(itemgetter(k), items))
            first = unit[0]
            # the same text element in every item (e.g. a Study UID): check it once;
            # only for text, since 1 == 1.0 == True would hide a number of the wrong type
            if type(first) is dict and first.get("vr") in _TEXT_VRS and unit[-1] == first \
                    and unit.count(first) == len(unit):
                unit = [first]
            _unit(unit, by_vr, groups)
        return
    for k in keys:
        _unit(list(filter(_present, map(dict.get, items, repeat(k), repeat(_MISSING)))),
              by_vr, groups)


def _keys_ok(keys) -> bool:
    keys = list(keys)
    return not keys or (set(map(len, keys)) == {8} and _HEX.fullmatch("".join(keys)) is not None)


def _unit(elems: list, by_vr: dict, groups: list, vrs: Optional[str] = None) -> None:
    """Elements of one tag: when they share a VR, checked as one list. (Anything but an
    object with a "vr" string raises TypeError or KeyError, which ends the fast check.)

    ``vrs`` is their VRs joined with "|": equal to the first one repeated exactly when all
    are that VR (a valid VR holds no "|"), compared without hashing each string.
    """
    if vrs is None:
        vrs = "|".join(map(_get_vr, elems))
    vr = vrs[:2]
    if vr not in VRS:
        raise _Bad
    if vrs != (vr + "|") * (len(elems) - 1) + vr:
        _mixed_unit(elems, by_vr, groups)
        return
    try:  # the usual case: every element is exactly {"vr", "Value"}
        if sum(map(len, elems)) != 2 * len(elems):
            raise KeyError
        values = list(map(_get_value, elems))
        if vr in _PLAIN_TEXT_VRS:  # lists of text: checked here, in one join
            if not set(map(type, values)) <= _LIST:
                raise _Bad
            text = "".join(chain.from_iterable(values))  # TypeError unless all strings
            if vr in LATIN1_VRS:
                text.encode("latin-1")  # UnicodeEncodeError is a ValueError
            return
    except KeyError:
        _check_members(elems)
        values = list(map(dict.get, elems, repeat("Value"), repeat(())))  # () when absent
    if vr == "SQ":
        _sequences(values, groups)
    else:
        by_vr[vr].append(values)


def _mixed_unit(elems: list, by_vr: dict, groups: list) -> None:
    """Elements of several VRs."""
    vrs = list(map(_get_vr, elems))
    if not set(vrs) <= VRS:
        raise _Bad
    _check_members(elems)
    values = list(map(dict.get, elems, repeat("Value"), repeat(())))
    local = defaultdict(list)
    for vr, v in zip(vrs, values):
        local[vr].append(v)
    for vr, v in local.items():
        if vr == "SQ":
            _sequences(v, groups)
        else:
            by_vr[vr].append(v)


def _sequences(values: list, groups: list) -> None:
    if not set(map(type, values)) <= _VALUE_TYPES:
        raise _Bad
    items = list(chain.from_iterable(values))
    if items:
        groups.append(items)


def _check_members(elems: list) -> None:
    """Members of each element: "vr" and at most one of Value, InlineBinary (base64)."""
    keys = set().union(*elems)
    if keys <= _PLAIN_KEYS:
        return
    if not keys <= ELEMENT_KEYS or ("Value" in keys and max(map(len, elems)) > 2):
        raise _Bad
    inline = list(filter(_present, map(dict.get, elems, repeat("InlineBinary"), repeat(_MISSING))))
    if not set(map(type, inline)) <= {str} or any(map((4).__rmod__, map(len, inline))):
        raise _Bad
    stripped = list(map(str.rstrip, inline, repeat("=")))
    if max(map(sub, map(len, inline), map(len, stripped))) > 2:
        raise _Bad
    if "".join(stripped).encode("ascii").translate(None, _B64_ALPHABET):
        raise _Bad  # a character outside the alphabet, or padding inside a string


def _values_ok(vr: str, units: list) -> None:
    """Value lists of one VR (not SQ), in one list per unit; ``()`` stands for an absent
    Value. Raises _Bad."""
    values = list(chain.from_iterable(units))
    if not set(map(type, values)) <= _VALUE_TYPES:
        raise _Bad
    flat = list(chain.from_iterable(values))
    if not flat:
        return
    if vr in INT_RANGES:
        lo, hi = INT_RANGES[vr]
        if set(map(type, flat)) != {int} or min(flat) < lo or max(flat) > hi:
            raise _Bad
    elif vr in ("FL", "FD"):
        if not set(map(type, flat)) <= {int, float} or not all(map(math.isfinite, flat)):
            raise _Bad
        if vr == "FL" and max(map(abs, flat)) > FLT_MAX:
            raise _Bad
    elif vr in BINARY_VRS or vr == "SQ":
        raise _Bad
    elif vr == "AT" or vr == "PN":
        for v in flat:
            if _value_problem(vr, v, 0):
                raise _Bad
    else:  # text; null or DS/IS numbers (never written by dicube) go the slow way
        text = "".join(flat)  # TypeError on anything but strings
        if vr in LATIN1_VRS:
            text.encode("latin-1")  # UnicodeEncodeError is a ValueError


# ----------------------------------------------------------------------------- interpreted
def _interpreted_problem(shared: dict, per_slice: dict) -> Optional[str]:
    """Elements dicube reads as numbers must hold numbers (not text, not raw bytes)."""
    for key in INTERPRETED:
        if key in shared:
            elems = [(None, shared[key])]
        elif key in per_slice:
            elems = [(i, e) for i, e in enumerate(per_slice[key]) if e is not None]
        else:
            continue
        for i, e in elems:
            problem = None
            if "InlineBinary" in e or e["vr"] not in _NUMERIC_VRS:
                what = "raw bytes" if "InlineBinary" in e else f"VR {e['vr']}"
                problem = f"dicube reads it as a number, but it holds {what}"
            elif e["vr"] in ("DS", "IS"):
                bad = [v for v in e.get("Value", ())
                       if isinstance(v, str) and v.strip() and not _number_text(v)]
                problem = f"{_short(bad[0])} is not a number ({e['vr']})" if bad else None
            if problem:
                where = f"element {_name(key)}" + ("" if i is None else f" of slice {i}")
                return f"{where}: {problem}"
    return None


# ----------------------------------------------------------------------------- other sections
def check_qc_document(doc: Any) -> None:
    """Validate a stored QC report (``QCReport.to_dict()`` form)."""
    from .dicom_status import DicomStatus

    if not isinstance(doc, dict):
        raise MetaDataError(f"QC report is a JSON {_json_type(doc)}, not an object")
    n = doc.get("num_slices")
    if not _is_int(n) or n < 0:
        raise MetaDataError(f"QC report num_slices {_short(n)} is not a count of slices")
    issues = doc.get("issues")
    if type(issues) is not list:
        raise MetaDataError(f"QC report issues are {_short(issues)}, not a list")
    statuses = {s.value for s in DicomStatus}
    for k, issue in enumerate(issues):
        where = f"QC report issue {k}"
        if not isinstance(issue, dict):
            raise MetaDataError(f"{where} is {_short(issue)}, not an object")
        if issue.get("status") not in statuses:
            raise MetaDataError(f"{where}: unknown status {_short(issue.get('status'))}")
        if not isinstance(issue.get("message"), str):
            raise MetaDataError(f"{where}: message {_short(issue.get('message'))} is not text")
        slices = issue.get("slices")
        if type(slices) is not list or not all(map(_is_int, slices)):
            raise MetaDataError(f"{where}: slices {_short(slices)} are not slice numbers")
        files = issue.get("files", [])
        if type(files) is not list or not all(
                type(f) is list and all(isinstance(x, str) for x in f) for f in files):
            raise MetaDataError(f"{where}: files {_short(files)} are not lists of text")


def check_space_document(doc: Any, shape_xyz: Optional[tuple] = None) -> None:
    """Validate a stored Space (``Space.to_json()`` form): finite 3-vectors, and a shape of
    ``shape_xyz`` (columns, rows, frames) when given."""
    if not isinstance(doc, dict):
        raise MetaDataError(f"space is a JSON {_json_type(doc)}, not an object")
    for name in ("shape", "origin", "spacing", "x_orientation", "y_orientation",
                 "z_orientation"):
        v = doc.get(name)
        if type(v) is not list or len(v) != 3 or not all(
                type(x) in (int, float) and _finite(x) for x in v):
            raise MetaDataError(f"space {name} {_short(v)} is not 3 finite numbers")
    shape = doc["shape"]
    if shape_xyz is not None and tuple(shape) != tuple(shape_xyz):
        raise MetaDataError(f"space shape {shape} does not match the frames "
                            f"{list(shape_xyz)} (columns, rows, frames)")


# ----------------------------------------------------------------------------- helpers
def _is_int(v: Any) -> bool:
    return type(v) is int


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float
        return False


def _latin1(s: str) -> bool:
    try:
        s.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


def _is_base64(s: str) -> bool:
    return len(s) % 4 == 0 and _BASE64.fullmatch(s) is not None


def _number_text(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", _NoneType: "null"}.get(type(v), type(v).__name__)


def _short(v: Any, width: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= width else s[:width - 3] + "..."


def _name(key: Any) -> str:
    if not (isinstance(key, str) and len(key) == 8 and _HEX.fullmatch(key)):
        return _short(key)
    from pydicom.datadict import keyword_for_tag

    kw = keyword_for_tag(int(key, 16))
    return f"({key[:4]},{key[4:]})" + (f" {kw}" if kw else "")
