"""Small files replaced atomically: a crash leaves either the old content or the new one."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """Where :func:`write_atomically` stages ``path``'s new content."""
    return path.with_name(path.name + ".tmp")


def private_dir(path: str | Path) -> None:
    """Make ``path`` (and missing parents) a directory only its owner may enter (0700),
    tightening one that exists."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def write_atomically(path: str | Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write a temporary file, fsync it, rename it over ``path``, fsync the directory.

    Raises ``OSError``; callers turn it into their own error.
    """
    path = Path(path)
    tmp = temporary_path(path)
    fd = _create_new(tmp, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _create_new(tmp: Path, mode: int) -> int:
    """A new file at ``tmp`` made by this call (O_EXCL, so never through a link planted there, and
    with ``mode`` whatever was there). A regular file left there by a write a crash interrupted is
    replaced; anything else there (a symbolic link, a directory, a device) is refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(tmp, flags, mode)
    except FileExistsError:
        if not stat.S_ISREG(os.lstat(tmp).st_mode):
            raise FileExistsError(errno.EEXIST, "something other than a file is in the way of the temporary file",
                                  str(tmp)) from None
    os.unlink(tmp)  # a stale staging file of an interrupted write
    return os.open(tmp, flags, mode)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
