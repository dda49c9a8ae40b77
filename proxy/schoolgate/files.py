"""Writing a file so that a reader sees the old contents or the new, never half: write a temporary
file beside it, then rename it over the old one. The one way Schoolgate replaces a file it owns
(reports, the list cache, the last good illegal lists, tokens, the local policy, status files).

A leaf: it imports nothing of Schoolgate.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["create_once", "replacing", "write_atomically"]

PRIVATE = 0o600
"""Owner read and write only: for everything that holds personal data or a secret."""


@contextlib.contextmanager
def replacing(path: Path, *, mode: int = PRIVATE, durable: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing (binary); when the block ends without an
    exception, it replaces `path` whole (created with `mode`; the folder is made if missing).
    On an exception the temporary file is removed and `path` is untouched. With `durable`, the
    data reaches the disk before the rename, so a power cut leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two processes replacing one file must not share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: str | bytes, *, mode: int = PRIVATE,
                     durable: bool = False) -> None:
    """Replace `path` with `data` (text as UTF-8) as `replacing` does."""
    with replacing(path, mode=mode, durable=durable) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def create_once(path: Path, data: str | bytes, *, mode: int = PRIVATE) -> bool:
    """Create `path` holding `data` unless it exists, atomically: when several processes start
    at once, the first one's file wins and the others keep it. True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        try:
            os.link(tmp, path)  # fails if the file exists: the first writer wins
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: a rename is atomic too
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)
