"""Content negotiation of WADO-RS (PS3.18 8.7): which transfer syntax or media type a
client accepts, from its ``Accept`` header fields.

:func:`parse_accept` reads one or more ``Accept`` field values into :class:`MediaRange`
entries (``q`` values, quoted parameters). :func:`instance_syntax` picks the transfer
syntax of ``multipart/related; type="application/dicom"`` parts among those a file can
be served in; :func:`frame_media` the media type of bulk frames; :func:`rendered_media`
that of a rendered image. A malformed field raises ValueError (HTTP 400); nothing
acceptable raises :class:`NotAcceptable` (HTTP 406) with a message saying what we offer.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = ["MediaRange", "NotAcceptable", "parse_accept", "instance_syntax", "frame_media",
           "rendered_media", "EXPLICIT_LE", "HTJ2K_SYNTAXES"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                                    "1.2.840.10008.1.2.4.203")
HTJ2K_SYNTAXES = (HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K)
#: Media types of bulk frames we produce: native bytes, an HTJ2K codestream.
OCTET, JPHC, JPH = "application/octet-stream", "image/jphc", "image/jph"
_MAX_FIELD = 8192  # characters of all Accept fields together; more is refused, not parsed


class NotAcceptable(Exception):
    """Nothing the client accepts can be produced (HTTP 406); ``str()`` says why."""


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept field: ``type`` ("type/subtype", lower case), ``params``
    (lower-case names, unquoted values, ``q`` removed), ``q`` (0..1), ``order`` (position)."""

    type: str
    params: dict = field(default_factory=dict, compare=False)
    q: float = 1.0
    order: int = 0


