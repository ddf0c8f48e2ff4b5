"""BufferPool: output arrays reused once nobody holds them.

Writing into a freshly allocated large array costs a page fault per 4 KiB page, which on
a 100 MB volume is about as slow as decoding it. The pool hands out arrays it keeps, and
hands one out again only when its reference count shows that no sample, view or tensor
(``torch.from_numpy`` keeps the array alive) still uses it, so two live samples never
share memory.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["BufferPool"]

# references to a pooled array that nobody else holds: the pool's list, the loop
# variable and getrefcount's own argument
_IDLE_REFS = 3


class BufferPool:
    """Arrays by (shape, dtype), kept up to ``max_bytes`` in all (least recently used
    shapes are dropped first); beyond that, fresh arrays that are not kept."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self._bufs: "OrderedDict[tuple, list[np.ndarray]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple, dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` (contents undefined) that no one else uses."""
        dtype = np.dtype(dtype)
        key = (tuple(int(s) for s in shape), dtype.str)
        with self._lock:
            bufs = self._bufs.get(key)
            if bufs is not None:
                self._bufs.move_to_end(key)
                for b in bufs:
                    if sys.getrefcount(b) <= _IDLE_REFS:
                        return b
            arr = np.empty(key[0], dtype)
            if arr.nbytes <= self.max_bytes:
                self._evict(self.max_bytes - arr.nbytes, keep=key)
                if self._bytes + arr.nbytes <= self.max_bytes:
                    self._bufs.setdefault(key, []).append(arr)
                    self._bytes += arr.nbytes
            return arr

    def _evict(self, budget: int, keep: tuple) -> None:
        for key in list(self._bufs):
            if self._bytes <= budget:
                return
            if key == keep:
                continue
            # arrays still in use stay with their users; they only leave the pool
            self._bytes -= sum(b.nbytes for b in self._bufs.pop(key))

    def clear(self) -> None:
        """Forget every kept array."""
        with self._lock:
            self._bufs.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays kept."""
        return self._bytes

    def __getstate__(self) -> dict:  # kept arrays are never pickled
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])
