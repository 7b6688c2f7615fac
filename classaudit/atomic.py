"""Whole files or nothing: how classaudit writes every file that another process, or a later command, reads.

A file is written under a temporary name in its own folder, flushed and fsynced, then renamed over the target
(rename within a folder is atomic on POSIX file systems), so a reader sees the old file or the new one, never half
of one, even after a kill or a power loss. On any error the temporary is removed and the target is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def temporary_name(path: Path) -> Path:
    """The temporary beside `path`: hidden, and named by the process so that two writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def durable_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it (for files inside a folder that is itself renamed into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def staged(path: str | Path) -> Iterator[BinaryIO]:
    """Open the temporary of `path` for writing; leave it written and fsynced, not yet renamed. Removed on error.
    For writers that must prepare several files before any of them replaces its target."""
    tmp = temporary_name(Path(path))
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: renamed into place when the block ends without error."""
    path = Path(path)
    with staged(path) as f:
        yield f
    try:
        os.replace(temporary_name(path), path)
    finally:
        temporary_name(path).unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write a whole file or nothing (text as UTF-8)."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
