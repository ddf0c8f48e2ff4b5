"""Per-process cache of open .dcbs files and what their heads say.

Readers are opened on first use in the process that uses them: a cache that finds it
is running in a different process than the one that filled it (a forked DataLoader
worker) drops everything and reopens, and it pickles empty (spawned workers).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..core.io import meta_from_reader, pixel_header_from_reader, space_from_reader
from ..core.pixel_header import PixelDataHeader
from ..storage.reader import DcbsReader
from ..storage.sources import TransferStats

__all__ = ["OpenFile", "FileCache"]


@dataclass
class OpenFile:
    """An open file and its head: frame count, space, pixel header, metadata values."""

    reader: DcbsReader
    frame_count: int
    space: Any
    pixel_header: Optional[PixelDataHeader]
    #: tag -> ("shared", value) or ("per_slice", [value per frame]); filled on demand
    meta_values: dict = field(default_factory=dict)
    #: (first, stop) -> (Space, affine) of frame windows already drawn
    windows: dict = field(default_factory=dict)


class FileCache:
    """Open files by path or URL, at most ``max_open`` kept open (the least recently used is
    dropped, and closed as soon as no sample is reading it). ``source_options`` go to each
    :class:`~dicube.storage.reader.DcbsReader` (``timeouts``, ``coalesce_gap``...); ``stats``
    counts the bytes and requests of this process's readers (reset in a new process)."""

    def __init__(self, max_open: int = 128, **source_options):
        self.max_open = max_open
        self.source_options = source_options
        self.stats = TransferStats()
        self._pid = os.getpid()
        self._files: "OrderedDict[str, OpenFile]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> OpenFile:
        """The open file at ``path`` (opened now if this process has not opened it)."""
        with self._lock:
            if self._pid != os.getpid():  # inherited through fork: the parent's readers
                self._files = OrderedDict()  # are left to the parent; open our own
                self._pid = os.getpid()
                self.stats = TransferStats()
            f = self._files.get(path)
            if f is not None:
                self._files.move_to_end(path)
                return f
        reader = DcbsReader(path, stats=self.stats, **self.source_options)
        try:
            f = OpenFile(reader, reader.frame_count, space_from_reader(reader),
                         pixel_header_from_reader(reader))
        except BaseException:
            reader.close()
            raise
        with self._lock:
            old = self._files.get(path)
            if old is not None:  # another thread opened it meanwhile
                reader.close()
                return old
            self._files[path] = f
            while len(self._files) > self.max_open:
                # not closed here: another thread may be reading it; its reader closes
                # itself once the last sample using it lets go (DcbsReader.__del__)
                self._files.popitem(last=False)
        return f

    def meta_values(self, f: OpenFile, keys: Sequence[str]) -> dict:
        """Values of ``keys`` for file ``f`` from its DicomMeta, parsed once per file (a
        damaged per-slice element raises MetaDataError when it is one of ``keys``)."""
        missing = [k for k in keys if k not in f.meta_values]
        if missing:
            meta = meta_from_reader(f.reader, lazy=True)  # only the asked keys are parsed
            for k in missing:
                if meta is None:
                    f.meta_values[k] = ("shared", None)
                elif meta.is_shared(k):
                    f.meta_values[k] = ("shared", meta.get_shared_value(k))
                else:
                    f.meta_values[k] = ("per_slice", meta.get_values(k))
        return f.meta_values

    def close(self) -> None:
        """Close every file this process opened."""
        with self._lock:
            files, self._files = self._files, OrderedDict()
            if self._pid == os.getpid():
                for f in files.values():
                    f.reader.close()

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open, "source_options": self.source_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"], **state.get("source_options", {}))
