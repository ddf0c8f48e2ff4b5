"""The DICOMweb application: QIDO-RS over an :class:`~dicube.server.index.ArchiveIndex`,
WADO-RS from :mod:`dicube.server.wado`, optional authentication, read-only.

Routes live under ``/dicom-web`` (as Orthanc's). Searches answer ``application/dicom+json``
(PS3.18 F.2); no match is ``200`` with ``[]`` (PS3.18 8.3.4.4.1 said 204, CP-2473 makes it
200 as DIMSE and IHE do, and every client reads an empty array). A malformed query is 400
with a JSON ``{"error": ...}`` naming the problem; a study with an unreadable file answers
500 naming the file. JSON answers are gzipped for clients that accept it (above 1 KB);
pixel data never (a compressed codestream does not shrink, a raw one costs more CPU than
the bytes saved on any real network).
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..dicom.dicom_json import _pn_component
from . import qido, wado
from .wado import client_url
from .index import LEVELS, ArchiveIndex, level_keys

__all__ = ["create_app", "Auth", "serve", "dicom_json", "BASE"]

log = logging.getLogger("dicube.server")

BASE = "/dicom-web"
DICOM_JSON = "application/dicom+json"
#: Content types never gzipped: pixel data and images (PS3.18 allows it; it costs more
#: time than it saves on loopback and LAN, and HTJ2K does not shrink).
NO_GZIP = DEFAULT_EXCLUDED_CONTENT_TYPES + ("application/dicom", "application/octet-stream",
                                            "multipart/*", "image/*")
#: Most results one search answers (more: page with offset; the Warning header says so).
MAX_RESULTS = 10000
#: Query parameters PS3.18 defines that a search accepts and ignores.
_IGNORED_PARAMS = {"charset", "accept", "_", "orderby"}

# Attributes a search returns by default (PS3.18 Table 10.6.3-3/4/5) beyond the index's own.
_DEFAULT = {lv: level_keys(lv) for lv in LEVELS}


@dataclass(frozen=True)
class Auth:
    """Credentials a client must send: a bearer token, or HTTP basic user and password."""

    token: Optional[str] = None
    user: Optional[str] = None
    password: Optional[str] = None

    @classmethod
    def from_env(cls, env=os.environ) -> "Optional[Auth]":
        """``DICUBE_SERVE_TOKEN`` (bearer) and/or ``DICUBE_SERVE_USER`` with
        ``DICUBE_SERVE_PASSWORD`` (basic); None when neither is set."""
        token = env.get("DICUBE_SERVE_TOKEN") or None
        user, password = env.get("DICUBE_SERVE_USER") or None, env.get("DICUBE_SERVE_PASSWORD")
        if user is not None and not password:
            raise ValueError("DICUBE_SERVE_USER is set without DICUBE_SERVE_PASSWORD")
        if token is None and user is None:
            return None
        return cls(token, user, password if user else None)

    def accepts(self, header: str) -> bool:
        scheme, _, cred = header.partition(" ")
        scheme = scheme.lower()
        cred = cred.strip()
        if scheme == "bearer" and self.token is not None:
            return hmac.compare_digest(cred.encode(), self.token.encode())
        if scheme == "basic" and self.user is not None:
            try:
                user, _, pw = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            ok_user = hmac.compare_digest(user.encode(), self.user.encode())
            return hmac.compare_digest(pw.encode(), (self.password or "").encode()) and ok_user
        return False

    def challenge(self) -> str:
        return ", ".join((['Basic realm="dicube"'] if self.user else [])
                         + (['Bearer realm="dicube"'] if self.token else []))


class _AuthMiddleware:
    """401 for every HTTP request without the credentials of ``auth``."""

    def __init__(self, app, auth: Auth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = next((v.decode("latin-1") for k, v in scope["headers"]
                           if k == b"authorization"), "")
            if not self.auth.accepts(header):
                response = JSONResponse({"error": "authentication required"}, 401,
                                        {"WWW-Authenticate": self.auth.challenge()})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def scanning_warning(index) -> Optional[str]:
    """The Warning header value of answers made while the first scan runs, else None."""
    if index.ready:
        return None
    done, total = index.scan_progress()
    return (f"299 dicube: Index incomplete: {done} of {total} files scanned so far; "
            "results may be missing")


class _ScanningMiddleware:
    """While the index's first scan runs: every answer carries a Warning (299) saying how
    far it got, and a retrieval of what is not indexed yet answers 503 with Retry-After
    (it may exist) instead of 404."""

    RETRY_AFTER = 2

    def __init__(self, app, index):
        self.app = app
        self.index = index

    async def __call__(self, scope, receive, send):
        warning = scanning_warning(self.index) if scope["type"] == "http" else None
        if warning is None:
            await self.app(scope, receive, send)
            return
        dropping = False

        async def send_with_warning(message):
            nonlocal dropping
            if message["type"] == "http.response.start":
                if message["status"] == 404 and scope["method"] in ("GET", "HEAD"):
                    dropping = True
                    done, total = self.index.scan_progress()
                    response = JSONResponse(
                        {"error": f"not found among the {done} of {total} files indexed so far; "
                                  "the first scan of the archive is still running"},
                        503, {"Retry-After": str(self.RETRY_AFTER), "Warning": warning})
                    await response(scope, receive, send)
                    return
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (b"warning", warning.encode("latin-1"))]
            elif dropping:
                return
            await send(message)

        await self.app(scope, receive, send_with_warning)


# ---------------------------------------------------------------------- DICOM JSON
_VR_CACHE: dict = {}


def _vr(kw: str) -> str:
    vr = _VR_CACHE.get(kw)
    if vr is None:
        vr = _VR_CACHE[kw] = qido.vr_of(kw)
    return vr


def _tag(kw: str) -> str:
    return f"{qido.tag_for_keyword(kw):08X}"


def element(kw: str, value) -> dict:
    """The DICOM JSON element of an index value."""
    vr = _vr(kw)
    if value == "" or value is None:
        return {"vr": vr}
    if isinstance(value, int):
        return {"vr": vr, "Value": [value]}
    parts = value.split("\\")
    if vr == "PN":
        return {"vr": vr, "Value": [_pn_component(p) or None for p in parts]}
    if vr in ("IS", "US", "SS", "UL", "SL"):
        out = []
        for p in parts:
            try:
                out.append(int(p))
            except ValueError:
                return {"vr": vr, "Value": parts}
        return {"vr": vr, "Value": out}
    if vr in ("DS", "FL", "FD"):
        try:
            return {"vr": vr, "Value": [float(p) for p in parts]}
        except ValueError:
            return {"vr": vr, "Value": parts}
    return {"vr": vr, "Value": parts}


_PLAIN = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR",
                    "UT"})


@lru_cache(maxsize=256)
def _layout(keys: tuple) -> tuple:
    """(keyword, tag, VR, plain text) of ``keys``, tags ascending."""
    return tuple(sorted(((kw, _tag(kw), _vr(kw), _vr(kw) in _PLAIN) for kw in set(keys)),
                        key=lambda t: t[1]))


def dicom_json(record: dict, keys: tuple) -> dict:
    """One PS3.18 F.2 result: the ``keys`` of ``record`` (index values), tags ascending."""
    out = {}
    get = record.get
    for kw, tag, vr, plain in _layout(keys):
        v = get(kw, "")
        if v == "":
            out[tag] = {"vr": vr}
        elif plain and "\\" not in v:
            out[tag] = {"vr": vr, "Value": [v]}
        else:
            out[tag] = element(kw, v)
    return out


# ---------------------------------------------------------------------- the app
class _Qido:
    """QIDO-RS handlers bound to an index."""

    #: Encoded results kept (study and series level, default attributes): reset when the
    #: index changes or the cache is full. About 1 KB each.
    CACHE_ENTRIES = 20000

    def __init__(self, index: ArchiveIndex, refresh_interval: Optional[float],
                 max_results: int = MAX_RESULTS):
        self.index = index
        self.refresh_interval = refresh_interval
        self.max_results = max(1, int(max_results))
        self._cache: dict = {}
        self._cache_view = None

    async def _fresh(self) -> None:
        ix = self.index
        if self.refresh_interval is not None and ix._watch is None:
            if time.monotonic() - ix.last_refresh >= self.refresh_interval:
                await run_in_threadpool(ix.refresh_if_older, self.refresh_interval)

    async def search(self, request: Request, level: str, fixed: dict) -> Response:
        if not _accepts_json(request.headers.get("accept", "")):
            return _error(406, "searches answer application/dicom+json only (no XML)")
        await self._fresh()
        started = time.perf_counter()
        try:
            filters, limit, offset, fuzzy, extra = _parse_query(request, level)
        except ValueError as exc:
            return _error(400, str(exc))
        for kw, uid in fixed.items():
            if not qido._UID.match(uid):
                return _error(400, f"{kw}: {uid!r} is not a UID")
            filters[kw] = uid
        study = fixed.get("StudyInstanceUID")
        if study is not None:
            bad = self.index.study_errors(study)
            if bad:
                return _study_error(study, bad)
        view = self.index._view
        limit = self.max_results if limit is None else min(limit, self.max_results)
        try:
            # one more than asked tells whether to warn that results were left out
            found = self.index.find(level, filters, limit=limit + 1, offset=offset, fuzzy=fuzzy)
        except ValueError as exc:
            return _error(400, str(exc))
        headers = {}
        if len(found) > limit:
            found = found[:limit]
            headers["Warning"] = "299 dicube: There are additional results that can be requested"
        keys = _DEFAULT[level] + extra + (("RetrieveURL",) if level != "PATIENT" else ())
        base = str(client_url(request, request.base_url)).rstrip("/") + BASE
        if extra or level not in ("STUDY", "SERIES"):
            out = []
            for rec in found:
                rec["RetrieveURL"] = _retrieve_url(base, level, rec)
                out.append(dicom_json(rec, keys))
            if extra:  # file heads are read: off the event loop
                await run_in_threadpool(self._add_extra, level, found, out, extra)
            body = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        else:
            body = self._cached_body(level, found, keys, base, view)
        # the server's own time, for clients and benchmarks to tell it from the network's
        headers["Server-Timing"] = f"qido;dur={(time.perf_counter() - started) * 1e3:.3f}"
        return Response(body, 200, headers, media_type=DICOM_JSON)

    def _cached_body(self, level: str, found: list, keys: tuple, base: str, view) -> bytes:
        """The JSON array of ``found``, each result encoded once per index state."""
        cache = self._cache
        if self._cache_view is not self.index._view or len(cache) > self.CACHE_ENTRIES:
            cache = self._cache = {}
            self._cache_view = self.index._view
        keep = view is self._cache_view  # results of an older state are not kept
        parts = []
        for rec in found:
            key = (level, base, rec["StudyInstanceUID"], rec.get("SeriesInstanceUID"))
            data = cache.get(key)
            if data is None:
                rec["RetrieveURL"] = _retrieve_url(base, level, rec)
                data = json.dumps(dicom_json(rec, keys), separators=(",", ":"),
                                  ensure_ascii=False).encode("utf-8")
                if keep:
                    cache[key] = data
            parts.append(data)
        return b"[" + b",".join(parts) + b"]"

    def _add_extra(self, level: str, found: list, out: list, extra: tuple) -> None:
        """includefield attributes the index does not hold: read from the file's metadata
        (the first instance of the study or series)."""
        wanted = [kw for kw in extra if kw not in _DEFAULT[level]]
        if not wanted or level == "PATIENT":
            return
        for rec, item in zip(found, out):
            refs = self.index.instances(rec["StudyInstanceUID"], rec.get("SeriesInstanceUID"),
                                        rec.get("SOPInstanceUID"))
            if not refs:
                continue
            try:
                meta = self.index.streaming_reader(refs[0].path).meta
            except Exception as exc:  # the file changed since it was indexed
                log.warning("%s: %s", refs[0].path, exc)
                continue
            found_elems = {}
            for kw in wanted:
                tag = _tag(kw)
                elem = meta.get_element(tag, refs[0].frame)
                if elem is not None and "InlineBinary" not in elem:
                    found_elems[tag] = elem
            item.update(_web_json(found_elems))
        for item in out:
            for k in sorted(item):
                item[k] = item.pop(k)


_JSON_TYPES = frozenset({"*/*", "application/*", "application/json", DICOM_JSON})


def _accepts_json(accept: str) -> bool:
    """Whether an Accept header allows DICOM JSON (no header: yes; q=0 refuses a type)."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        if media.lower() in _JSON_TYPES and not any(
                p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000")
                for p in params):
            return True
    return False


