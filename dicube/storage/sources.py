"""Byte sources: random access to a local file or to a remote object (HTTP(S) or S3).

A :class:`ByteSource` has a ``name``, a ``size``, ``pread(length, offset)``,
``preadinto(buf, offset)`` and ``close()``; it counts the bytes and requests it
transferred in ``stats``. :class:`~dicube.storage.reader.DcbsReader` accepts one instead of
a path, so a remote .dcbs is read with a range request for its head and one per frame.

Remote objects go through `obstore <https://developmentseed.org/obstore>`_ (Rust
``object_store``): range requests, S3 and HTTP behind one API, thread-safe and GIL-free.
S3 settings come from the usual ``AWS_*`` environment variables (``AWS_ENDPOINT_URL``,
``AWS_REGION``, credentials); without credentials requests are unsigned (public buckets).
Every remote request has a connect and a read timeout (:mod:`.limits`: 10 s and 30 s,
``DICUBE_CONNECT_TIMEOUT`` / ``DICUBE_READ_TIMEOUT`` or the ``timeouts`` argument); a stalled
server gives a :class:`~dicube.exceptions.SourceError` naming the URL; a request that fails
with a 5xx status, a broken connection or a timeout is retried (3 times at most, backoff from
0.1 s doubling, within one read timeout). A missing object gives a
:class:`~dicube.exceptions.SourceNotFoundError`.

:meth:`ByteSource.fetch` reads several ranges at once: a :class:`RemoteFile` serves what its
opening request already holds from memory and issues the rest as range requests of at most
:data:`REQUEST_SIZE` bytes, :data:`IO_THREADS` at a time on a shared pool, over the pooled
connections of one client per host (or bucket). See docs/remote.md.
"""
from __future__ import annotations

import errno
import json
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Optional, Union

from ..exceptions import SourceError, SourceNotFoundError
from . import limits

__all__ = ["TransferStats", "ByteSource", "LocalFile", "RemoteFile", "is_url", "open_source",
           "list_folder", "list_children", "join", "REMOTE_FIRST_READ", "REQUEST_SIZE", "IO_THREADS"]

#: Bytes a remote .dcbs reader fetches with its first request: header, section table, frame
#: index and metadata sections of a series of up to about 1500 slices (200 slices: 31 KB).
REMOTE_FIRST_READ = 256 * 1024
#: Largest single range request of a :meth:`RemoteFile.fetch` (longer runs are split so that
#: their parts arrive in parallel).
REQUEST_SIZE = 4 << 20
#: Range requests in flight at once per process (one shared thread pool).
IO_THREADS = 8

REMOTE_SCHEMES = ("http", "https", "s3")
_CRED_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class TransferStats:
    """Bytes and requests transferred; shareable between sources and threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.requests = 0

    def add(self, nbytes: int, requests: int = 1) -> None:
        with self._lock:
            self.bytes += nbytes
            self.requests += requests

    def __repr__(self) -> str:
        return f"TransferStats(bytes={self.bytes}, requests={self.requests})"


class ByteSource:
    """Random read access to the bytes of one file or object."""

    name: str
    size: int
    stats: TransferStats

    def pread(self, length: int, offset: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``."""
        raise NotImplementedError

    def preadinto(self, buf, offset: int) -> None:
        """Fill the writable buffer ``buf`` from ``offset``."""
        mv = memoryview(buf).cast("B")
        mv[:] = self.pread(len(mv), offset)

    def fetch(self, runs, out) -> None:
        """Fill the writable buffer ``out`` with the byte ranges ``runs`` ((start, end)
        pairs) laid end to end."""
        mv = memoryview(out).cast("B")
        pos = 0
        for start, end in runs:
            self.preadinto(mv[pos:pos + end - start], start)
            pos += end - start
        if pos != len(mv):
            raise ValueError(f"runs hold {pos} bytes, the buffer {len(mv)}")

    def close(self) -> None:
        """Release the source (idempotent)."""

    @property
    def bytes_read(self) -> int:
        return self.stats.bytes

    @property
    def requests(self) -> int:
        return self.stats.requests

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalFile(ByteSource):
    """A local file read with ``os.pread`` (thread-safe). Raises OSError when it cannot be
    opened or is not a regular file (a folder, a FIFO, a device)."""

    def __init__(self, path: "os.PathLike[str] | str", stats: Optional[TransferStats] = None):
        self.name = os.fspath(path)
        self.stats = stats or TransferStats()
        # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on regular files)
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
        self._fd: Optional[int] = os.open(self.name, flags)
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            self.close()
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", self.name)
            raise OSError(errno.EINVAL, "not a regular file", self.name)
        self.size = st.st_size

    def fileno(self) -> int:
        """The open file descriptor (for readers that pread on their own threads)."""
        if self._fd is None:
            raise SourceError("file is closed", self.name)
        return self._fd

    def pread(self, length: int, offset: int) -> bytes:
        fd = self.fileno()
        data = os.pread(fd, length, offset)
        while len(data) < length:  # pread may return short reads on some file systems
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                raise SourceError("file shrank while reading", self.name)
            data += more
        self.stats.add(length)
        return data

    def preadinto(self, buf, offset: int) -> None:
        fd = self.fileno()
        mv = memoryview(buf).cast("B")
        done = 0
        while done < len(mv):
            n = os.preadv(fd, [mv[done:]], offset + done)
            if n <= 0:
                raise SourceError("file shrank while reading", self.name)
            done += n
        self.stats.add(len(mv))

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


