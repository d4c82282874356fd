"""Records as lines of JSON files under one root directory.

Each line is one record: ``{"id": "c-17", "created": "2024-05-01T09:30:00+00:00",
"subject": "acme", ...}``. A record's location is ``<file relative to root>#<id>``.
Deleting rewrites a file atomically — the surviving lines go to a temporary file in the
same directory, which is fsynced and renamed over the original, then the directory is
fsynced — so a crash leaves the old file or the new one, never half of one. The rewrite
holds an exclusive ``flock`` on the file; writers should append under the same lock and
close the file between writes (rotated logs are the intended use).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retention_core import Backend, Options, Outcome, Record, Source, Status

log = logging.getLogger("retention.jsonl")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class JsonlBackend(Backend):
    """Options: ``root`` (directory), ``suffix`` (default ``.jsonl``), ``anonymize_keep``
    (fields an anonymized line keeps, default ``[id, created]``).

    A line with ``"locked": true`` is one storage refuses to change: ``refused``. Lines
    without an ``id`` or without a ``created`` that carries a UTC offset are reported in the
    log and never listed, so never deleted.
    """

    name = "jsonl"
    batch_size = 500
    can_refuse = True
    can_anonymize = True

    def __init__(self, options: Options) -> None:
        self.root: Path = options.path("root")
        self.suffix: str = options.str("suffix", ".jsonl")
        keep = options.raw("anonymize_keep", ["id", "created"])
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep) or "id" not in keep:
            raise options.error("anonymize_keep", f"expected a list of field names including 'id', found {keep!r}")
        self.keep: tuple[str, ...] = tuple(keep)
        options.done()
        if not self.root.is_dir():
            raise options.error("root", f"expected an existing directory, found {str(self.root)!r}")

    # -- scan --------------------------------------------------------------------------------
    def scan(self, source: Source) -> Iterator[Record]:
        for rel in self._files():
            yield from self._scan_file(rel, source.name)

    def _files(self) -> Iterator[str]:
        """Data files as ``/``-separated paths relative to root, sorted, no symlinks."""
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                rel = path.relative_to(self.root).as_posix()
                if not name.endswith(self.suffix) or name.startswith(".") or path.is_symlink():
                    continue
                if "#" in rel:
                    log.warning("skipping %s: '#' separates file and id in locations", rel)
                    continue
                yield rel

    def _scan_file(self, rel: str, source: str) -> Iterator[Record]:
        try:
            fd = os.open(self.root / rel, _OPEN_FLAGS)
        except FileNotFoundError:
            return  # removed since listing
        seen: set[str] = set()
        with os.fdopen(fd, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                line = _parse(raw)
                if line is None:
                    if raw.strip():
                        log.warning("%s:%d: not a JSON object with an id; skipped", rel, number)
                    continue
                ident = _ident(line)
                created = _created(line.get("created"))
                if created is None:
                    log.warning("%s:%d: 'created' must be an ISO time with a UTC offset; skipped", rel, number)
                    continue
                if ident in seen:
                    log.warning("%s:%d: id %r appears again; deleting it removes every copy", rel, number, ident)
                    continue
                seen.add(ident)
                subject = line.get("subject")
                yield Record(source=source, location=f"{rel}#{ident}", created=created, size=len(raw),
                             subject=subject if isinstance(subject, str) and subject else None)

    # -- delete / anonymize ---------------------------------------------------------------------
    def delete(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._change(records, anonymize=False)

    def anonymize(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._change(records, anonymize=True)

    def _change(self, records: Sequence[Record], *, anonymize: bool) -> Iterator[Outcome]:
        by_file: dict[str, dict[str, list[Record]]] = {}
        for record in records:
            rel, sep, ident = record.location.partition("#")
            if not sep or not _safe(rel):
                yield Outcome(record, Status.FAILED, f"{record.location!r} is not a <file>#<id> location under root")
                continue
            by_file.setdefault(rel, {}).setdefault(ident, []).append(record)
        for rel, targets in by_file.items():
            yield from self._change_file(rel, targets, anonymize)

    def _change_file(self, rel: str, targets: dict[str, list[Record]], anonymize: bool) -> Iterator[Outcome]:
        path = self.root / rel
        statuses: dict[str, Status] = {}
        error: str | None = None
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            fd = -1
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield from _all(targets, Status.REFUSED, "the file is now a symlink; not followed")
            else:
                yield from _all(targets, Status.FAILED, exc.strerror or str(exc))
            return
        if fd >= 0:
            with os.fdopen(fd, "rb") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
                kept: list[bytes] = []
                for raw in fh:
                    line = _parse(raw)
                    ident = _ident(line) if line is not None else None
                    if line is None or ident not in targets:
                        kept.append(raw)
                    elif line.get("locked") is True:
                        statuses[ident] = Status.REFUSED
                        kept.append(raw)
                    elif anonymize:
                        statuses[ident] = Status.ANONYMIZED
                        kept.append(self._anonymized(line))
                    else:
                        statuses[ident] = Status.DELETED
                changed = any(s in (Status.DELETED, Status.ANONYMIZED) for s in statuses.values())
                if changed:
                    try:
                        _replace(path, kept)
                    except OSError as exc:
                        error = f"rewriting {rel} failed: {exc.strerror or exc}; the file is unchanged"
        for ident, records in targets.items():
            status = statuses.get(ident, Status.ALREADY_GONE)
            for record in records:
                if status is Status.REFUSED:
                    yield Outcome(record, status, "line is marked locked")
                elif error is not None and status in (Status.DELETED, Status.ANONYMIZED):
                    yield Outcome(record, Status.FAILED, error)
                else:
                    yield Outcome(record, status)

    def _anonymized(self, line: dict[str, Any]) -> bytes:
        kept = {k: line[k] for k in self.keep if k in line}
        kept["anonymized"] = True
        return json.dumps(kept, ensure_ascii=False).encode("utf-8") + b"\n"


def _all(targets: dict[str, list[Record]], status: Status, error: str) -> Iterator[Outcome]:
    for records in targets.values():
        for record in records:
            yield Outcome(record, status, error)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("id"), (str, int)) or isinstance(line["id"], bool):
        return None
    return line


def _ident(line: dict[str, Any]) -> str:
    return str(line["id"])


def _created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a naive time could be any zone: never guess when deletion depends on it
    return parsed.astimezone(timezone.utc)


def _safe(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _replace(path: Path, lines: list[bytes]) -> None:
    """Write *lines* to a temporary sibling, fsync it, rename it over *path*, fsync the folder."""
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # The rename happened: the deletion is real even if making it durable fails below.
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        log.warning("could not fsync %s after rewriting %s: %s", path.parent, path.name, exc)