def _split(text: str, sep: str) -> list:
    """``text`` split at ``sep`` outside double quotes (backslash escapes inside them)."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ValueError(f"unbalanced quotes in Accept: {text!r}")
    out.append("".join(cur))
    return out


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
        out, escaped = [], False
        for ch in v:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return v


def parse_accept(values: "Iterable[str] | str | None") -> "list[MediaRange]":
    """Every media range of the Accept field value(s) ``values`` (several fields are one
    list, RFC 9110 5.3), in order; [] when there is none. ValueError when malformed."""
    if values is None:
        return []
    return list(_parse_accept((values,) if isinstance(values, str) else tuple(values)))


@functools.lru_cache(maxsize=256)  # clients send the same few fields again and again
def _parse_accept(values: tuple) -> tuple:
    if sum(len(v) for v in values) > _MAX_FIELD:
        raise ValueError(f"Accept is longer than {_MAX_FIELD} characters")
    out = []
    for value in values:
        for entry in _split(value, ","):
            if not entry.strip():
                continue
            parts = _split(entry, ";")
            mtype = parts[0].strip().lower()
            main, slash, sub = mtype.partition("/")
            if not slash or not main or not sub or " " in mtype or (main == "*" and sub != "*"):
                raise ValueError(f"not a media range in Accept: {entry.strip()!r}")
            params, q = {}, 1.0
            for p in parts[1:]:
                if not p.strip():
                    continue
                name, eq, val = p.partition("=")
                name = name.strip().lower()
                if not eq or not name:
                    raise ValueError(f"malformed parameter {p.strip()!r} in Accept")
                val = _unquote(val)
                if name == "q":
                    try:
                        q = float(val)
                    except ValueError:
                        q = -1.0
                    if not 0.0 <= q <= 1.0 or len(val) > 5:
                        raise ValueError(f"q value {val!r} in Accept is not a number 0..1")
                else:
                    params[name] = val
            out.append(MediaRange(mtype, params, q, len(out)))
    return tuple(out)


def _ranked(ranges: Sequence[MediaRange]) -> list:
    """Ranges with q > 0, best first (higher q, then more specific, then earlier)."""
    def specificity(r: MediaRange) -> int:
        return 0 if r.type == "*/*" else 1 if r.type.endswith("/*") else 2

    return sorted((r for r in ranges if r.q > 0), key=lambda r: (-r.q, -specificity(r), r.order))


def _wants_dicom(r: MediaRange) -> bool:
    """Whether a range admits multipart/related parts of application/dicom."""
    if r.type in ("*/*", "multipart/*"):
        return True
    if r.type == "multipart/related":
        return r.params.get("type", "application/dicom").lower() in (
            "application/dicom", "application/*", "*/*")
    return r.type in ("application/dicom", "application/*")


def _excluded(ranges: Sequence[MediaRange], want) -> set:
    return {r.params["transfer-syntax"] for r in ranges
            if r.q == 0 and want(r) and r.params.get("transfer-syntax", "*") != "*"}


def _names(syntaxes: Iterable[str]) -> str:
    from ..dicom.export import syntax_name

    return ", ".join(syntax_name(t) for t in syntaxes)


def instance_syntax(ranges: Sequence[MediaRange], available: Sequence[str]) -> str:
    """The transfer syntax to send an instance in: ``available`` lists the file's syntaxes,
    the one served "as stored" first. No Accept, or no ``transfer-syntax`` parameter, means
    Explicit VR Little Endian (PS3.18 Table 8.7.3-2); ``*`` the first available."""
    if not ranges:
        ranges = [MediaRange("multipart/related", {"type": "application/dicom"})]
    excluded = _excluded(ranges, _wants_dicom)
    asked = []
    for r in _ranked(ranges):
        if not _wants_dicom(r):
            continue
        ts = r.params.get("transfer-syntax", EXPLICIT_LE).strip()
        asked.append(ts)
        if ts == "*":
            for t in available:
                if t not in excluded:
                    return t
        elif ts in available and ts not in excluded:
            return ts
    if not asked:
        raise NotAcceptable('instances are sent as multipart/related; type="application/dicom" '
                            f"only; offered: {_names(available)}")
    raise NotAcceptable(f"cannot send these instances as {', '.join(dict.fromkeys(asked))}; "
                        f"offered: {_names(available)}")


def _frame_candidates(r: MediaRange) -> list:
    """(media type, transfer syntax or None) a range may mean for a bulk frame."""
    inner, ts = r.type, None
    if r.type == "multipart/related":
        inner = r.params.get("type", OCTET).lower()
    ts = r.params.get("transfer-syntax")
    if inner in ("*/*", "multipart/*"):
        return [(OCTET, ts)]
    if inner == "application/*":
        return [(OCTET, ts)]
    if inner == "image/*":
        return [(JPHC, ts), (JPH, ts)]
    if inner in (OCTET, JPHC, JPH):
        return [(inner, ts)]
    return []


def frame_media(ranges: Sequence[MediaRange], available: Sequence[str]) -> "tuple[str, str]":
    """(media type, transfer syntax) of bulk frames: application/octet-stream (native
    bytes, Explicit VR Little Endian) by default; image/jphc or image/jph (the HTJ2K
    codestream) when accepted and the file has one (``available`` HTJ2K syntaxes)."""
    if not ranges:
        return OCTET, EXPLICIT_LE
    htj2k = [t for t in available if t in HTJ2K_SYNTAXES]
    asked = []
    for r in _ranked(ranges):
        for media, ts in _frame_candidates(r):
            asked.append(media + (f"; transfer-syntax={ts}" if ts else ""))
            if media == OCTET:
                if ts in (None, "*", EXPLICIT_LE):
                    return OCTET, EXPLICIT_LE
            elif htj2k:
                if ts in (None, "*"):
                    return media, htj2k[0]
                if ts in htj2k:
                    return media, ts
                if ts == HTJ2K:  # any HTJ2K codestream meets the general HTJ2K syntax
                    return media, HTJ2K
    what = ", ".join(dict.fromkeys(asked)) or ", ".join(r.type for r in ranges)
    offer = "application/octet-stream" + (", image/jphc, image/jph" if htj2k else "")
    raise NotAcceptable(f"cannot send frames as {what}; offered: {offer}")


def rendered_media(ranges: Sequence[MediaRange]) -> str:
    """image/jpeg (the default) or image/png for a rendered image or thumbnail."""
    if not ranges:
        return "image/jpeg"
    for r in _ranked(ranges):
        inner = r.params.get("type", "").lower() if r.type == "multipart/related" else r.type
        if inner in ("image/jpeg", "image/*", "*/*", "multipart/*", ""):
            return "image/jpeg"
        if inner == "image/png":
            return "image/png"
    raise NotAcceptable("rendered images are sent as image/jpeg or image/png only; asked: "
                        + ", ".join(r.type for r in ranges))
