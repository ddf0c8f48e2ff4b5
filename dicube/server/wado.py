"""WADO-RS (PS3.18 10.4) over an :class:`~dicube.server.index.ArchiveIndex`.

Routes (under the app's ``/dicom-web``): study, series and instance retrieval as
``multipart/related; type="application/dicom"``; ``.../frames/{list}`` and
``.../bulkdata/{tag}`` as native bytes (``application/octet-stream``) or the HTJ2K
codestream (``image/jphc``, or ``image/jph`` boxed as a JPH file); ``.../metadata`` as DICOM
JSON with BulkDataURIs; ``.../rendered`` and ``.../thumbnail`` as JPEG or PNG
(:mod:`dicube.server.rendered`). Transfer syntaxes follow the ``Accept`` header
(:mod:`dicube.server.negotiation`): the stored codestream when accepted, Explicit VR Little
Endian by default, 406 for what we cannot produce.

Instances come from the index's cached :class:`~dicube.dicom.streaming.DcbStreamingReader`
per file; codec and file work runs on worker threads, a few parts ahead of the network, and
bodies are generated part by part (a study is never held in memory). An error before the
first byte is an HTTP error with a JSON message (404 unknown UIDs, 400 malformed requests,
406, 500 for an unreadable file, logged); an error after it cuts the body short (no close
delimiter, so clients see the failure) and is logged.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import struct
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Iterator, Optional

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..exceptions import DicomCubeError
from . import multipart, negotiation
from .negotiation import EXPLICIT_LE, HTJ2K, HTJ2K_SYNTAXES, JPH, OCTET, NotAcceptable
from .pixels import NotCached, store_for

__all__ = ["routes", "web_json", "parse_frames", "jph_file", "base_url"]

log = logging.getLogger("dicube.server")

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: Binary elements longer than this are sent as BulkDataURI in metadata, not inline.
BULK_MIN = 1024
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_PIXEL_DATA = "7FE00010"
_NATIVE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
#: Padding that is not part of a value (PS3.5 6.2): both ends, or trailing spaces only.
_STRIPPED = {"AE": " ", "AS": " ", "CS": " ", "DA": " ", "DT": " ", "TM": " ", "UI": "\0 "}
_PADDED = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "UR"})
#: Parts prepared ahead of the one being sent (decoding on worker threads meanwhile).
LOOKAHEAD = 4
#: Seconds above which the first part of an answer says the others are worth threads.
SLOW_PART = 0.001
_MAX_FRAME_LIST = 4096  # characters of a frame list
_pool: Optional[ThreadPoolExecutor] = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2)),
                                   thread_name_prefix="dicube-wado")
    return _pool


class _HttpError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status)


def _file_error(path, exc: BaseException) -> _HttpError:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    log.error("%s: %s", path, reason)
    return _HttpError(500, f"{os.fspath(path)}: {reason}", file=os.fspath(path))


# ---------------------------------------------------------------------- pure helpers
def parse_frames(text: str) -> "list[int]":
    """Frame numbers of a ``frames/{list}`` path segment (1-based, comma separated, no
    duplicates); ValueError when malformed."""
    if len(text) > _MAX_FRAME_LIST:
        raise ValueError(f"frame list longer than {_MAX_FRAME_LIST} characters")
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not part.isascii() or len(part) > 9 or int(part) < 1:
            raise ValueError(f"frame list {text!r}: {part!r} is not a frame number (1, 2, ...)")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise ValueError(f"frame list {text!r} repeats a frame")
    return out


def _number(text, vr: str):
    s = str(text).strip()
    try:
        if vr == "IS":
            return int(s)
        f = float(s)
        if f != f or f in (float("inf"), float("-inf")):
            return s
        return int(f) if f.is_integer() and "e" not in s.lower() and "." not in s else f
    except ValueError:
        return s  # not a number: kept as text rather than dropped


def web_json(data: dict, bulk_uri: Optional[Callable[[str], str]] = None) -> dict:
    """PS3.18 F.2 JSON of dicube's lossless DICOM JSON: DS and IS as JSON numbers, text
    without its padding, top-level binary elements longer than BULK_MIN bytes as ``BulkDataURI``
    (``bulk_uri(tag)``) when ``bulk_uri`` is given, everything else as it is."""
    out = {}
    for tag, elem in data.items():
        vr = elem.get("vr")
        if vr == "SQ" and "Value" in elem:
            elem = {"vr": "SQ", "Value": [web_json(item) for item in elem["Value"]]}
        elif vr in ("DS", "IS") and elem.get("Value"):
            elem = {"vr": vr, "Value": [None if v in (None, "") else _number(v, vr)
                                        for v in elem["Value"]]}
        elif vr in _STRIPPED and elem.get("Value"):
            strip = _STRIPPED[vr]
            elem = {"vr": vr, "Value": [v.strip(strip) if isinstance(v, str) else v
                                        for v in elem["Value"]]}
        elif vr in _PADDED and elem.get("Value"):
            elem = {"vr": vr, "Value": [v.rstrip(" ") if isinstance(v, str) else v
                                        for v in elem["Value"]]}
        elif (bulk_uri is not None and vr in _BINARY and "InlineBinary" in elem
              and len(elem["InlineBinary"]) * 3 // 4 > BULK_MIN):
            elem = {"vr": vr, "BulkDataURI": bulk_uri(tag)}
        out[tag] = elem
    return out


def jph_file(codestream: bytes, info) -> bytes:
    """The HTJ2K codestream wrapped as a JPH file (ISO/IEC 15444-15 Annex D): signature,
    file type, header (image header, colour specification) and codestream boxes."""
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    bpc = (info.bits_stored - 1) | (0x80 if info.signed else 0)
    ihdr = struct.pack(">IIHBBBB", info.rows, info.columns, info.components, bpc, 7, 0, 0)
    colour = 16 if info.components == 3 else 17  # sRGB, greyscale
    colr = struct.pack(">BBBI", 1, 0, 0, colour)
    return b"".join([box(b"jP  ", b"\r\n\x87\n"), box(b"ftyp", b"jph \0\0\0\0jph "),
                     box(b"jp2h", box(b"ihdr", ihdr) + box(b"colr", colr)),
                     box(b"jp2c", codestream)])


def _ahead(fn: Callable, items: list, window: int = LOOKAHEAD) -> Iterator:
    """``fn(item)`` of each item in order, computed up to ``window`` items ahead on the
    shared worker pool; pending work is cancelled when the consumer stops."""
    pool = _executor()
    pending: list = []
    it = iter(items)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        for f in pending:
            f.cancel()


class _NeedThread(Exception):
    """Raised by work run on the event loop when it would block (not cached)."""


# ---------------------------------------------------------------------- the handlers
class Wado:
    """WADO-RS handlers bound to an index (see :func:`routes`); Pixel Data values come
    from the index's :class:`~dicube.server.pixels.PixelStore` (``cache_bytes``)."""

    def __init__(self, index, cache_bytes: Optional[int] = None):
        self.index = index
        self.pixels = store_for(index, cache_bytes)
        self.cache = self.pixels.cache

    def _pixel_data(self, reader, frame: int, ts: str, loop: bool = False) -> bytes:
        """Frame ``frame``'s Pixel Data value in ``ts`` (see PixelStore.get); ``loop``:
        raise _NeedThread instead of reading, decoding or coding."""
        try:
            return self.pixels.get(reader, frame, ts, cached_only=loop)
        except NotCached:
            raise _NeedThread from None

    # -- lookup --------------------------------------------------------------------
    def _refs(self, request: Request, level: str) -> list:
        p = request.path_params
        study, series, sop = p.get("study"), p.get("series"), p.get("sop")
        for name, uid in (("study", study), ("series", series), ("instance", sop)):
            if uid is not None and (len(uid) > 64 or not _UID.match(uid)):
                raise _HttpError(400, f"{name} UID {uid!r} is not a UID")
        bad = self.index.study_errors(study)
        if bad:
            files = {os.fspath(k): v for k, v in bad.items()}
            raise _HttpError(500, f"study {study}: {len(files)} file(s) cannot be read",
                             study=study, files=files)
        refs = self.index.instances(study, series, sop)
        if not refs:
            what = {"study": f"study {study}", "series": f"series {series} of study {study}",
                    "instance": f"instance {sop} of series {series} of study {study}"}[level]
            raise _HttpError(404, f"{what} not found")
        return refs

    def _reader(self, path, loop: bool = False):
        if loop:  # on the event loop: only a reader the index holds open already
            reader = getattr(self.index, "_readers", {}).get(os.fspath(path))
            if reader is None:
                raise _NeedThread
            return reader
        try:
            return self.index.streaming_reader(path)
        except (DicomCubeError, OSError) as exc:
            raise _file_error(path, exc) from exc

    def _syntaxes(self, refs: list) -> dict:
        """path -> (reader, available transfer syntaxes) of the files holding ``refs``."""
        out = {}
        for ref in refs:
            if ref.path not in out:
                reader = self._reader(ref.path)
                try:
                    out[ref.path] = (reader, reader.available_transfer_syntaxes())
                except (DicomCubeError, OSError) as exc:
                    raise _file_error(ref.path, exc) from exc
        return out

    @staticmethod
    def _accept(request: Request) -> list:
        try:
            return negotiation.parse_accept(request.headers.getlist("accept"))
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from exc

    async def _run(self, request: Request, work: Callable, *args, fast: bool = False) -> Response:
        """``work(request, *args)`` on a worker thread (``fast``: first on the event loop,
        where it raises _NeedThread unless all it needs is cached); _HttpError and
        NotAcceptable become JSON errors."""
        try:
            if fast:
                try:
                    return work(request, *args, loop=True)
                except _NeedThread:
                    pass
            return await run_in_threadpool(work, request, *args)
        except _HttpError as exc:
            return _error(exc.status, exc.message, **exc.extra)
        except NotAcceptable as exc:
            return _error(406, str(exc))

    @staticmethod
    def _stream(first: list, rest: Iterator, boundary: str, ctype: str) -> StreamingResponse:
        """A multipart response whose first part is already made (so its errors were HTTP
        errors) and whose other parts come from ``rest``."""
        def body():
            yield from multipart.encode_parts(_chain(first, rest), boundary)

        return StreamingResponse(_pumped(body()), 200, media_type=ctype)

    @staticmethod
    def _whole(parts: list, boundary: str, ctype: str) -> Response:
        """A small multipart response in one piece (no streaming overhead)."""
        return Response(b"".join(multipart.encode_parts(parts, boundary)), 200, media_type=ctype)

    # -- retrieval ------------------------------------------------------------------
    def _retrieve(self, request: Request, level: str) -> Response:
        refs = self._refs(request, level)
        accept = self._accept(request)
        files = self._syntaxes(refs)
        chosen = {path: negotiation.instance_syntax(accept, avail)
                  for path, (_, avail) in files.items()}

        def part(ref):
            ts = chosen[ref.path]
            reader = files[ref.path][0]
            try:
                data = reader.get_dicom_pieces(ref.frame, ts,
                                               self.pixels.instance(reader, ref.frame, ts))
            except (DicomCubeError, OSError) as exc:
                raise _file_error(ref.path, exc) from exc
            return f"application/dicom; transfer-syntax={ts}", data

        boundary = multipart.new_boundary()
        single = set(chosen.values())
        ctype = multipart.content_type(boundary, "application/dicom",
                                       next(iter(single)) if len(single) == 1 else None)
        t0 = time.perf_counter()
        first = [part(refs[0])]
        if len(refs) == 1:
            return self._whole(first, boundary, ctype)
        # parts that cost codec work (decoding, a header built) are made ahead on worker
        # threads; cheap ones (a stored codestream, a cached frame) faster in line
        slow = time.perf_counter() - t0 > SLOW_PART
        rest = _ahead(part, refs[1:]) if slow else map(part, refs[1:])
        return self._stream(first, _logged(rest, request), boundary, ctype)

    def _frames(self, request: Request, loop: bool = False) -> Response:
        try:
            numbers = parse_frames(request.path_params["frames"])
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from exc
        (ref,) = self._refs(request, "instance")
        return self._pixels(request, ref, self._file_frames(ref, numbers, loop), loop)

    def _file_frames(self, ref, numbers: "list | None", loop: bool = False) -> list:
        """The file's frame numbers of frames ``numbers`` (1-based; None: all) of instance
        ``ref``; 404 for a frame the instance does not have."""
        reader = self._reader(ref.path, loop)
        try:
            frames = reader.frames_of_instance(ref.frame)
        except (DicomCubeError, OSError) as exc:
            raise _file_error(ref.path, exc) from exc
        if numbers is None:
            return list(frames)
        for n in numbers:
            if n > len(frames):
                raise _HttpError(404, f"frame {n} not found: instance {ref.sop_uid} has "
                                      f"{len(frames)} frame{'s' if len(frames) > 1 else ''}")
        return [frames[n - 1] for n in numbers]

    def _bulkdata(self, request: Request, loop: bool = False) -> Response:
        tag = request.path_params["tag"].upper()
        if not re.fullmatch(r"[0-9A-F]{8}", tag):
            raise _HttpError(400, f"bulk data tag {tag!r} is not 8 hexadecimal digits")
        (ref,) = self._refs(request, "instance")
        if tag == _PIXEL_DATA:  # a multi-frame instance's frames, one part each
            return self._pixels(request, ref, self._file_frames(ref, None, loop), loop)
        if loop:
            raise _NeedThread
        reader = self._reader(ref.path)
        try:
            elem = reader.get_json(ref.frame, EXPLICIT_LE).get(tag)
        except (DicomCubeError, OSError) as exc:
            raise _file_error(ref.path, exc) from exc
        if elem is None or elem.get("vr") not in _BINARY:
            raise _HttpError(404, f"instance {ref.sop_uid} has no bulk data element {tag}")
        import base64

        data = base64.b64decode(elem.get("InlineBinary", ""))
        boundary = multipart.new_boundary()
        return self._whole([(OCTET, data)], boundary, multipart.content_type(boundary, OCTET))

    def _pixels(self, request: Request, ref, frames: list, loop: bool = False) -> Response:
        """Frames ``frames`` (numbers in the file) of instance ``ref``, one part each."""
        accept = self._accept(request)
        reader = self._reader(ref.path, loop)
        try:
            if loop and reader._syntaxes is None:  # found once per reader, reading a frame
                raise _NeedThread
            available = reader.available_transfer_syntaxes()
        except (DicomCubeError, OSError) as exc:
            raise _file_error(ref.path, exc) from exc
        media, ts = negotiation.frame_media(accept, available)
        read_ts = next(t for t in available if t in HTJ2K_SYNTAXES) if ts == HTJ2K else ts
        part_type = f"{media}; transfer-syntax={ts}"
        parts = []
        try:
            for frame in frames:
                data = self._pixel_data(reader, frame, read_ts, loop)
                if ts in _NATIVE:
                    self.pixels.prefetch(reader, frame, ts, len(data))
                if media == JPH:
                    from ..codecs.jph import read_header

                    data = jph_file(data, read_header(data))
                parts.append((part_type, data))
        except (DicomCubeError, OSError) as exc:
            raise _file_error(ref.path, exc) from exc
        boundary = multipart.new_boundary()
        return self._whole(parts, boundary, multipart.content_type(boundary, media, ts))

    # -- metadata -------------------------------------------------------------------
    def _metadata(self, request: Request, level: str) -> Response:
        refs = self._refs(request, level)
        files = {ref.path: self._reader(ref.path) for ref in refs}
        base = base_url(request)

        def item(ref) -> bytes:
            inst = (f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}"
                    f"/instances/{ref.sop_uid}")
            key = (weakref.ref(files[ref.path]), ref.frame, "metadata", inst)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            try:
                data = files[ref.path].get_json(ref.frame, EXPLICIT_LE)
            except (DicomCubeError, OSError) as exc:
                raise _file_error(ref.path, exc) from exc
            out = web_json(data, lambda tag: f"{inst}/bulkdata/{tag}")
            bits = ((data.get("00280100") or {}).get("Value") or [16])[0]
            out[_PIXEL_DATA] = {"vr": "OB" if bits == 8 else "OW",
                                "BulkDataURI": f"{inst}/bulkdata/{_PIXEL_DATA}"}
            return self.cache.put(key, json.dumps(out, separators=(",", ":"),
                                                  ensure_ascii=False).encode("utf-8"))

        first = item(refs[0])

        def body():
            yield b"[" + first
            for chunk in _logged(map(item, refs[1:]), request):
                yield b"," + chunk
            yield b"]"

        return StreamingResponse(_pumped(_gather(body())), 200,
                                 media_type="application/dicom+json")

    # -- rendered -------------------------------------------------------------------
    def _rendered(self, request: Request, level: str, thumbnail: bool) -> Response:
        from . import rendered

        refs = self._refs(request, level)
        try:
            params = rendered.parse_params(request.query_params, thumbnail)
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from exc
        media = negotiation.rendered_media(self._accept(request))
        frames = request.path_params.get("frames")
        if frames is not None:
            try:
                numbers = parse_frames(frames)
            except ValueError as exc:
                raise _HttpError(400, str(exc)) from exc
            if len(numbers) != 1:
                raise _HttpError(400, f"frames {frames}: one frame is rendered at a time")
            (shown,) = self._file_frames(refs[0], numbers)
        else:
            shown = None
        if level in ("study", "series") and thumbnail:
            refs = [refs[len(refs) // 2]]  # a thumbnail shows the middle instance

        def image(ref) -> bytes:
            # a multi-frame instance shows its first frame (a thumbnail: its middle one)
            # unless a frame is named
            try:
                frame = shown
                if frame is None:
                    fr = self._reader(ref.path).frames_of_instance(ref.frame)
                    frame = fr[len(fr) // 2] if thumbnail else fr[0]
                return rendered.render(ref.path, frame, params, media, ref.frame)
            except ValueError as exc:  # a viewport region outside the image
                raise _HttpError(400, str(exc)) from exc
            except (DicomCubeError, OSError) as exc:
                raise _file_error(ref.path, exc) from exc

        if len(refs) == 1 and (level == "instance" or thumbnail):
            return Response(image(refs[0]), 200, media_type=media)
        boundary = multipart.new_boundary()  # study/series rendered: one part per instance
        return self._stream([(media, image(refs[0]))],
                            _logged(_ahead(lambda r: (media, image(r)), refs[1:], 2), request),
                            boundary, multipart.content_type(boundary, media))

    # -- routes ---------------------------------------------------------------------
    def routes(self) -> list:
        S, SE, I = ("/studies/{study}", "/studies/{study}/series/{series}",
                    "/studies/{study}/series/{series}/instances/{sop}")

        def h(work, *args, fast: bool = False):
            async def handler(request: Request) -> Response:
                return await self._run(request, work, *args, fast=fast)
            return handler

        # frames first: the most frequent requests (starlette tries routes in order)
        out = [Route(I + "/frames/{frames}", h(self._frames, fast=True), methods=["GET"])]
        for level, prefix in (("study", S), ("series", SE), ("instance", I)):
            out += [Route(prefix, h(self._retrieve, level), methods=["GET"]),
                    Route(prefix + "/metadata", h(self._metadata, level), methods=["GET"]),
                    Route(prefix + "/rendered", h(self._rendered, level, False), methods=["GET"]),
                    Route(prefix + "/thumbnail", h(self._rendered, level, True), methods=["GET"])]
        out += [Route(I + "/frames/{frames}/rendered", h(self._rendered, "instance", False),
                      methods=["GET"]),
                Route(I + "/frames/{frames}/thumbnail", h(self._rendered, "instance", True),
                      methods=["GET"]),
                Route(I + "/bulkdata/{tag}", h(self._bulkdata, fast=True), methods=["GET"])]
        return out


def client_url(request: Request, url):
    """``url`` (a starlette URL of this request) with the port the client meant. A Host
    field without a port naming the very address the server listens on gets the server's
    port: some clients (dicomweb-client 0.61) drop the port from Host."""
    host = request.headers.get("host", "")
    server = request.scope.get("server") or (None, None)
    if host and ":" not in host.rsplit("]", 1)[-1] and host.strip("[]") == server[0] \
            and server[1] not in (None, 80, 443):
        url = url.replace(port=server[1])
    return url


def base_url(request: Request) -> str:
    """The DICOMweb base URL the client used (up to ``/studies``)."""
    text = str(client_url(request, request.url.replace(query="")))
    return text[:text.index("/studies/")]


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def _gather(chunks: Iterator[bytes], size: int = multipart.CHUNK) -> Iterator[bytes]:
    """Chunks joined into pieces of about ``size`` bytes (fewer writes)."""
    buf, n = [], 0
    for c in chunks:
        buf.append(c)
        n += len(c)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


async def _pumped(chunks: Iterator[bytes], depth: int = 4) -> AsyncIterator[bytes]:
    """The chunks of a blocking iterator, made on a thread of its own up to ``depth``
    chunks ahead of the network: file and codec work on one core while the event loop
    sends on the other (starlette's iterate_in_threadpool costs a thread-pool round trip
    per chunk and makes nothing ahead). The thread stops when the consumer does."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(depth)
    stopped = threading.Event()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stopped.set()

    def produce() -> None:
        try:
            for chunk in chunks:
                room.acquire()
                if stopped.is_set():
                    return
                put((chunk, None))
            put((None, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((None, exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="dicube-wado-body", daemon=True).start()
    try:
        while True:
            chunk, exc = await queue.get()
            if exc is not None:
                raise exc
            if chunk is None:
                return
            room.release()
            yield chunk
    finally:
        stopped.set()
        room.release()


def _logged(parts: Iterator, request: Request) -> Iterator:
    """``parts``, with an error after the response started logged before it cuts the body."""
    try:
        yield from parts
    except _HttpError as exc:
        log.error("%s: response cut short: %s", request.url.path, exc.message)
        raise
    except Exception:
        log.exception("%s: response cut short", request.url.path)
        raise


def routes(index, cache_bytes: Optional[int] = None) -> list:
    """The WADO-RS routes over ``index``, to mount under ``/dicom-web``; ``cache_bytes``
    bounds the Pixel Data values kept (see :func:`dicube.server.pixels.store_for`)."""
    return Wado(index, cache_bytes).routes()