def _web_json(elements: dict) -> dict:
    """PS3.18 F.2 form of dicube's lossless DICOM JSON (DS/IS as numbers, no padding)."""
    try:
        from .wado import web_json
    except ModuleNotFoundError:  # pragma: no cover - WADO not installed: as stored
        return elements
    return web_json(elements)


def _retrieve_url(base: str, level: str, rec: dict) -> str:
    if level == "STUDY":
        return f"{base}/studies/{rec['StudyInstanceUID']}"
    if level == "SERIES":
        return f"{base}/studies/{rec['StudyInstanceUID']}/series/{rec['SeriesInstanceUID']}"
    if level == "IMAGE":
        return (f"{base}/studies/{rec['StudyInstanceUID']}/series/{rec['SeriesInstanceUID']}"
                f"/instances/{rec['SOPInstanceUID']}")
    return ""


def _parse_query(request: Request, level: str):
    """(filters, limit, offset, fuzzy, includefield keywords) of a QIDO query string;
    ValueError for a malformed one."""
    filters: dict = {}
    limit = None
    offset = 0
    fuzzy = False
    extra: list = []
    for name, value in request.query_params.multi_items():
        if name == "limit":
            limit = _count(name, value)
        elif name == "offset":
            offset = _count(name, value)
        elif name == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"fuzzymatching must be true or false, not {value!r}")
            fuzzy = value.lower() == "true"
        elif name == "includefield":
            for field in value.split(","):
                field = field.strip()
                if field == "all":
                    extra.extend(kw for kw in level_keys(level) if kw not in extra)
                elif field:
                    kw = qido.keyword_of(field)
                    if kw not in extra:
                        extra.append(kw)
        elif name in _IGNORED_PARAMS:
            continue
        else:
            if "." in name:
                raise ValueError(f"{name}: sequence matching is not supported")
            kw = qido.keyword_of(name)
            if kw in filters:
                raise ValueError(f"{kw} given twice")
            filters[kw] = value
    return filters, limit, offset, fuzzy, tuple(kw for kw in extra if kw not in _DEFAULT[level])


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    n = int(value)
    if n > 10**9:
        raise ValueError(f"{name} {value} is too large")
    return n


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status)


