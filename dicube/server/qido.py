"""DICOM attribute matching for queries (PS3.4 C.2.2.2), shared by QIDO-RS and C-FIND.

:func:`matcher` turns one query key (keyword, value) into a predicate on an index value:
universal matching (empty value or ``*``), single value matching (case-sensitive, person
names case-insensitive), wildcards ``*`` and ``?`` for text VRs, lists of UIDs (and of
code strings) separated by backslashes, and ranges ``a-b``, ``a-``, ``-b`` for dates and
times. A malformed key raises ValueError (a web request answers 400).
"""
from __future__ import annotations

import datetime
import re
from functools import lru_cache
from typing import Callable, Optional

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

__all__ = ["matcher", "keyword_of", "vr_of", "UNIVERSAL"]

UNIVERSAL = None  # matcher() returns it for a key that matches everything
#: Longest query value accepted (a list of 60 UIDs; any single DICOM value is shorter).
MAX_VALUE = 4096
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DATETIME = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT", "PN"})
_INT_VRS = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})


def keyword_of(name: str) -> str:
    """The DICOM keyword named by ``name`` (a keyword or ``GGGGEEEE``); ValueError if unknown."""
    if _TAG.match(name):
        kw = keyword_for_tag(int(name, 16))
        if kw:
            return kw
    elif tag_for_keyword(name) is not None:
        return name
    raise ValueError(f"unknown attribute {name!r}")


def vr_of(keyword: str) -> str:
    """The VR the data dictionary gives ``keyword`` (the first of a choice such as US or SS)."""
    if keyword == "ModalitiesInStudy":
        return "CS"
    vr = dictionary_VR(tag_for_keyword(keyword))
    return vr.split(" ")[0]


def _date(text: str, keyword: str) -> str:
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{keyword}: {text!r} is not a date YYYYMMDD")
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ValueError(f"{keyword}: {text!r} is not a valid date") from None
    return text


def _time(text: str, keyword: str) -> str:
    t = text.replace(":", "")
    if not _TIME.match(t) or int(t[:2]) > 23 or (len(t) >= 4 and int(t[2:4]) > 59) \
            or (len(t) >= 6 and int(t[4:6]) > 60):
        raise ValueError(f"{keyword}: {text!r} is not a time HHMMSS.FFFFFF")
    return t


def _datetime(text: str, keyword: str) -> str:
    if not _DATETIME.match(text):
        raise ValueError(f"{keyword}: {text!r} is not a date-time YYYYMMDDHHMMSS.FFFFFF")
    return text


_PARSE = {"DA": _date, "TM": _time, "DT": _datetime}


def _time_key(stored: str) -> str:
    return stored.replace(":", "")