# ----------------------------------------------------------------------------- remote
def is_url(s: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether ``s`` is an http(s):// or s3:// URL."""
    return isinstance(s, str) and urllib.parse.urlsplit(s).scheme.lower() in REMOTE_SCHEMES


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def missing_local(location: Union[str, "os.PathLike[str]"]) -> SourceError:
    """The error for a local path that cannot be found: a URL of a scheme dicube cannot
    read, a broken symbolic link, or no such file or folder (:class:`SourceNotFoundError`).
    Nothing is looked up remotely."""
    path = os.fspath(location)
    m = _SCHEME.match(path) if isinstance(path, str) else None
    if m:
        return SourceError(f"unsupported URL scheme {m.group(1)!r} (dicube reads "
                           "http://, https:// and s3:// URLs)", path)
    if os.path.islink(path):
        return SourceError("broken symbolic link", path)
    return SourceNotFoundError("no such file or folder", path)


def join(base: str, name: str) -> str:
    """``base/name`` for URLs and local paths alike."""
    if is_url(base):
        return base.rstrip("/") + "/" + urllib.parse.quote(name.lstrip("/"), safe="/")
    return os.path.join(base, name)


_stores: dict = {}
_stores_lock = threading.Lock()
#: The process that first used obstore. obstore's runtime (tokio) runs on threads fork()
#: does not copy: a forked child of that process hangs on any obstore request, so it reads
#: http(s):// with :mod:`.pyhttp` and refuses s3://.
_obstore_pid: Optional[int] = None
_py_clients: dict = {}


def _after_fork_in_child() -> None:  # a lock held by another thread at fork() stays held
    global _stores_lock, _pool_lock
    _stores_lock, _pool_lock = threading.Lock(), threading.Lock()


def _forked_after_obstore() -> bool:
    return _obstore_pid is not None and _obstore_pid != os.getpid()


def _py_client(url: str, timeouts_: Timeouts):
    from .pyhttp import RangeClient

    parts = urllib.parse.urlsplit(url)
    connect, read = timeouts(timeouts_)
    key = (os.getpid(), parts.scheme.lower(), parts.netloc, connect, read)
    with _stores_lock:
        client = _py_clients.get(key)
        if client is None:
            client = _py_clients[key] = RangeClient(f"{parts.scheme}://{parts.netloc}", connect, read)
    return client

#: (connect, read) timeouts in seconds; None means the defaults of :mod:`.limits`.
Timeouts = Optional[tuple]


def timeouts(value: Timeouts = None) -> tuple:
    """(connect, read) seconds: ``value`` if given, else DICUBE_CONNECT_TIMEOUT /
    DICUBE_READ_TIMEOUT, else 10 s / 30 s."""
    if value is not None:
        connect, read = (float(v) for v in value)
        if not (connect > 0 and read > 0):
            raise ValueError(f"timeouts must be positive, got {value!r}")
        return connect, read
    return limits.get("CONNECT_TIMEOUT") or limits.CONNECT_TIMEOUT, \
        limits.get("READ_TIMEOUT") or limits.READ_TIMEOUT


def _client_options(connect: float, read: float) -> tuple:
    """obstore client and retry options: a stall fails after about twice ``read`` seconds
    (one retry), not after the three minutes of retries obstore allows by default."""
    from datetime import timedelta

    client = {"allow_http": True, "connect_timeout": timedelta(seconds=connect),
              "read_timeout": timedelta(seconds=read),
              # a whole request (e.g. a large read_all) may take longer while bytes keep coming
              "timeout": timedelta(seconds=max(600.0, 20 * read))}
    retry = {"max_retries": 3, "retry_timeout": timedelta(seconds=read),
             "backoff": {"init_backoff": timedelta(milliseconds=100),
                         "max_backoff": timedelta(seconds=min(5.0, read)), "base": 2}}
    return client, retry


def _store_for(url: str, timeouts_: Timeouts = None, storage_options: Optional[dict] = None):
    """(obstore store, object path) for a URL; stores are shared per process, bucket / host,
    timeouts, AWS_* environment and ``storage_options`` (S3 settings, e.g. ``endpoint``,
    ``region``, ``access_key_id``, ``secret_access_key``, ``session_token``)."""
    import obstore.store as ost

    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in REMOTE_SCHEMES or not parts.netloc:
        raise SourceError("not an http(s):// or s3:// URL", url)
    options = dict(storage_options or {})
    if options and scheme != "s3":
        raise SourceError("storage_options apply to s3:// URLs only", url)
    if _forked_after_obstore():
        raise SourceError(
            "cannot read s3:// in a process forked after obstore ran in its parent (its network "
            "threads do not survive fork): start workers with 'spawn' or 'forkserver' (PyTorch "
            "DataLoader(multiprocessing_context='forkserver')), or read through https:// URLs",
            url)
    connect, read = timeouts(timeouts_)
    # one store per process (see _forked_after_obstore)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))) \
        if scheme == "s3" else ()
    key = (os.getpid(), scheme, parts.netloc, connect, read, env, repr(sorted(options.items())))
    global _obstore_pid
    with _stores_lock:
        if _obstore_pid is None:
            _obstore_pid = os.getpid()
        store = _stores.get(key)
        if store is None:
            client, retry = _client_options(connect, read)
            try:
                store = _new_store(ost, scheme, parts.netloc, client, retry, options)
            except Exception as exc:  # obstore refuses a setting (its own exception types)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SourceError(f"invalid storage options or AWS_* environment: {first}",
                                  url) from exc
            _stores[key] = store
    return store, urllib.parse.unquote(parts.path.lstrip("/"))