def _study_error(study: str, bad: dict) -> JSONResponse:
    files = {os.fspath(p): reason for p, reason in bad.items()}
    return _error(500, f"study {study}: {len(files)} file(s) cannot be read",
                  study=study, files=files)


def create_app(index: ArchiveIndex, *, auth: Optional[Auth] = None,
               refresh_interval: Optional[float] = 2.0, gzip: bool = True,
               cors_origins: Sequence[str] = (), max_results: int = MAX_RESULTS) -> Starlette:
    """The DICOMweb application over ``index`` (``/dicom-web/...``).

    ``auth``: credentials every request must carry (401 otherwise); ``refresh_interval``:
    when the index is not watched, a search rescans the folder if the last scan is older
    (None: never); ``gzip``: compress JSON answers for clients that accept it;
    ``cors_origins``: web origins allowed to call from a browser (e.g. an OHIF viewer
    served from another port; ``"*"`` for any), none by default; ``max_results``: the
    most results one search answers (a larger or no ``limit`` is cut, with a Warning).
    While the index's first scan runs (``ArchiveIndex(wait=False)``) answers carry
    ``Warning: 299 dicube: Index incomplete: N of M files scanned so far...`` and a
    retrieval of an unknown UID is 503 with ``Retry-After`` rather than 404.
    """
    q = _Qido(index, refresh_interval, max_results)

    async def studies(request: Request) -> Response:
        return await q.search(request, "STUDY", {})

    async def all_series(request: Request) -> Response:
        return await q.search(request, "SERIES", {})

    async def study_series(request: Request) -> Response:
        return await q.search(request, "SERIES", {"StudyInstanceUID": request.path_params["study"]})

    async def all_instances(request: Request) -> Response:
        return await q.search(request, "IMAGE", {})

    async def study_instances(request: Request) -> Response:
        return await q.search(request, "IMAGE", {"StudyInstanceUID": request.path_params["study"]})

    async def series_instances(request: Request) -> Response:
        return await q.search(request, "IMAGE", {"StudyInstanceUID": request.path_params["study"],
                                                 "SeriesInstanceUID": request.path_params["series"]})

    async def read_only(request: Request) -> Response:
        return JSONResponse({"error": "STOW-RS is not supported: dicube serve is read-only"},
                            405, {"Allow": "GET"})

    routes = [
        Route("/studies", studies, methods=["GET"]),
        Route("/studies", read_only, methods=["POST", "PUT", "DELETE"]),
        Route("/studies/{study}", read_only, methods=["POST", "PUT", "DELETE"]),
        Route("/series", all_series, methods=["GET"]),
        Route("/instances", all_instances, methods=["GET"]),
        Route("/studies/{study}/series", study_series, methods=["GET"]),
        Route("/studies/{study}/instances", study_instances, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", series_instances, methods=["GET"]),
    ]
    routes += list(wado.routes(index))
    middleware = []
    if cors_origins:  # outermost: a browser's preflight carries no credentials
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins),
                                     allow_methods=["GET", "HEAD", "OPTIONS"],
                                     allow_headers=["Authorization", "Accept", "Range"],
                                     expose_headers=["Warning", "Content-Type", "Content-Length"]))
    if auth is not None:
        middleware.append(Middleware(_AuthMiddleware, auth=auth))
    if gzip:
        middleware.append(Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6,
                                     exclude_content_types=NO_GZIP))
    middleware.append(Middleware(_ScanningMiddleware, index=index))
    app = Starlette(routes=[Mount(BASE, routes=routes)], middleware=middleware)
    app.state.index = index
    return app


def serve(root, http: Optional[str] = "127.0.0.1:8042", dimse: Optional[str] = None,
          readonly: bool = True, **kwargs) -> None:
    """Serve ``root`` until interrupted (blocking); see :mod:`dicube.server.run`."""
    from .run import serve as _serve

    _serve(root, http=http, dimse=dimse, readonly=readonly, **kwargs)
