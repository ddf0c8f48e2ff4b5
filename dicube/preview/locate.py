"""Finding a series under a root laid out as ``{root}/{uid}/...`` or ``{root}/{uid}.dcbs``.

A series id is a full name (UUID with hyphens, DICOM UID, any folder name), 32 hex digits
(matched with or without the UUID hyphens), or a prefix ending in ``*``.

Without a root, SOURCE is a local path or a URL; only a series id of the forms used by
the default root (32 hex digits, the UUID form, or hex digits ending in ``*``) is looked up
there. Anything else that does not exist locally is "no such file or folder", at once and
without any network access.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from typing import Optional

from ..exceptions import DicomCubeError, MultipleSeriesError
from ..storage.sources import TransferStats, is_url, join, list_children, missing_local

__all__ = ["DEFAULT_ROOT", "resolve_source", "find_series", "uid_variants", "is_series_id"]

#: Root used when SOURCE is a bare series id and no --root is given (NCI Imaging Data Commons).
DEFAULT_ROOT = "s3://idc-open-data"
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F][0-9a-fA-F-]*\*$")


def is_series_id(source: str) -> bool:
    """Whether ``source`` has a form looked up under :data:`DEFAULT_ROOT` when it is no
    local path: 32 hex digits, the UUID form (8-4-4-4-12), or hex digits ending in ``*``."""
    return bool(_HEX32.match(source) or _UUID.match(source) or _HEX_PREFIX.match(source))


def uid_variants(uid: str) -> list[str]:
    """Names a series id may have on storage: as given, and the 32-hex / UUID forms."""
    out = [uid]
    if _HEX32.match(uid):
        h = uid.lower()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    elif _HEX32.match(uid.replace("-", "")):
        out.append(uid.replace("-", "").lower())
    return out


def _norm(name: str) -> str:
    return name.replace("-", "").lower()


def _stem(name: str) -> str:
    return name[:-5] if name.lower().endswith(".dcbs") else name


def _pick(root: str, uid: str, names: list[str]) -> str:
    """The entry of ``names`` matching ``uid`` (.dcbs preferred over a folder)."""
    if uid.endswith("*"):
        pre = _norm(uid[:-1])
        hits = [n for n in names if _norm(_stem(n)).startswith(pre)]
    else:
        wanted = {_norm(v) for v in uid_variants(uid)} | {v for v in uid_variants(uid)}
        hits = [n for n in names if _stem(n) in wanted or _norm(_stem(n)) in wanted]
    series = sorted({_stem(n) for n in hits})
    if not series:
        raise DicomCubeError(f"no series matching {uid!r}", root)
    if len(series) > 1:
        raise MultipleSeriesError(f"{len(series)} series match {uid!r}: {', '.join(series[:10])}"
                                  + (" ..." if len(series) > 10 else ""), root, series=series)
    dcbs = [n for n in hits if n.lower().endswith(".dcbs")]
    return (dcbs or hits)[0]


def _s3_candidates(root: str, uid: str) -> list[str]:
    """Entry names under an S3 root that may match ``uid``, without listing the whole root
    (which may hold millions of series): listing starts at the id's first characters."""
    from ..storage.sources import _remote_error, _store_for

    store, prefix = _store_for(root)
    try:
        return _list_matching(store, prefix, uid)
    except Exception as exc:  # obstore raises its own exception types
        raise _remote_error(exc, root) from exc


def _list_matching(store, prefix: str, uid: str) -> list[str]:
    import obstore

    prefix = prefix.strip("/")
    base = prefix + "/" if prefix else ""
    names: set = set()
    stems = [uid[:-1]] if uid.endswith("*") else uid_variants(uid)
    for stem in stems:
        # objects sort after "base + stem"; the first ones belong to the matching series
        seen_other = False
        for batch in obstore.list(store, prefix or None, offset=base + stem[:-1] if stem else None,
                                  chunk_size=1000):
            for obj in batch:
                first = obj["path"][len(base):].split("/", 1)[0]
                if _norm(_stem(first)).startswith(_norm(stem)) or _stem(first) == stem:
                    names.add(first)
                elif first > stem:
                    seen_other = True
                    break
            if seen_other or len(names) > 50:
                break
    return sorted(names)


def find_series(root: str, uid: str, stats: Optional[TransferStats] = None) -> str:
    """Location (path or URL) of series ``uid`` under ``root``."""
    if not is_url(root) and not os.path.isdir(root):
        if os.path.exists(root):
            raise DicomCubeError("not a folder (--root names the folder holding the series)", root)
        raise missing_local(root)
    if is_url(root) and urllib.parse.urlsplit(root).scheme.lower() == "s3":
        names = _s3_candidates(root, uid)
    elif not is_url(root) and not uid.endswith("*"):
        names = [n for v in uid_variants(uid) for n in (v, v + ".dcbs")
                 if os.path.exists(os.path.join(root, n))]
    else:
        names = list_children(root, stats)
    return join(root, _pick(root, uid, names))


def resolve_source(source: str, root: Optional[str] = None,
                   stats: Optional[TransferStats] = None) -> str:
    """SOURCE as given (a path or URL), or, with ``root`` or for a series id (see
    :func:`is_series_id`), the series' location under ``root`` (default
    :data:`DEFAULT_ROOT`). Anything else that does not exist locally raises
    :class:`~dicube.exceptions.SourceNotFoundError` (or SourceError for a broken link or a
    URL scheme dicube cannot read) without network access."""
    if root is not None:
        return find_series(root, source, stats)
    if is_url(source) or os.path.exists(source):
        return source
    if is_series_id(source) and not os.path.lexists(source):
        return find_series(DEFAULT_ROOT, source, stats)
    raise missing_local(source)