def _new_store(ost, scheme: str, netloc: str, client: dict, retry: dict, options: dict):
    if scheme == "s3":
        kw = {}
        if not any(os.environ.get(v) for v in _CRED_VARS) and "access_key_id" not in options:
            kw["skip_signature"] = True
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            kw["region"] = "us-east-1"
        kw.update(options)
        return ost.from_url(f"s3://{netloc}", client_options=client, retry_config=retry, **kw)
    return ost.HTTPStore.from_url(f"{scheme}://{netloc}", client_options=client, retry_config=retry)


def _remote_error(exc: Exception, url: str, timeouts_: Timeouts = None) -> SourceError:
    if isinstance(exc, FileNotFoundError):
        return SourceNotFoundError("not found (no such object on the server)", url)
    text = str(exc)
    if "kind: Timeout" in text or "TimedOut" in text or isinstance(exc, TimeoutError):
        connect, read = timeouts(timeouts_)
        return SourceError(f"remote read timed out (connect timeout {connect:g} s, read timeout "
                           f"{read:g} s; DICUBE_CONNECT_TIMEOUT / DICUBE_READ_TIMEOUT)", url)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return SourceError(f"remote read failed: {first}", url)


_pool: Optional[tuple] = None
_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _io_pool() -> ThreadPoolExecutor:
    """The process's pool for range requests (a forked child makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(IO_THREADS, thread_name_prefix="dicube-io"))
        return _pool[1]


def _ranged_body(res, want: int, url: str, timeouts_: Timeouts = None):
    """The body of a ranged GET of ``want`` bytes (a bytes-like object, not copied when it
    came in one piece), read as a stream and refused as soon as it runs past them: a hostile
    server may send an endless body, which obstore's ``bytes()`` would buffer whole (a
    process abort when memory runs out)."""
    chunks, got = [], 0
    try:
        for chunk in res.stream(min_chunk_size=max(1, want)):
            got += len(chunk)
            if got > want:
                raise SourceError(f"server sent more than the {want} bytes asked for", url)
            chunks.append(chunk)
    except SourceError:
        raise
    except Exception as exc:  # obstore raises its own exception types
        raise _remote_error(exc, url, timeouts_) from exc
    if got != want:
        raise SourceError(f"short read: {got} of {want} bytes", url)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RemoteFile(ByteSource):
    """An object behind an http(s):// or s3:// URL, read with range requests.

    Opening makes one request: a ranged GET of the first ``prefetch`` bytes (kept and
    served from memory), whose response also tells the object's size. ``request_size``:
    the largest request :meth:`fetch` makes; ``storage_options``: S3 settings overriding
    the AWS_* environment (see :func:`_store_for`).
    """

    def __init__(self, url: str, *, prefetch: int = 64 * 1024, stats: Optional[TransferStats] = None,
                 timeouts: Timeouts = None, request_size: int = REQUEST_SIZE,
                 storage_options: Optional[dict] = None):
        import obstore

        if request_size < 1:
            raise ValueError(f"request_size must be >= 1, got {request_size}")
        self.request_size = int(request_size)
        self.name = url
        self.stats = stats or TransferStats()
        self._obstore = obstore
        self._timeouts = timeouts
        self._py = None
        if _forked_after_obstore() and urllib.parse.urlsplit(url).scheme.lower() != "s3" \
                and not storage_options:
            self._py = _py_client(url, timeouts)
            self._head, self.size = self._py.get(url, 0, max(1, prefetch), allow_short=True)
            self.stats.add(len(self._head))
            return
        self._store, self._path = _store_for(url, timeouts, storage_options)
        try:
            if prefetch > 0:
                res = obstore.get(self._store, self._path, options={"range": (0, prefetch)})
                self.size = int(res.meta["size"])
                self._head = bytes(_ranged_body(res, min(prefetch, self.size), url))
                self.stats.add(len(self._head))
            else:
                self._head = b""
                self.size = int(obstore.head(self._store, self._path)["size"])
                self.stats.add(0)
        except SourceError:
            raise
        except Exception as exc:  # obstore raises its own exception types
            raise _remote_error(exc, url, timeouts) from exc

    def pread(self, length: int, offset: int) -> bytes:
        if offset + length <= len(self._head):
            return self._head[offset:offset + length]
        if length == 0:
            return b""
        if offset < 0 or offset + length > self.size:
            raise SourceError(f"bytes {offset}..{offset + length} are beyond the end "
                              f"({self.size} bytes)", self.name)
        if self._py is not None:
            mv = bytearray(length)
            self._get_into(memoryview(mv), offset)
            return bytes(mv)
        data = bytes(self._get_range(offset, length))
        self.stats.add(len(data))
        return data

    def _get_range(self, offset: int, length: int):
        try:
            res = self._obstore.get(self._store, self._path,
                                    options={"range": (offset, offset + length)})
        except Exception as exc:
            raise _remote_error(exc, self.name, self._timeouts) from exc
        return _ranged_body(res, length, self.name, self._timeouts)

    def _get_into(self, mv: memoryview, offset: int) -> None:
        if self._py is not None:
            data, _ = self._py.get(self.name, offset, len(mv))
        else:
            data = self._get_range(offset, len(mv))
        got = memoryview(data).cast("B")
        self.stats.add(len(got))
        if len(got) != len(mv):
            raise SourceError(f"short read: {len(got)} of {len(mv)} bytes at offset {offset}",
                              self.name)
        mv[:] = got

    def preadinto(self, buf, offset: int) -> None:
        mv = memoryview(buf).cast("B")
        self.fetch([(offset, offset + len(mv))], mv)

    def fetch(self, runs, out) -> None:
        """Fill ``out`` with the ranges ``runs`` laid end to end: bytes the opening request
        holds are copied, the rest is read in requests of at most ``request_size`` bytes,
        issued in parallel on the shared pool. Any failed request raises SourceError once
        every request has finished (``out`` is then partly filled)."""
        mv = memoryview(out).cast("B")
        head = len(self._head)
        jobs, pos = [], 0
        for start, end in runs:
            if start < 0 or end > self.size or start > end:
                raise SourceError(f"bytes {start}..{end} are beyond the end ({self.size} bytes)",
                                  self.name)
            if start < head:
                k = min(end, head)
                mv[pos:pos + k - start] = self._head[start:k]
                pos, start = pos + k - start, k
            while start < end:
                n = min(end - start, self.request_size)
                jobs.append((mv[pos:pos + n], start))
                pos, start = pos + n, start + n
        if pos != len(mv):
            raise ValueError(f"runs hold {pos} bytes, the buffer {len(mv)}")
        if len(jobs) == 1:
            self._get_into(*jobs[0])
            return
        if not jobs:
            return
        futures = [_io_pool().submit(self._get_into, part, offset) for part, offset in jobs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        wait(futures)  # nothing may still write into ``out`` once we return or raise
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()

    def read_all(self) -> bytes:
        """The whole object (one more request unless the prefetch already held it)."""
        return self.pread(self.size, 0)


def open_source(location: Union[str, "os.PathLike[str]", ByteSource], *,
                prefetch: int = 64 * 1024, stats: Optional[TransferStats] = None,
                timeouts: Timeouts = None, request_size: int = REQUEST_SIZE,
                storage_options: Optional[dict] = None) -> ByteSource:
    """A ByteSource for a local path or a remote URL (a ByteSource is returned as is);
    ``timeouts`` = (connect, read) seconds, ``request_size`` the largest range request,
    ``storage_options`` S3 settings, for a remote one."""
    if isinstance(location, ByteSource):
        return location
    if is_url(location):
        return RemoteFile(location, prefetch=prefetch, stats=stats, timeouts=timeouts,
                          request_size=request_size, storage_options=storage_options)
    try:
        return LocalFile(location, stats=stats)
    except FileNotFoundError:
        raise missing_local(location) from None
    except OSError as exc:
        raise SourceError(f"cannot open: {exc.strerror}", os.fspath(location)) from exc


# ---------------------------------------------------------------------------- listing
@dataclass(frozen=True, order=True)
class Entry:
    """One listed object: full location (path or URL), size in bytes (-1 if unknown)."""

    location: str
    size: int = -1


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow a listing's redirects to http(s) only (urllib also follows them to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {scheme}:// refused, only "
                                         "http(s) is followed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _listing_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HttpRedirectsOnly)


def _http_get(url: str, stats: Optional[TransferStats], timeouts_: Timeouts = None) -> tuple[bytes, str]:
    """The body of a directory index page: at most MAX_LISTING_BYTES, each read within the
    read timeout, the whole page within 10 read timeouts (a server dripping bytes fails)."""
    connect, read = timeouts(timeouts_)
    cap = limits.MAX_LISTING_BYTES
    try:
        # the socket timeout covers connecting and every read; the deadline a slow drip
        deadline = time.monotonic() + 10 * read
        with _listing_opener().open(url, timeout=max(connect, read)) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = bytearray()
            while True:
                chunk = resp.read1(1 << 16) if hasattr(resp, "read1") else resp.read(1 << 16)
                if not chunk:
                    break
                body += chunk
                if len(body) > cap:
                    raise SourceError(f"directory index larger than {cap} bytes "
                                      "(dicube.storage.limits.MAX_LISTING_BYTES)", url)
                if time.monotonic() > deadline:
                    raise SourceError(f"cannot list: timed out, the directory index arrives "
                                      f"too slowly (not complete within {10 * read:g} s, 10 read "
                                      "timeouts; DICUBE_READ_TIMEOUT)", url)
    except SourceError:
        raise
    except Exception as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(why, TimeoutError) or "timed out" in str(why).lower():
            raise SourceError(f"cannot list: timed out (connect timeout {connect:g} s, read "
                              f"timeout {read:g} s; DICUBE_CONNECT_TIMEOUT / DICUBE_READ_TIMEOUT)",
                              url) from exc
        raise SourceError(f"cannot list: {exc}", url) from exc
    if stats is not None:
        stats.add(len(body))
    return body, ctype


_HREF = re.compile(r'href\s*=\s*"([^"?#]+)"', re.I)


def _http_index(url: str, stats: Optional[TransferStats],
                timeouts_: Timeouts = None) -> list[tuple[str, bool, int]]:
    """(name, is_dir, size) of an HTTP directory index: nginx ``autoindex_format json``,
    or any HTML index (its relative links)."""
    body, ctype = _http_get(url.rstrip("/") + "/", stats, timeouts_)
    text = body.decode("utf-8", "replace")
    del body
    if "json" in ctype or text.lstrip().startswith("["):
        try:
            items = json.loads(text)
            return [(str(it["name"]), it.get("type") == "directory", int(it.get("size", -1)))
                    for it in items if isinstance(it, dict) and "name" in it]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise SourceError(f"invalid JSON directory index: {exc}", url) from exc
    out = []
    for href in _HREF.findall(text):
        if href.startswith(("/", "..", ".")) or "://" in href:
            continue
        name = urllib.parse.unquote(href)
        out.append((name.rstrip("/"), name.endswith("/"), -1))
    return out


def _too_many(url: str) -> SourceError:
    return SourceError(f"listing holds more than {limits.MAX_LISTING_ENTRIES} entries "
                       "(dicube.storage.limits.MAX_LISTING_ENTRIES)", url)


def list_children(root: str, stats: Optional[TransferStats] = None, *,
                  timeouts: Timeouts = None) -> list[str]:
    """Names directly under a local folder or a remote prefix (files and folders);
    ``timeouts`` = (connect, read) seconds for a remote one."""
    if not is_url(root):
        try:
            return sorted(os.listdir(root))
        except FileNotFoundError:
            raise missing_local(root) from None
        except OSError as exc:
            raise SourceError(f"cannot list: {exc.strerror}", root) from exc
    if urllib.parse.urlsplit(root).scheme.lower() != "s3":
        return sorted(name for name, _, _ in _http_index(root, stats, timeouts))
    import obstore

    store, prefix = _store_for(root, timeouts)
    prefix = prefix.rstrip("/")
    try:
        res = obstore.list_with_delimiter(store, prefix or None)
    except Exception as exc:
        raise _remote_error(exc, root, timeouts) from exc
    if stats is not None:
        stats.add(0)
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in res["common_prefixes"]]
    names += [o["path"].rsplit("/", 1)[-1] for o in res["objects"]]
    return sorted(set(names))


def list_folder(folder: str, stats: Optional[TransferStats] = None, *,
                timeouts: Timeouts = None, storage_options: Optional[dict] = None) -> list[Entry]:
    """Every file under a local folder or remote prefix (recursive), sorted by location.

    S3 prefixes are listed with the S3 API; HTTP folders need a directory index
    (nginx ``autoindex``, JSON or HTML, or any page of relative links), followed at most
    MAX_LISTING_DEPTH folders deep. A listing of more than MAX_LISTING_ENTRIES entries
    (:mod:`.limits`) raises SourceError.
    """
    if not is_url(folder):
        from .listing import list_files

        out = []
        for p in list_files(folder):
            try:
                out.append(Entry(p, os.path.getsize(p)))
            except OSError:  # a dangling link, or gone since listed: not part of the series
                pass
        return out
    if urllib.parse.urlsplit(folder).scheme.lower() == "s3":
        import obstore

        store, prefix = _store_for(folder, timeouts, storage_options)
        base = folder.split("://", 1)[0] + "://" + urllib.parse.urlsplit(folder).netloc
        objs = []
        try:
            for batch in obstore.list(store, prefix.rstrip("/") + "/" if prefix else None):
                objs.extend(batch)
                if len(objs) > limits.MAX_LISTING_ENTRIES:
                    raise _too_many(folder)
        except SourceError:
            raise
        except Exception as exc:
            raise _remote_error(exc, folder, timeouts) from exc
        if stats is not None:
            stats.add(0)
        return sorted(Entry(join(base, o["path"]), int(o["size"])) for o in objs)
    out: list = []
    _walk_http(folder, folder, stats, timeouts, 0, out)
    return sorted(out)


def _walk_http(root: str, folder: str, stats, timeouts_: Timeouts, depth: int, out: list) -> None:
    if depth > limits.MAX_LISTING_DEPTH:
        raise SourceError(f"folders nested more than {limits.MAX_LISTING_DEPTH} deep "
                          "(dicube.storage.limits.MAX_LISTING_DEPTH)", folder)
    for name, is_dir, size in _http_index(folder, stats, timeouts_):
        loc = join(folder, name)
        if is_dir:
            _walk_http(root, loc, stats, timeouts_, depth + 1, out)
        else:
            out.append(Entry(loc, size))
        if len(out) > limits.MAX_LISTING_ENTRIES:
            raise _too_many(root)
