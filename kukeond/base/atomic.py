"""Crash-safe file primitives for the run-path tree (all blocking, all small).

A file is replaced by writing a temp file next to it, fsyncing it, renaming
it over the target and fsyncing the directory, so a reader (or a restart
after a crash) sees either the old content or the new, never a mix. Temp
files carry :data:`TEMP_PREFIX` and :data:`TEMP_SUFFIX`; leftovers from a
crash are swept when the metadata store loads the tree.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile

TEMP_PREFIX = ".meta-"
TEMP_SUFFIX = ".tmp"
DIR_MODE = stat.S_ISGID | 0o750
FILE_MODE = 0o644


def ensure_dir(path: str, mode: int = DIR_MODE) -> None:
    """Create ``path`` and missing parents, then set ``mode`` on ``path`` itself.

    The explicit chmod matters: ``mkdir`` applies the umask and drops setgid.
    """
    os.makedirs(path, mode=mode & 0o777, exist_ok=True)
    os.chmod(path, mode)


def fsync_dir(path: str) -> None:
    """Flush a directory entry change to disk; failures are ignored (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = FILE_MODE) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically; return the new file's stat.

    A missing parent directory is created with :data:`DIR_MODE`.
    """
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        ensure_dir(parent)
    written = replace_file(path, data, mode)
    fsync_dir(parent)
    return written


def replace_file(path: str, data: bytes, mode: int) -> os.stat_result:
    """Write ``data`` to a fsynced temp file next to ``path``, then rename it over ``path``.

    The parent directory must exist. The temp file never crosses a filesystem,
    so a crash leaves the old content or the new, never a torn file; on any
    failure the temp file is removed. Returns the new file's stat, taken
    before the rename (so it is ours even if another writer follows at once).
    """
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=os.path.dirname(path))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            written = os.fstat(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return written


def remove_file_and_empty_dir(path: str) -> bool:
    """Remove ``path`` (missing is fine), then its directory if now empty.

    Returns whether the file existed.
    """
    try:
        os.unlink(path)
        existed = True
    except FileNotFoundError:
        existed = False
    parent = os.path.dirname(path)
    try:
        os.rmdir(parent)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise
    else:
        fsync_dir(os.path.dirname(parent))
    return existed


def remove_tree(path: str) -> None:
    """Remove the directory ``path`` and everything below it (missing is fine)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temp files."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def unlink_quietly(path: str) -> bool:
    """Remove ``path``; whether it was removed (any failure is swallowed)."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
