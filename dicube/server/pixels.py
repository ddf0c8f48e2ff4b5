"""Pixel Data values kept in memory for the server's WADO-RS and DIMSE sides.

One :class:`PixelStore` per archive index (:func:`store_for`), shared by both sides in a
process: a frame decoded for a WADO request, or a stored codestream read and checksummed
once, serves the next WADO request and the next C-GET alike. Values are kept by (reader,
frame, transfer syntax) in a byte-bounded LRU (:class:`ByteCache`); a frame request can
also prefetch its series' other frames (:meth:`PixelStore.prefetch`).
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

__all__ = ["ByteCache", "PixelStore", "NotCached", "store_for", "CACHE_BYTES"]

#: Bytes of Pixel Data values kept (``DICUBE_SERVE_CACHE_MB`` overrides; 0 = none).
CACHE_BYTES = 256 << 20
_stores: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


class NotCached(Exception):
    """Raised by :meth:`PixelStore.get` with ``cached_only`` for a value not kept."""


class ByteCache:
    """A thread-safe LRU of bytes values bounded by their total size (``limit`` bytes;
    0 disables it)."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.size = 0
        self._items: "OrderedDict[tuple, bytes]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> Optional[bytes]:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value: bytes) -> bytes:
        if len(value) > self.limit // 4:  # one value never pushes out most of the others
            return value
        with self._lock:
            old = self._items.pop(key, None)
            self.size += len(value) - (len(old) if old is not None else 0)
            self._items[key] = value
            while self.size > self.limit:
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)
        return value


def default_cache_bytes() -> int:
    env = os.environ.get("DICUBE_SERVE_CACHE_MB", "").strip()
    return int(float(env) * (1 << 20)) if env else CACHE_BYTES


class PixelStore:
    """Pixel Data values (native pixels or codestreams) of the streaming readers of one
    archive, kept in a :class:`ByteCache` of ``cache_bytes``."""

    def __init__(self, cache_bytes: int):
        self.cache = ByteCache(cache_bytes)
        self._prefetched: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._prefetcher: Optional[ThreadPoolExecutor] = None

    def get(self, reader, frame: int, ts: str, cached_only: bool = False) -> bytes:
        """``reader.get_pixel_data(frame, ts)``, from the cache when there; ``cached_only``:
        raise NotCached instead of reading, decoding or coding."""
        # a weak reference: the cache must not keep readers the index let go open; a
        # replaced file's new reader never matches the old (dead references are unequal)
        key = (weakref.ref(reader), frame, ts)
        data = self.cache.get(key)
        if data is None:
            if cached_only:
                raise NotCached
            data = self.cache.put(key, reader.get_pixel_data(frame, ts))
        return data

    def instance(self, reader, i: int, ts: str, cached_only: bool = False):
        """The Pixel Data values of instance ``i``'s frames (see :meth:`get`): one bytes
        for a single-frame instance, else a list in frame order, as
        ``reader.get_dicom_pieces`` takes them."""
        frames = reader.frames_of_instance(i)
        if len(frames) == 1:
            return self.get(reader, frames[0], ts, cached_only)
        return [self.get(reader, k, ts, cached_only) for k in frames]

    def prefetch(self, reader, frame: int, ts: str, size: int) -> None:
        """Decode the other frames of ``reader``'s file into the cache on one worker thread,
        nearest to ``frame`` first: a viewer that asked for one frame of a series asks for
        its neighbours next. Once per file and syntax, and only when all its frames
        (``size`` bytes each) fit in half the cache."""
        n = len(reader)
        with self._lock:
            started = self._prefetched.setdefault(reader, set())
            if ts in started or n < 2 or n * size > self.cache.limit // 2:
                return
            started.add(ts)
            if self._prefetcher is None:  # one file at a time, beside the request workers
                self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="dicube-prefetch")
        order = sorted(range(n), key=lambda k: (abs(k - frame), k))[1:]

        def run() -> None:
            for k in order:
                try:
                    self.get(reader, k, ts)
                except Exception:  # a closed reader or a damaged frame: asked for, it answers
                    if getattr(reader, "closed", False):
                        return
        self._prefetcher.submit(run)


def store_for(index, cache_bytes: Optional[int] = None) -> PixelStore:
    """The PixelStore of ``index`` (made on first use with ``cache_bytes``, default
    ``DICUBE_SERVE_CACHE_MB`` MiB else 256 MiB; later sizes are ignored)."""
    with _stores_lock:
        store = _stores.get(index)
        if store is None:
            store = _stores[index] = PixelStore(default_cache_bytes() if cache_bytes is None
                                                else cache_bytes)
        return store
