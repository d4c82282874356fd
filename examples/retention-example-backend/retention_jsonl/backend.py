"""Records as lines of JSON files under one root directory.

Each line is one record: ``{"id": "c-17", "created": "2024-05-01T09:30:00+00:00",
"subject": "acme", ...}``. A record's location is ``<file relative to root>#<id>``.
Deleting rewrites a file atomically — the surviving lines go to a temporary file in the
same directory, which is fsynced and renamed over the original, then the directory is
fsynced — so a crash leaves the old file or the new one, never half of one. The rewrite
holds an exclusive ``flock`` on the file; writers should append under the same lock and
close the file between writes (rotated logs are the intended use).

The guard: a record's ``stamp`` is the SHA-256 of its line's content as scanned (every field
but ``locked``, which is storage's lock, not the record's data). Under the file lock, a line
is deleted or anonymized only if its content is still exactly that (and its id appears
once); a line re-created or modified since the scan is ``changed``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retention_core import Backend, Options, Outcome, Problem, Record, Source, Status

log = logging.getLogger("retention.jsonl")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class JsonlBackend(Backend):
    """Options: ``root`` (directory), ``suffix`` (default ``.jsonl``), ``anonymize_keep``
    (fields an anonymized line keeps, default ``[id, created]``).

    A line with ``"locked": true`` is one storage refuses to change: ``refused``. A line
    without an ``id``, without a ``created`` that carries a UTC offset, or whose id appears
    again in its file, and a file or folder that cannot be read, is yielded as a
    :class:`~retention_core.Problem`: never listed as a record, so never deleted, and reported.
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
    def scan(self, source: Source) -> Iterator[Record | Problem]:
        for rel in self._files(source.name):
            if isinstance(rel, Problem):
                yield rel
            else:
                yield from self._scan_file(rel, source.name)

    def _files(self, source: str) -> Iterator[str | Problem]:
        """Data files as ``/``-separated paths relative to root, sorted, no symlinks; a folder
        that cannot be read is a Problem (``os.walk`` would skip it silently)."""
        unreadable: list[OSError] = []
        for folder, dirs, files in os.walk(self.root, onerror=unreadable.append):
            while unreadable:
                exc = unreadable.pop()
                where = Path(exc.filename or folder).relative_to(self.root).as_posix()
                yield Problem(source, where, f"cannot read the folder: {exc.strerror or exc}")
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                rel = path.relative_to(self.root).as_posix()
                if not name.endswith(self.suffix) or name.startswith(".") or path.is_symlink():
                    continue
                if "#" in rel:
                    yield Problem(source, rel, "'#' in a file name: it separates file and id in locations")
                    continue
                yield rel
        for exc in unreadable:
            yield Problem(source, Path(exc.filename or self.root).relative_to(self.root).as_posix(),
                          f"cannot read the folder: {exc.strerror or exc}")

    def _scan_file(self, rel: str, source: str) -> Iterator[Record | Problem]:
        try:
            fd = os.open(self.root / rel, _OPEN_FLAGS)
        except FileNotFoundError:
            return  # removed since listing
        except OSError as exc:
            yield Problem(source, rel, f"cannot open the file: {exc.strerror or exc}")
            return
        seen: set[str] = set()
        with os.fdopen(fd, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                line = _parse(raw)
                if line is None:
                    if raw.strip():
                        yield Problem(source, f"{rel}:{number}", "not a JSON object with an id")
                    continue
                ident = _ident(line)
                location = f"{rel}#{ident}"
                subject = line.get("subject")
                subject = subject if isinstance(subject, str) and subject else None
                created = _created(line.get("created"))
                if created is None:
                    yield Problem(source, location, f"line {number}: 'created' must be an ISO time with a UTC offset",
                                  subject)
                    continue
                if ident in seen:
                    yield Problem(source, location, f"line {number}: the id appears again; neither copy is deleted",
                                  subject)
                    continue
                seen.add(ident)
                yield Record(source=source, location=location, created=created, size=len(raw),
                             subject=subject, stamp=_stamp(line))

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
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            yield from _all(targets, Status.ALREADY_GONE, None)
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield from _all(targets, Status.REFUSED, "the file is now a symlink; not followed")
            else:
                yield from _all(targets, Status.FAILED, exc.strerror or str(exc))
            return
        with os.fdopen(fd, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            lines = [(raw, _parse(raw)) for raw in fh]
            outcomes = self._judge(lines, targets, anonymize)
            acted = {o.record.location.partition("#")[2] for o in outcomes
                     if o.status in (Status.DELETED, Status.ANONYMIZED)}
            if acted:
                kept = [raw if line is None or _ident(line) not in acted
                        else self._anonymized(line) if anonymize else None
                        for raw, line in lines]
                try:
                    _replace(path, [raw for raw in kept if raw is not None])
                except OSError as exc:
                    error = f"rewriting {rel} failed: {exc.strerror or exc}; the file is unchanged"
                    outcomes = [Outcome(o.record, Status.FAILED, error)
                                if o.status in (Status.DELETED, Status.ANONYMIZED) else o for o in outcomes]
        yield from outcomes

    def _judge(self, lines: list[tuple[bytes, dict[str, Any] | None]], targets: dict[str, list[Record]],
               anonymize: bool) -> list[Outcome]:
        """One outcome per target record, read under the lock: the guard and the lock flag."""
        found: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
        for raw, line in lines:
            if line is not None and _ident(line) in targets:
                found.setdefault(_ident(line), []).append((raw, line))
        acting = Status.ANONYMIZED if anonymize else Status.DELETED
        outcomes = []
        for ident, records in targets.items():
            copies = found.get(ident, [])
            for record in records:
                if not copies:
                    outcomes.append(Outcome(record, Status.ALREADY_GONE))
                elif len(copies) > 1:
                    outcomes.append(Outcome(record, Status.CHANGED, f"the id appears {len(copies)} times"))
                elif record.stamp != _stamp(copies[0][1]):
                    outcomes.append(Outcome(record, Status.CHANGED, "the line changed since the scan"))
                elif copies[0][1].get("locked") is True:
                    outcomes.append(Outcome(record, Status.REFUSED, "line is marked locked"))
                else:
                    outcomes.append(Outcome(record, acting))
        return outcomes

    def _anonymized(self, line: dict[str, Any]) -> bytes:
        kept = {k: line[k] for k in self.keep if k in line}
        kept["anonymized"] = True
        return json.dumps(kept, ensure_ascii=False).encode("utf-8") + b"\n"


def _all(targets: dict[str, list[Record]], status: Status, error: str | None) -> Iterator[Outcome]:
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


def _stamp(line: dict[str, Any]) -> str:
    """What the guard compares: a digest of the line's fields but ``locked`` (a lock placed
    since the scan is storage refusing, reported ``refused``, not a change of the record)."""
    content = {k: v for k, v in line.items() if k != "locked"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


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
