"""Writing a file so that no reader ever sees half of it: reports, certificates, plugin output."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ConfigError


@contextmanager
def atomic_write(path: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text handle whose content replaces *path* only if the ``with`` block succeeds.

    The text goes to a temporary file beside *path* (the same filesystem, so the rename is
    atomic), is flushed to disk, then renamed over *path*: a reader — or a crash — sees the
    old file or the new one, never a prefix. If the block raises, the temporary file is
    removed and *path* is left as it was. Missing parent folders are created; a folder that
    cannot be created or written is a :class:`ConfigError` naming *path*.

    ``newline`` is passed to :func:`open` (``""`` for the :mod:`csv` module).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_write"]
