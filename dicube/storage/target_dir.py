"""An output folder opened once; everything below it is read, written and removed relative
to its descriptor, one path component at a time, never following a symbolic link.

The folder's own path is the user's and is followed as given. Inside it, a link on the way
to a file (or at the file itself when reading) raises :class:`UnsafeTargetError` naming it,
so nothing is ever written outside the folder, even if a link is swapped in midway.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import BinaryIO, Iterator, Optional

from ..exceptions import UnsafeTargetError, WriteError
from .atomic import atomic_write, is_temp_name, remove_if_dead, write_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

LINK_MESSAGE = ("is a symbolic link inside the output folder; dicube does not write through "
                "links there (remove it or choose another folder)")


class TargetDir:
    """The output folder ``path`` (created if missing); names below it are ``/``-separated."""

    def __init__(self, path: "os.PathLike[str] | str"):
        self.path = os.fspath(path)
        try:
            os.makedirs(self.path, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ValueError) as exc:
            raise write_error(exc, self.path) from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "TargetDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def shown(self, rel: str) -> str:
        """The path of ``rel`` as the user sees it."""
        return os.path.join(self.path, *rel.split("/")) if rel else self.path

    # ------------------------------------------------------------------ folders
    @contextlib.contextmanager
    def folder(self, rel: str, create: bool = False) -> Iterator[int]:
        """A descriptor of the subfolder ``rel`` ("" = the folder itself), made if ``create``."""
        parts = [p for p in rel.split("/") if p]
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                sub = "/".join(parts[:i + 1])
                try:
                    nfd = self._open_dir(fd, part, sub, create)
                except OSError as exc:
                    raise write_error(exc, self.shown(sub)) from exc
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, parent: int, part: str, sub: str, create: bool) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=parent)
            return self._open_dir(parent, part, sub, False)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and self._is_link(parent, part):
                raise UnsafeTargetError(LINK_MESSAGE, self.shown(sub)) from None
            raise

    @staticmethod
    def _is_link(parent: int, part: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            return False

    # ------------------------------------------------------------------ files
    def write(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically (subfolders made as needed)."""
        folder, _, name = rel.rpartition("/")
        with self.folder(folder, create=True) as dfd:
            with atomic_write(name, dir_fd=dfd, shown=self.shown(rel), clean=False) as fh:
                fh.write(data)

    @contextlib.contextmanager
    def open_read(self, rel: str) -> Iterator[Optional[BinaryIO]]:
        """``rel`` open for reading, or None when it is missing, a link or not a regular file."""
        folder, _, name = rel.rpartition("/")
        fh = None
        try:
            with self.folder(folder) as dfd:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dfd)
            fh = os.fdopen(fd, "rb")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                fh.close()
                fh = None
        except (OSError, WriteError):
            fh = None
        try:
            yield fh
        finally:
            if fh is not None:
                fh.close()

    def unlink(self, rel: str) -> bool:
        """Remove the file (or link) ``rel``; True if it was removed."""
        folder, _, name = rel.rpartition("/")
        try:
            with self.folder(folder) as dfd:
                os.unlink(name, dir_fd=dfd)
            return True
        except (OSError, WriteError):
            return False

    def walk(self) -> "tuple[list[str], list[str]]":
        """(files, links) below the folder, not following links; our temporary files whose
        writer died are removed on the way and not listed."""
        files: list[str] = []
        links: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with self.folder(rel) as dfd, os.scandir(dfd) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it]
                    for name, is_dir, is_link in entries:
                        sub = f"{rel}/{name}" if rel else name
                        if is_link:
                            links.append(sub)
                        elif is_dir:
                            stack.append(sub)
                        elif not (is_temp_name(name) and remove_if_dead(dfd, name)):
                            files.append(sub)
            except OSError as exc:
                raise WriteError(f"cannot read: {exc.strerror or exc}", self.shown(rel)) from exc
        return sorted(files), sorted(links)
