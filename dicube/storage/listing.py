"""Listing a local folder without opening a file: the regular files under it, each once,
symbolic links followed, loops and aliases recognised, bounded like remote listings
(:mod:`.limits`). Used by DICOM reading (:mod:`dicube.dicom.dicom_io`) and by
:func:`dicube.storage.sources.list_folder`.
"""
from __future__ import annotations

import heapq
import os
import stat
from dataclasses import dataclass, field
from typing import NamedTuple, Union

from ..exceptions import DicomReadError, SourceNotFoundError
from . import limits

__all__ = ["SkippedFile", "list_files"]

PathLike = Union[str, "os.PathLike[str]"]


class SkippedFile(NamedTuple):
    """A folder entry that was not read, and why (``series_uid``: the series its header
    names, when it could be parsed that far)."""

    path: str
    reason: str
    series_uid: str = ""


_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _os_reason(exc: OSError, link: bool = False) -> str:
    """Why ``exc`` happened; ``link``: the path is a symbolic link (then a missing target
    is a broken link)."""
    if link and isinstance(exc, FileNotFoundError):
        return "broken symbolic link"
    return exc.strerror or str(exc)


@dataclass
class _Listing:
    files: list[str]                                               # regular files
    not_regular: list[SkippedFile] = field(default_factory=list)   # FIFOs, sockets, devices
    unreadable: list[SkippedFile] = field(default_factory=list)    # cannot be listed or stat'ed
    aliases: list[SkippedFile] = field(default_factory=list)       # a file already listed


def _scan(folder: PathLike, recursive: bool = True) -> _Listing:
    """Sort the entries under ``folder`` into regular files and the rest, without opening
    any of them.

    Symbolic links are followed, to files and to folders (those only when ``recursive``).
    Each folder is listed once, whatever the paths leading to it (a link loop, a link to
    an ancestor), and each file is listed once (by ``(st_dev, st_ino)``), under its path
    through the fewest symbolic links, then the fewest folders, then the first in path
    order; its other paths (symbolic or hard links to it) are ``aliases``. So files of
    the tree itself keep their own paths, whatever links point at them.
    """
    folder = os.fspath(folder)
    try:
        st = os.stat(folder)
    except OSError as exc:
        if os.path.lexists(folder):
            raise DicomReadError(_os_reason(exc, os.path.islink(folder)), folder) from None
        raise SourceNotFoundError("no such file or folder", folder) from None
    if stat.S_ISREG(st.st_mode):
        return _Listing([folder])
    if not stat.S_ISDIR(st.st_mode):
        raise DicomReadError(f"not a file or folder ({_kind(st.st_mode)})", folder)
    out = _Listing([])
    visited: set = set()
    seen = 0
    found: list = []  # (links, depth, path, (st_dev, st_ino)) of every regular file
    # folders and links to resolve, best path first: (links, depth, path, key; None: a link)
    todo: list = [(0, 0, folder, (st.st_dev, st.st_ino))]
    while todo:
        links, depth, path, key = heapq.heappop(todo)
        if key is None:
            try:
                st = os.stat(path)
            except OSError as exc:
                out.unreadable.append(SkippedFile(path, _os_reason(exc, True)))
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((links, depth, path, (st.st_dev, st.st_ino)))
                continue
            if not stat.S_ISDIR(st.st_mode):
                out.not_regular.append(SkippedFile(path, f"not a regular file ({_kind(st.st_mode)})"))
                continue
            if not recursive:
                continue
            key = (st.st_dev, st.st_ino)
        if key in visited:
            continue
        visited.add(key)
        if depth > limits.MAX_LISTING_DEPTH:
            raise DicomReadError(f"folders nested more than {limits.MAX_LISTING_DEPTH} deep at {path} "
                                 "(dicube.storage.limits.MAX_LISTING_DEPTH)", folder)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            out.unreadable.append(SkippedFile(path, f"cannot list folder: {_os_reason(exc)}"))
            continue
        seen += len(entries)
        if seen > limits.MAX_LISTING_ENTRIES:  # e.g. a link to / inside the input folder
            raise DicomReadError(f"more than {limits.MAX_LISTING_ENTRIES} entries under the folder "
                                 "(dicube.storage.limits.MAX_LISTING_ENTRIES)", folder)
        for e in entries:
            try:
                if e.is_symlink():
                    heapq.heappush(todo, (links + 1, depth + 1, e.path, None))
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                out.unreadable.append(SkippedFile(e.path, _os_reason(exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    heapq.heappush(todo, (links, depth + 1, e.path, (st.st_dev, st.st_ino)))
            elif stat.S_ISREG(st.st_mode):
                found.append((links, depth + 1, e.path, (st.st_dev, st.st_ino)))
            else:
                out.not_regular.append(SkippedFile(e.path, f"not a regular file ({_kind(st.st_mode)})"))
    first: dict = {}
    for _, _, path, key in sorted(found):
        if key in first:
            out.aliases.append(SkippedFile(path, f"same file as {first[key]}"))
        else:
            first[key] = path
    out.files = sorted(first.values())
    out.not_regular.sort()
    out.unreadable.sort()
    out.aliases.sort()
    return out


def list_files(folder: PathLike, recursive: bool = True) -> list[str]:
    """Regular files under ``folder`` (or ``[folder]`` if it is a file), sorted, each once;
    symbolic links are followed (see :func:`_scan`), FIFOs, sockets and devices left out
    (never opened)."""
    return _scan(folder, recursive).files