def _range(vr: str, value: str, keyword: str) -> Callable[[str], bool]:
    """Single value or range matching of a date, time or date-time (a DT range cannot
    carry a negative UTC offset: its '-' would be ambiguous)."""
    parse = _PARSE[vr]
    key = _time_key if vr == "TM" else str
    if "-" not in value:
        exact = parse(value, keyword)
        if vr == "DA":
            return lambda stored: stored == exact
        return lambda stored: bool(stored) and key(stored).startswith(exact)
    if value.count("-") > 1:
        raise ValueError(f"{keyword}: malformed range {value!r}")
    lo, _, hi = value.partition("-")
    if not lo and not hi:
        raise ValueError(f"{keyword}: malformed range {value!r}")
    lo = parse(lo, keyword) if lo else ""
    hi = parse(hi, keyword) if hi else ""
    if lo and hi and lo > hi:
        raise ValueError(f"{keyword}: range {value!r} ends before it starts")
    top = hi + "\uffff"  # 2023 includes 20231231: a partial upper bound covers its span

    def in_range(stored: str) -> bool:
        s = key(stored)
        return bool(s) and (not lo or s >= lo) and (not hi or s <= top)
    return in_range


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    """A test of text against ``pattern`` (``*`` any run, ``?`` one character), in time
    proportional to len(pattern) x len(text) whatever the stars (a regular expression with
    several ``.*`` backtracks exponentially on hostile patterns or values)."""
    while "**" in pattern:
        pattern = pattern.replace("**", "*")
    if pattern.count("*") <= 1:  # one star cannot backtrack more than once per position
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        rx = re.compile(body + r"\Z", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
        return lambda text: rx.match(text) is not None
    pat = pattern.casefold() if ignore_case else pattern
    return lambda text: _glob(pat, text.casefold() if ignore_case else text)


def _glob(p: str, t: str) -> bool:
    """Wildcard matching with one backtracking point (the last star)."""
    pi = ti = 0
    star, mark = -1, 0
    np, nt = len(p), len(t)
    while ti < nt:
        if pi < np and (p[pi] == "?" or p[pi] == t[ti]):
            pi += 1
            ti += 1
        elif pi < np and p[pi] == "*":
            star, mark = pi, ti
            pi += 1
        elif star >= 0:
            pi = star + 1
            mark += 1
            ti = mark
        else:
            return False
    while pi < np and p[pi] == "*":
        pi += 1
    return pi == np


def _text(value: str, vr: str, fuzzy: bool) -> Callable[[str], bool]:
    pn = vr == "PN"
    if pn and fuzzy:  # any name component starting with the value, case-insensitive
        test = _wildcard(value.rstrip("*") + "*", True)
        return lambda stored: any(test(p) for p in re.split(r"[\^ =,]+", stored) if p) \
            or test(stored)
    if "*" in value or "?" in value:
        return _wildcard(value, pn)
    if pn:
        low = value.lower()
        return lambda stored: stored.lower() == low
    return lambda stored: stored == value


def matcher(keyword: str, value: str, fuzzy: bool = False) -> Optional[Callable[[object], bool]]:
    """A predicate on the index value of ``keyword`` (str, int or a tuple of values: any
    matches) for the query ``value``; None (UNIVERSAL) when the key matches everything.
    Raises ValueError for a malformed value."""
    vr = vr_of(keyword)
    if len(value) > MAX_VALUE:
        raise ValueError(f"{keyword}: a query value of {len(value)} characters (at most {MAX_VALUE})")
    value = value.strip(" ") if vr != "PN" else value
    if value in ("", "*") or (vr == "PN" and value.strip("*") == "" and value):
        return UNIVERSAL
    if vr == "SQ" or vr.startswith("O") or vr == "UN":
        raise ValueError(f"{keyword}: matching on {vr} attributes is not supported")
    if vr == "UI":
        uids = value.split("\\")
        for u in uids:
            if not _UID.match(u) or len(u) > 64:
                raise ValueError(f"{keyword}: {u!r} is not a UID")
        wanted = frozenset(uids)
        return _any(lambda stored: stored in wanted)
    if vr in _PARSE:
        return _any(_range(vr, value, keyword))
    if vr in _INT_VRS:
        try:
            wanted_n = {int(v) for v in value.split("\\")}
        except ValueError:
            raise ValueError(f"{keyword}: {value!r} is not an integer") from None
        return _any(lambda stored: _int(stored) in wanted_n)
    if vr in ("DS", "FL", "FD"):
        try:
            wanted_f = {float(v) for v in value.split("\\")}
        except ValueError:
            raise ValueError(f"{keyword}: {value!r} is not a number") from None
        return _any(lambda stored: _float(stored) in wanted_f)
    if vr == "CS" and "\\" in value:
        tests = [_text(v, vr, False) for v in value.split("\\")]
        return _any(lambda stored: any(t(stored) for t in tests))
    return _any(_text(value, vr, fuzzy))


def _int(v) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v) -> Optional[float]:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _any(test: Callable[[str], bool]) -> Callable[[object], bool]:
    def match(stored) -> bool:
        if isinstance(stored, tuple):
            return any(test(s) for s in stored)
        if isinstance(stored, str):
            # a multi-valued text value matches when any of its values does
            return test(stored) or ("\\" in stored and any(test(s) for s in stored.split("\\")))
        return test(stored)
    return match
