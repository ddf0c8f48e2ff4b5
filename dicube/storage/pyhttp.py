"""HTTP(S) range requests with the standard library, for processes where obstore cannot run.

obstore's network runtime (tokio) lives on threads that ``fork()`` does not copy: in a
forked child of a process that already used it, every request would hang. Such a child
(e.g. a PyTorch DataLoader worker) reads http(s):// URLs through :class:`RangeClient`
instead: one keep-alive connection per thread, the same timeouts, a bounded number of
retries with backoff on 5xx answers and broken connections.
"""
from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse

from ..exceptions import SourceError, SourceNotFoundError

__all__ = ["RangeClient", "MAX_RETRIES"]

MAX_RETRIES = 3
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class _Retry(Exception):
    pass


class RangeClient:
    """Ranged GETs to one http(s) origin (scheme, host, port), shared by every object there;
    ``connect`` and ``read`` timeouts in seconds."""

    def __init__(self, origin: str, connect: float, read: float):
        parts = urllib.parse.urlsplit(origin)
        self.connect, self.read = connect, read
        self._https = parts.scheme.lower() == "https"
        self._host, self._port = parts.hostname, parts.port
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.connect)
            conn.connect()
            conn.sock.settimeout(self.read)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            conn.close()

    def get(self, url: str, start: int, length: int, *,
            allow_short: bool = False) -> tuple[bytes, int]:
        """(bytes ``start``..``start + length`` of ``url``, object size); ``allow_short``
        accepts fewer bytes when the object ends first (the opening read)."""
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        last: Exception = SourceError("no request made", url)
        for attempt in range(MAX_RETRIES + 1):
            if attempt:
                time.sleep(min(5.0, 0.1 * 2 ** (attempt - 1)))
            try:
                return self._get_once(url, target, start, length, allow_short)
            except _Retry as exc:
                last = exc
            except (OSError, http.client.HTTPException) as exc:  # broken, refused, timed out
                self._drop()
                last = exc
        if isinstance(last, TimeoutError) or "timed out" in str(last):
            raise SourceError(f"remote read timed out (connect timeout {self.connect:g} s, read "
                              f"timeout {self.read:g} s), after {MAX_RETRIES} retries", url)
        raise SourceError(f"remote read failed after {MAX_RETRIES} retries: {last}", url)

    def _get_once(self, url: str, target: str, start: int, length: int,
                  allow_short: bool) -> tuple[bytes, int]:
        conn = self._connection()
        conn.request("GET", target, headers={"Range": f"bytes={start}-{start + length - 1}"})
        resp = conn.getresponse()
        if resp.status == 404:
            resp.read(1 << 16)
            self._drop()
            raise SourceNotFoundError("not found (no such object on the server)", url)
        if resp.status >= 500 or resp.status == 429:
            self._drop()
            raise _Retry(f"HTTP {resp.status} {resp.reason}")
        m = _CONTENT_RANGE.fullmatch(resp.getheader("Content-Range", "").strip())
        if resp.status != 206 or not m:
            self._drop()
            raise SourceError(f"range request answered with HTTP {resp.status} "
                              f"{resp.reason} (no byte range)", url)
        first, end, size = int(m[1]), int(m[2]) + 1, int(m[3])
        want = min(length, size - start) if allow_short else length
        if first != start or end - first != want:
            self._drop()
            raise SourceError(f"server sent bytes {first}..{end} for {start}..{start + want}",
                              url)
        data = resp.read(want)
        if len(data) != want:
            self._drop()
            raise http.client.IncompleteRead(data, want - len(data))
        if resp.length or (resp.length is None and resp.read(1)):  # body runs past the range
            self._drop()
            raise SourceError(f"server sent more than the {want} bytes asked for", url)
        return data, size

