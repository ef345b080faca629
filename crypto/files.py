"""The one way crossfed writes a file: whole or not at all, with its mode from the start.

Keys, contexts, checkpoints, kits, refusal counts, status files and outputs all
go through :func:`write_atomically`. It lives in the lowest layer so that every
package can use it: ``crypto`` imports nothing of crossfed's.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` through a fresh temporary file with ``mode``, then move it.

    The temporary file is created exclusively (``O_EXCL``, no symlink followed)
    with ``mode`` at creation, so secret bytes never sit in a file anyone else
    may read, and ``fchmod`` restores only the bits a restrictive umask removed.
    Data and folder are fsynced: after a crash the file holds the old bytes or
    the new ones, never a mix. The parent folder must exist.

    Parameters
    ----------
    overwrite
        Replace an existing file (default); if false, refuse with
        :class:`FileExistsError` when ``path`` exists.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    OSError
        The write failed; ``path`` is left as it was.
    """
    target = Path(path)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_no_clobber(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _link_no_clobber(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` atomically, failing if ``target`` exists."""
    try:
        os.link(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # File systems without hard links: a check-then-rename, racy but rarely needed.
        if target.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from exc
        os.replace(tmp, target)
