"""Write a file atomically: a locked temporary file beside the target, fsync, rename, fsync folder.

Temporary files are named ``.{target}.dicube-{32 random hex digits}.tmp``, created with
``O_EXCL | O_NOFOLLOW`` (mode 0600) and hold an exclusive ``flock`` for their writer's
lifetime. A later write into the same folder removes those it can lock: their writer died
(``kill -9``, power loss) before it could remove them; a live writer's file is left alone.
The replaced file keeps its permission bits, owner and group where allowed; a new file gets
``0666 & ~umask``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import stat
from typing import BinaryIO, Iterator, Optional

from ..exceptions import WriteError

log = logging.getLogger("dicube")

#: Our temporary file names: ``.{target}.dicube-{32 hex digits}.tmp``.
_TMP_NAME = re.compile(r"\..+\.dicube-[0-9a-f]{32}\.tmp", re.S)
#: Bytes of the target name kept in a temporary name (a component is at most 255 bytes).
_STEM_BYTES = 180


def _temp_prefix(name: str) -> str:
    """``.{name}``, cut to leave room in a 255-byte name for the rest."""
    return "." + os.fsdecode(os.fsencode(name)[:_STEM_BYTES])


def is_temp_name(name: str) -> bool:
    """True if ``name`` has the form of one of our temporary files (for any target)."""
    return _TMP_NAME.fullmatch(name) is not None


@contextlib.contextmanager
def atomic_write(path: "os.PathLike[str] | str", *, dir_fd: Optional[int] = None,
                 shown: "os.PathLike[str] | str | None" = None,
                 clean: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces ``path`` in one step.

    With ``dir_fd``, ``path`` is one name inside that open folder (nothing is resolved);
    otherwise the folder of ``path`` is opened as given. ``shown`` is the name errors give
    (default ``path``). ``clean`` removes our temporary files in that folder whose writer died.
    Any ``OSError`` (also from the body) becomes a :class:`WriteError` naming ``shown``; on
    any error the temporary file is removed and ``path`` is left as it was.
    """
    shown = os.fspath(shown if shown is not None else path)
    own_dir = dir_fd is None
    name = os.fspath(path)
    try:
        if own_dir:
            folder, name = os.path.split(os.path.abspath(name))
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = _replaced(dir_fd, name)
        if clean:
            remove_stale(dir_fd)
        fd, tmp = _create_temp(dir_fd, name)
    except (OSError, ValueError) as exc:  # ValueError: a NUL or an unencodable character
        if own_dir and dir_fd is not None:
            os.close(dir_fd)
        raise write_error(exc, shown) from exc
    try:
        with open(fd, "wb", closefd=False) as fh:
            yield fh
        _set_owner_and_mode(fd, old)
        os.fsync(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tmp = None
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise write_error(exc, shown) from exc
        raise
    finally:
        os.close(fd)  # releases the lock only now, after the rename
        if own_dir:
            os.close(dir_fd)


def write_error(exc: Exception, shown) -> WriteError:
    """The WriteError for an OSError (or a ValueError from a bad name) writing ``shown``."""
    return WriteError(f"cannot write: {getattr(exc, 'strerror', None) or exc}", shown)


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replaced(dir_fd: int, name: str) -> Optional[os.stat_result]:
    """The regular file ``name`` replaces, or None (a link or special file is replaced, never
    followed); a folder there is an error."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    return st if stat.S_ISREG(st.st_mode) else None


def _set_owner_and_mode(fd: int, old: Optional[os.stat_result]) -> None:
    """The replaced file's owner, group and permission bits (else 0666 & ~umask). When its
    group cannot be kept, the group bits are dropped: another group must not gain access."""
    if old is None:
        os.fchmod(fd, 0o666 & ~umask())
        return
    mode = stat.S_IMODE(old.st_mode) & 0o777
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (old.st_uid, old.st_gid):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, old.st_uid, old.st_gid)
        with contextlib.suppress(OSError):  # a member of the group may set it
            os.fchown(fd, -1, old.st_gid)
        if os.fstat(fd).st_gid != old.st_gid:
            mode &= ~0o070
    os.fchmod(fd, mode)


def _create_temp(dir_fd: int, name: str) -> "tuple[int, str]":
    """A new, locked, unpredictable temporary file for target ``name``: (fd, its name)."""
    prefix = _temp_prefix(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = f"{prefix}.dicube-{secrets.token_hex(16)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        try:
            _lock(fd)
            # a cleaner that locked the new file first took it for a dead writer's: it is
            # unlinked by the time we get the lock, so take another name
            if os.fstat(fd).st_nlink:
                return fd, tmp
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:  # a file system without locks: cleaners cannot lock it either,
        if exc.errno not in _NO_LOCKS:  # so they leave it alone
            raise


_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def remove_stale(dir_fd: int) -> int:
    """Remove our temporary files in the folder ``dir_fd`` whose writer is dead; return how
    many were removed."""
    try:
        with os.scandir(dir_fd) as it:
            names = [e.name for e in it if e.name[:1] == "." and e.name[-4:] == ".tmp"]
    except OSError:
        return 0
    return sum(1 for entry in names if is_temp_name(entry) and remove_if_dead(dir_fd, entry))


def remove_if_dead(dir_fd: int, entry: str) -> bool:
    """Remove our temporary file ``entry`` if no live writer holds its lock; True if removed."""
    try:  # O_NONBLOCK: a FIFO under that name must not block the open
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: its writer is alive
            return False
        now = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(entry, dir_fd=dir_fd)  # still locked: a new writer of this file retries
        log.info("removed %s, a temporary file left by a writer that died", entry)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
