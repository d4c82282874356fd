"""The audit trail: append-only JSONL where each line carries the SHA-256 of the previous.

Lines are written per batch (buffered, one fsync per batch, never per record) under an
exclusive ``flock`` so that hold changes made while a run is going on cannot fork the chain.
``verify`` finds the first edited, deleted, reordered or truncated line, and any line whose
JSON is ambiguous (a key given twice reads differently in different tools).

With a key (:func:`load_key`: ``RETENTION_AUDIT_KEY_FILE`` or ``RETENTION_AUDIT_KEY``) each
line also carries an HMAC-SHA-256 over the same content as its hash, so that a trail rewritten
and fully rehashed by someone without the key fails verification. A writer given a state
store (:func:`trail_for`) records the head there after every durable append, so that lines
removed from the end are found too.

A torn last line (a crash or a full disk mid-write) is repaired by the next writer: the
partial bytes are cut off and a ``trail-repaired`` line journals their length and SHA-256.

A deletion batch is journalled as one ``intent`` line before the backend is called and one
``outcome`` line after, each listing every record of the batch as a row under ``fields``
(:func:`batch_entry`); :func:`expand` gives the per-record view every reader uses. One line
per batch rather than per record is what keeps the trail's cost (JSON and SHA-256) small
beside the deletions themselves.

A line may refer to a file instead of carrying its rows (files relative to the trail's
directory):

* ``"evidence": {"file", "rows", "sha256"}`` — the batch's rows in a sidecar file, in the
  line's ``fields`` order, in PostgreSQL's ``COPY`` text format (one row a line, tab between
  columns, ``\\N`` for NULL, backslash escapes: byte-exact, NULL told from ''). A database
  streams them there as bytes (``COPY (DELETE … RETURNING …) TO STDOUT``) without a Python
  object per row; the SHA-256 in the hash-chained line makes the file part of the chain. A
  ``location`` column holds the exact text; readers give it as batch lines do (with
  ``location_hex``).
* ``"segment": {"file", "lines", "head", "sha256"}`` — a whole trail (same format, same key)
  written by one partition of a run; its records read as if they stood at that line.

:func:`expand`, :func:`records` and :func:`walk` read through both; :func:`verify` checks
every referenced file (existence, SHA-256, row or line count; segments as trails).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import AuditError, ConfigError
from .text import exact_hex, printable

GENESIS = "0" * 64

#: Where the chain's HMAC key comes from: a file holding it (preferred: not in the process
#: environment of every child), or the key itself.
KEY_FILE_ENV = "RETENTION_AUDIT_KEY_FILE"
KEY_ENV = "RETENTION_AUDIT_KEY"
#: A shorter key could be guessed offline from any one line and its HMAC.
MIN_KEY_BYTES = 16

#: The columns of a batch entry's ``records`` rows (what identifies a record, and why).
INTENT_FIELDS = ("location", "location_hex", "version", "subject", "category", "reason")
OUTCOME_FIELDS = (*INTENT_FIELDS, "outcome", "error")


#: One encoder for every line: json.dumps() built a new encoder per call, and encoding each
#: entry twice (once to hash, once to write) was most of an enforcing run's audit time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(body: Mapping[str, Any]) -> str:
    """A line's body as the chain hashes it: sorted keys, no spaces, ASCII (a documented format,
    so a verifier can be written anew)."""
    return _CANONICAL.encode(body)


def chain_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """A line's ``hash``: SHA-256 of the previous line's hash followed by :func:`canonical`."""
    return hashlib.sha256((prev_hash + canonical(body)).encode("ascii")).hexdigest()


# -- strict JSON ------------------------------------------------------------------------------
class DuplicateKeyError(ValueError):
    """A JSON object with a key given twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all distinct: Python keeps the last of two equal keys, other
    tools the first, so a line with a key twice means different things to different readers."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateKeyError(f"key {name!r} appears twice (tools disagree on which value counts: "
                                        "tampering)")
            seen.add(name)
    return out


def parse_line(raw: bytes | str) -> Any:
    """One trail line as JSON, refusing duplicate keys (raises ValueError, DuplicateKeyError)."""
    return json.loads(raw, object_pairs_hook=_unique)


#: Keys the writer puts in every line (or every keyed line): never an entry's own.
_WRITTEN_KEYS = frozenset({"seq", "time", "prev_hash", "hash", "key_id", "hmac"})
#: Keys every line has (or may have): never the name of a row field.
_LINE_KEYS = _WRITTEN_KEYS | {"event"}


def _ambiguous_batch(entry: Mapping[str, Any]) -> str | None:
    """Why a batch entry's rows could be read two ways, if they could: a field named twice,
    or a field that is also a key of the line (a row value would override the line's)."""
    fields = entry.get("fields")
    if fields is None and "records" not in entry:
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return "its 'fields' is not a list of names"
    if len(set(fields)) != len(fields):
        return "a name appears twice in its 'fields' (tampering)"
    both = sorted(set(fields) & (entry.keys() | _LINE_KEYS))
    if both:
        return f"{both[0]!r} is both a key of the line and a field of its rows (tampering)"
    if "evidence" in entry:
        return "it carries both 'records' and an evidence file" if "records" in entry else None
    if not isinstance(entry.get("records"), list):
        return "its 'records' is not a list of rows"
    return None


# -- the key ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrailKey:
    """The secret of a keyed chain. Its :attr:`id` is journalled (never the key) so that a
    verifier can tell "another key" from "rewritten"."""

    secret: bytes = field(repr=False)

    @property
    def id(self) -> str:
        return hashlib.sha256(b"retention audit key id\0" + self.secret).hexdigest()[:16]

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode("ascii"), hashlib.sha256).hexdigest()


def load_key(key_file: Path | None = None, environ: Mapping[str, str] | None = None) -> TrailKey | None:
    """The chain key from *key_file*, else ``$RETENTION_AUDIT_KEY_FILE``, else
    ``$RETENTION_AUDIT_KEY``; None when none is set. Trailing whitespace (a file's newline)
    is not part of the key."""
    env = os.environ if environ is None else environ
    if key_file is None and env.get(KEY_FILE_ENV) and env.get(KEY_ENV):
        raise ConfigError(f"set only one of {KEY_FILE_ENV} and {KEY_ENV}", key=KEY_ENV)
    if key_file is None and env.get(KEY_FILE_ENV):
        key_file = Path(env[KEY_FILE_ENV])
    if key_file is not None:
        try:
            secret = key_file.read_bytes().rstrip()
        except OSError as exc:
            raise ConfigError(f"cannot read the audit key: {exc.strerror or exc}", file=str(key_file)) from None
        where = str(key_file)
    elif env.get(KEY_ENV):
        secret, where = env[KEY_ENV].encode("utf-8").rstrip(), KEY_ENV
    else:
        return None
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(f"the audit key has {len(secret)} bytes, expected at least {MIN_KEY_BYTES} "
                          "(e.g. `openssl rand -hex 32`)", file=where)
    return TrailKey(secret)


# -- writing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """The last line of a trail: where the next line chains from."""

    seq: int
    hash: str


@dataclass(frozen=True)
class _Tail:
    """The last complete line as the writer needs it: the head, and the key id it was signed with."""

    head: Head
    key_id: str | None = None


class HeadStore(Protocol):
    """Where a writer records the trail's head (the state store)."""

    def record_audit_head(self, seq: int, hash: str, genesis: str | None = None) -> None: ...


def genesis(path: Path) -> str | None:
    """The hash of the trail's first line: which trail a recorded head belongs to (a trail
    rotated to a new file starts its seq again), or None for an empty or unreadable one."""
    try:
        with path.open("rb") as f:
            first = f.readline()
        found = json.loads(first).get("hash")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


class AuditTrail:
    """Append entries to one trail file.

    *key* makes every line carry an HMAC; *on_append* is told the head after every append
    that is on disk (see :func:`trail_for`).
    """

    def __init__(self, path: Path, *, key: TrailKey | None = None,
                 on_append: Callable[[Head], None] | None = None, lock_timeout: float | None = None) -> None:
        self.path = path
        self.key = key
        self.on_append = on_append
        #: How long an append waits for another writer's lock (None: as long as it takes). A
        #: writer stopped while appending (SIGSTOP) keeps the lock: `holds place --wait` bounds it.
        self.lock_timeout = lock_timeout
        # The tail as this object last wrote it, with the file's identity and size then: reused
        # while nobody else has appended (re-reading a 1,000-record batch line backwards to
        # find the head cost more than writing it).
        self._last: tuple[tuple[int, int, int, int], _Tail] | None = None

    def append(self, entries: Iterable[Mapping[str, Any]], *, sync: bool = True) -> Head:
        """Append *entries* as one batch; each gets seq, time, prev_hash and hash.

        The batch is on disk when this returns (fsync), unless ``sync`` is False: then it
        becomes durable with the next synced append. Only lines whose loss a later run can
        make good may skip it (a deletion's outcome: recovery settles an intent left without
        one from storage itself); an intent never does. The head is recorded (``on_append``)
        only after a synced append, so the recorded head is always on disk.
        """
        try:
            fd = self._open()
        except OSError as exc:
            raise AuditError(f"cannot write the audit trail {self.path}: {exc.strerror or exc}") from None
        try:
            return self._append(fd, entries, sync)
        except OSError as exc:  # a full disk, an I/O error: one line, never an internal error
            raise AuditError(f"cannot write the audit trail {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def _append(self, fd: int, entries: Iterable[Mapping[str, Any]], sync: bool) -> Head:
        self._lock(fd)
        if self._last is not None and self._last[0] == _identity(fd):
            tail, torn = self._last[1], b""
        else:
            tail, torn = _read_tail(fd, self.path)
        if torn and (whole := _whole_line(torn, tail.head)) is not None:
            # A complete, chained entry missing only its newline is evidence, not debris: it is
            # completed, never cut (cutting it would erase a committed line without a trace).
            os.write(fd, b"\n")
            tail, torn = whole, b""
            entries = [{"event": "trail-repaired", "cut_bytes": 0, "cut_sha256": hashlib.sha256(b"").hexdigest(),
                        "completed_seq": whole.head.seq,
                        "reason": "the last line was complete but for its final newline; the newline "
                                  "was added, nothing was cut"}, *entries]
        self._check_key(tail)
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        if torn:
            entries = [self._repair(fd, torn), *entries]
        lines = []
        seq, prev = tail.head.seq, tail.head.hash
        keyed = {"key_id": self.key.id} if self.key is not None else {}
        for entry in entries:
            if not _WRITTEN_KEYS.isdisjoint(entry):
                raise ValueError(f"an audit entry may not set {sorted(_WRITTEN_KEYS.intersection(entry))}: "
                                 "the trail writes them (a second 'hash' would make the line ambiguous)")
            seq += 1
            body_text = canonical({"seq": seq, "time": now, **entry, **keyed, "prev_hash": prev})
            text = prev + body_text
            prev = hashlib.sha256(text.encode("ascii")).hexdigest()
            # The written line is the hashed text with "hash" (and "hmac") appended as its
            # last keys: verify() parses the line and re-canonicalises, so key order is free.
            mac = f',"hmac":"{self.key.sign(text)}"' if self.key is not None else ""
            lines.append(f'{body_text[:-1]},"hash":"{prev}"{mac}}}')
        head = Head(seq, prev)
        if lines:
            data = ("\n".join(lines) + "\n").encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to the audit trail {self.path}")
            if sync or torn:
                os.fsync(fd)
            if (sync or torn) and self.on_append is not None:
                self.on_append(head)
        self._last = (_identity(fd), _Tail(head, self.key.id if self.key is not None else tail.key_id))
        return head

    def _lock(self, fd: int) -> None:
        if self.lock_timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AuditError(f"the audit trail {self.path} stayed locked by another writer for "
                                     f"{self.lock_timeout:g} s (a run stopped or stuck while appending?)") from None
                time.sleep(0.05)

    def head(self) -> Head:
        """The last complete line's seq and hash (a torn last line is not counted)."""
        if not self.path.exists():
            return Head(0, GENESIS)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return _read_tail(fd, self.path)[0].head
        finally:
            os.close(fd)

    def check(self) -> None:
        """Raise now what :meth:`append` would (a keyed trail without its key, a last line that
        is not an entry), so that a command fails before it changes anything."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        try:
            self._check_key(_read_tail(fd, self.path)[0])
        finally:
            os.close(fd)

    def _open(self) -> int:
        """The trail's descriptor for appending; a path that cannot be one is a ConfigError."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise _unwritable(self.path, exc) from None

    def _check_key(self, tail: _Tail) -> None:
        """Refuse to extend a keyed trail without its key, or with another one: either would
        leave lines that the key holder's ``verify`` must reject."""
        if tail.key_id is None:
            return
        if self.key is None:
            raise AuditError(f"the audit trail {self.path} is keyed (key id {tail.key_id}) and no key is set: "
                             f"set {KEY_FILE_ENV} (or {KEY_ENV}) so that its lines stay keyed")
        if self.key.id != tail.key_id:
            raise AuditError(f"the audit trail {self.path} is keyed with key id {tail.key_id}, not with the "
                             f"given key (id {self.key.id})")

    def _repair(self, fd: int, torn: bytes) -> dict[str, Any]:
        """Cut the partial bytes after the last newline; the entry that journals the cut."""
        size = os.fstat(fd).st_size
        os.ftruncate(fd, size - len(torn))
        return {"event": "trail-repaired", "cut_bytes": len(torn), "cut_offset": size - len(torn),
                "cut_sha256": hashlib.sha256(torn).hexdigest(),
                "reason": "the last line was incomplete (torn by a crash or a full disk, or edited): "
                          "its bytes were cut off before appending"}


def trail_for(path: Path, state: HeadStore | None = None, *, key_file: Path | None = None,
              lock_timeout: float | None = None) -> AuditTrail:
    """The trail a command appends to: keyed when a key is set (:func:`load_key`), recording
    its head in *state* after every append. The path and the key are checked now, so that a
    directory, an unwritable place or a missing key fails before the command changes anything."""
    check_writable(path)
    on_append = None if state is None else (lambda head: state.record_audit_head(head.seq, head.hash, genesis(path)))
    trail = AuditTrail(path, key=load_key(key_file), on_append=on_append, lock_timeout=lock_timeout)
    trail.check()
    return trail


def check_writable(path: Path) -> None:
    """Raise a ConfigError naming *path* if the trail could not be appended to."""
    path = path.absolute()
    if path.is_dir():
        raise _unwritable(path, IsADirectoryError(21, "it is a directory, expected a file"))
    for suffix in (EVIDENCE_SUFFIX, SEGMENTS_SUFFIX):  # where the files the trail names are kept
        beside = path.parent / (path.name + suffix)
        if beside.exists() and not beside.is_dir():
            raise _unwritable(path, NotADirectoryError(20, f"{beside} is not a directory (the trail keeps the "
                                                           "files its lines name there)"))
    if path.exists():
        if not path.is_file():  # a device (/dev/full), a FIFO: never a trail that can be verified
            raise _unwritable(path, OSError(22, "it is not a regular file"))
        if not os.access(path, os.W_OK):
            raise _unwritable(path, PermissionError(13, "the file is not writable"))
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise _unwritable(path, NotADirectoryError(20, f"{parent} is not a directory"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _unwritable(path, PermissionError(13, f"the directory {parent} is not writable"))


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write the audit trail (`audit:` in the policy): {exc.strerror or exc}",
                       file=str(path))


def _identity(fd: int) -> tuple[int, int, int, int]:
    """What changes when anyone else writes the file: device, inode, size, modification time."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_tail(fd: int, path: Path) -> tuple[_Tail, bytes]:
    """The last complete line, and the bytes after the last newline (a torn line), reading
    backwards from the end."""
    pos = os.fstat(fd).st_size
    buf = b""
    while pos > 0:
        step = min(8192, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        end = buf.rfind(b"\n")
        if end < 0:
            continue
        start = buf.rfind(b"\n", 0, end)
        if start >= 0 or pos == 0:
            return _parse_tail(buf[start + 1:end], path), buf[end + 1:]
    return _Tail(Head(0, GENESIS)), buf


def _whole_line(raw: bytes, head: Head) -> _Tail | None:
    """*raw* (bytes after the last newline) as the next line of the chain, if it is one whole."""
    try:
        body = parse_line(raw)
        claimed = body.pop("hash")
        body.pop("hmac", None)
        chained = body.get("seq") == head.seq + 1 and body.get("prev_hash") == head.hash
        if chained and hashlib.sha256((head.hash + canonical(body)).encode("ascii")).hexdigest() == claimed:
            return _Tail(Head(int(body["seq"]), str(claimed)), body.get("key_id"))
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return None


def _parse_tail(raw: bytes, path: Path) -> _Tail:
    try:
        last = parse_line(raw)
        tail = _Tail(Head(int(last["seq"]), str(last["hash"])), last.get("key_id"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AuditError(f"{path}: the last line is not an audit entry ({exc}); nothing is appended to a "
                         f"broken trail: see `retention audit verify {path}`") from None
    return tail


# -- verifying --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repair:
    """A ``trail-repaired`` line: where a writer cut a torn last line off, and what it cut."""

    line: int
    cut_bytes: int
    cut_sha256: str
    time: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    head: Head
    problem: str | None = None
    line: int | None = None
    #: The first line carrying an HMAC (every later line does too), and its key id.
    keyed_from: int | None = None
    key_id: str | None = None
    #: Whether the HMACs were checked (a key was given).
    hmac_checked: bool = False
    repairs: tuple[Repair, ...] = ()


@dataclass
class _Walk:
    """What verify carries from one line to the next."""

    prev: str = GENESIS
    seq: int = 0
    keyed_from: int | None = None
    key_id: str | None = None
    repairs: list[Repair] = field(default_factory=list)
    expected_hash: str | None = None
    #: The trail's directory (what referenced files are relative to), and each referenced
    #: file's (SHA-256, newlines) once read (an intent and its outcome name the same file).
    base: Path | None = None
    files: dict[Path, tuple[str, int] | None] = field(default_factory=dict)


def verify(path: Path, *, expect: Head | None = None, key: TrailKey | None = None) -> VerifyResult:
    """Check every line's hash and link (and, with *key*, its HMAC); *expect* (the head the
    state store recorded) catches lines removed from the end."""
    walk = _Walk(base=path.parent)
    count = 0
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise ConfigError("cannot read the audit trail: it is a directory, FIFO or device, not a regular file",
                              file=str(path))
        handle = path.open("rb")
    except FileNotFoundError:
        return VerifyResult(False, 0, Head(0, GENESIS), f"audit trail {path} does not exist")
    except OSError as exc:
        raise ConfigError(f"cannot read the audit trail: {exc.strerror or exc}", file=str(path)) from None

    def result(ok: bool, problem: str | None = None, line: int | None = None) -> VerifyResult:
        return VerifyResult(ok, count, Head(walk.seq, walk.prev), problem, line, walk.keyed_from, walk.key_id,
                            key is not None, tuple(walk.repairs))

    with handle:
        for number, raw in _numbered_lines(handle, path):
            problem = _check_line(raw, number, walk, key)
            if problem:
                return result(False, problem, number)
            count = number
            if expect is not None and walk.seq == expect.seq:
                walk.expected_hash = walk.prev
    if key is not None and count and walk.keyed_from is None:
        return result(False, "no line is keyed, but a key was given: the trail was written without a key, or "
                             "rewritten without one", count)
    if expect is not None and expect.seq > walk.seq:
        return result(False, f"trail ends at seq {walk.seq} but the state store recorded seq {expect.seq}: "
                             "lines were removed from the end (truncated)", count + 1)
    if expect is not None and expect.seq and walk.expected_hash != expect.hash:
        return result(False, f"line seq {expect.seq} does not carry the hash the state store recorded "
                             "(the trail was rewritten)", expect.seq)
    return result(True)


def _numbered_lines(handle: IO[bytes], path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's lines, numbered from 1; a read error (/proc files, a failing disk) is one line."""
    try:
        yield from enumerate(handle, start=1)
    except OSError as exc:
        raise ConfigError(f"cannot read the audit trail: {exc.strerror or exc}", file=str(path)) from None


def _check_line(raw: bytes, number: int, walk: _Walk, key: TrailKey | None) -> str | None:
    """Why line *number* breaks the chain, or None (then *walk* has moved past it)."""
    if not raw.endswith(b"\n"):
        return (f"last line is incomplete ({len(raw)} bytes after the last newline: torn or truncated); "
                "the next append cuts them off and journals a trail-repaired line")
    try:
        body = parse_line(raw)
    except DuplicateKeyError as exc:
        return f"not strict JSON: {exc}"
    except ValueError:
        return "not valid JSON"
    if not isinstance(body, dict) or not isinstance(body.get("hash"), str):
        return "not an audit entry"
    claimed, mac = body.pop("hash"), body.pop("hmac", None)
    if body.get("seq") != walk.seq + 1:
        return f"expected seq {walk.seq + 1}, found {body.get('seq')!r} (a line was deleted or reordered)"
    if body.get("prev_hash") != walk.prev:
        return "prev_hash does not match the previous line (a line was deleted, inserted or reordered)"
    text = walk.prev + canonical(body)
    if hashlib.sha256(text.encode("ascii")).hexdigest() != claimed:
        return "hash does not match the line's content (the line was edited)"
    problem = _check_keying(body.get("key_id"), mac, text, number, walk, key)
    if problem:
        return problem
    ambiguous = _ambiguous_batch(body)
    if ambiguous:
        return f"batch line is ambiguous: {ambiguous}"
    problem = _check_references(body, walk, key)
    if problem:
        return problem
    if body.get("event") == "trail-repaired":
        walk.repairs.append(Repair(number, int(body.get("cut_bytes") or 0), str(body.get("cut_sha256")),
                                   str(body.get("time"))))
    walk.seq, walk.prev = body["seq"], claimed
    return None


def _check_references(body: dict[str, Any], walk: _Walk, key: TrailKey | None) -> str | None:
    """Why a file the line names (evidence, segment) is not what the line says, or None."""
    if "evidence" in body and "segment" in body:
        return "a line names both an evidence file and a segment"
    if "evidence" in body:
        ref = body["evidence"]
        if not _is_ref(ref, "rows") or "records" in body:
            return "its 'evidence' is not {file, rows, sha256} (or the line also carries records)"
        path, problem = _read_ref(ref, walk)
        if problem:
            return problem
        digest, lines = walk.files[path]  # type: ignore[misc]  # read by _read_ref
        if digest != ref["sha256"]:
            return f"evidence file {path} does not have the SHA-256 the line records (the file was altered)"
        if lines != ref["rows"]:
            return f"evidence file {path} has {lines} rows, the line records {ref['rows']} (truncated or extended)"
        return None
    if "segment" in body:
        ref = body["segment"]
        if not _is_ref(ref, "lines") or not isinstance(ref.get("head"), str):
            return "its 'segment' is not {file, lines, head, sha256}"
        path, problem = _read_ref(ref, walk)
        if problem:
            return problem
        digest, _ = walk.files[path]  # type: ignore[misc]  # read by _read_ref
        if digest != ref["sha256"]:
            return f"segment {path} does not have the SHA-256 the line records (the file was altered)"
        inner = verify(path, key=key)
        if not inner.ok:
            return f"segment {path}: line {inner.line}: {inner.problem}"
        if inner.lines != ref["lines"] or inner.head.hash != ref["head"]:
            return (f"segment {path} has {inner.lines} lines ending in {inner.head.hash[:12]}…, the line records "
                    f"{ref['lines']} ending in {str(ref['head'])[:12]}…")
        keyed = body.get("key_id")
        if inner.lines and inner.key_id != keyed:
            return f"segment {path} is keyed with key id {inner.key_id!r}, the line with {keyed!r}"
    return None


def _is_ref(ref: Any, count: str) -> bool:
    return (isinstance(ref, dict) and isinstance(ref.get("file"), str) and isinstance(ref.get(count), int)
            and isinstance(ref.get("sha256"), str))


def _read_ref(ref: dict[str, Any], walk: _Walk) -> tuple[Path, str | None]:
    """The referenced file's path, hashed into ``walk.files``; or why it cannot be read."""
    rel = ref["file"]
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        return Path(rel), f"the file {rel} is not inside the trail's directory"
    path = (walk.base or Path(".")) / rel
    if path not in walk.files:
        try:
            walk.files[path] = file_sha256(path) if path.is_file() else None
        except OSError:
            walk.files[path] = None
    if walk.files[path] is None:
        return path, f"the file {path} the line refers to is missing or unreadable"
    return path, None


def _check_keying(key_id: Any, mac: Any, text: str, number: int, walk: _Walk, key: TrailKey | None) -> str | None:
    """Keyed lines form one unbroken suffix under one key id; with *key*, their HMACs match."""
    if (key_id is None) != (mac is None):
        return "a line carries one of key_id and hmac without the other (the line was altered)"
    if key_id is None:
        if walk.keyed_from is not None:
            return (f"line is not keyed but lines from {walk.keyed_from} on are: it was written without the "
                    "key or rewritten")
        return None
    if walk.key_id is not None and key_id != walk.key_id:
        return f"keyed with key id {key_id!r}, earlier lines with {walk.key_id!r}"
    if key is not None:
        if key_id != key.id:
            return f"keyed with key id {key_id!r}, not with the given key (id {key.id})"
        if not isinstance(mac, str) or not hmac.compare_digest(mac, key.sign(text)):
            return "HMAC does not match: the line was rewritten without the key"
    if walk.keyed_from is None:
        walk.keyed_from, walk.key_id = number, key_id
    return None


# -- reading ----------------------------------------------------------------------------------
def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a trail, in order (hashes not checked: that is :func:`verify`).

    A line that is not strict JSON (a key given twice) raises :class:`AuditError`. An
    incomplete last line is not an entry yet (a write in progress, or torn: ``verify``
    reports it and the next writer cuts it off and journals that).
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                return
            if not raw.strip():
                continue
            try:
                entry = parse_line(raw)
            except ValueError as exc:
                raise AuditError(f"{path}: line {number}: not a valid audit entry: {exc}") from None
            if not isinstance(entry, dict):
                raise AuditError(f"{path}: line {number}: not an audit entry")
            yield entry


def batch_entry(event: str, run_id: str, source: str, action: str, rows: Sequence[Sequence[Any]]
                ) -> dict[str, Any]:
    """One line for a whole batch: *rows* are :data:`INTENT_FIELDS` (or, for ``outcome``,
    :data:`OUTCOME_FIELDS`) values, one row per record.

    A field with one value for every record of the batch (the reason, the category, a null
    version …) is written once, as a key of the line, and left out of ``fields`` and the
    rows: the same record reads back from :func:`expand`, and the line is a fraction of the
    size (and of the JSON and SHA-256 work).
    """
    names = OUTCOME_FIELDS if event == "outcome" else INTENT_FIELDS
    entry: dict[str, Any] = {"event": event, "run_id": run_id, "source": source, "action": action}
    varying = []
    for i, name in enumerate(names):
        # C-speed loops that stop at the first difference (this runs over every record; a set
        # per field hashed every location and cost a sixth of a push-down run).
        if rows and not any(map(ne, repeat(rows[0][i]), map(itemgetter(i), rows))):
            entry[name] = rows[0][i]
        else:
            varying.append(i)
    entry["fields"] = [names[i] for i in varying]
    if len(varying) > 1:
        entry["records"] = list(map(itemgetter(*varying), rows))  # tuples encode as arrays
    elif varying:
        entry["records"] = [[value] for value in map(itemgetter(varying[0]), rows)]
    else:
        entry["records"] = [[] for _ in rows]
    return entry


def expand(entry: Mapping[str, Any], base: Path | None = None) -> Iterator[dict[str, Any]]:
    """The per-record view of *entry*: one dict per row of a batch entry (its shared keys
    plus the row's fields); any other entry (run-start, hold-placed …) unchanged.

    An entry whose rows are in an evidence file reads them from that file, relative to
    *base* (the trail's directory); a ``segment`` entry yields the segment's records. A
    missing or unreadable file, or a batch entry whose rows could be read two ways (a field
    named twice, or also a key of the line), raises :class:`AuditError` naming it.
    """
    if "segment" in entry:
        segment = _segment_path(entry, base)
        yield from records(segment)
        return
    rows, fields = entry.get("records"), entry.get("fields")
    if rows is None and fields is None:
        yield dict(entry)
        return
    ambiguous = _ambiguous_batch(entry)
    if ambiguous:
        raise AuditError(f"audit entry seq {entry.get('seq')!r}: {ambiguous}")
    shared = {k: v for k, v in entry.items() if k not in ("records", "fields", "evidence")}
    if "evidence" in entry:
        yield from _expand_evidence(entry, shared, fields, base)  # type: ignore[arg-type]  # checked above
        return
    for row in rows:  # type: ignore[union-attr]  # a list: checked by _ambiguous_batch
        yield {**shared, **dict(zip(fields, row, strict=False))}  # type: ignore[arg-type]  # a short row reads as nulls


def records(path: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a trail in order, batch entries expanded to one dict per record (read
    through evidence files and segments)."""
    base = path.parent
    for entry in read(path):
        yield from expand(entry, base)


@dataclass(frozen=True)
class Line:
    """One entry as :func:`walk` gives it: the entry, the directory its files are relative to,
    and the line of the top trail that carries it (itself, or the segment line it came from)."""

    entry: dict[str, Any]
    base: Path
    top: dict[str, Any]


def walk(path: Path) -> Iterator[Line]:
    """Every entry of a trail in order, a segment line replaced by the segment's entries
    (recursively); batch entries are not expanded (a reader filters on the line first, then
    calls ``expand(line.entry, line.base)``)."""
    for entry in read(path):
        if "segment" in entry:
            for inner in walk(_segment_path(entry, path.parent)):
                yield Line(inner.entry, inner.base, entry)
        else:
            yield Line(entry, path.parent, entry)


def _segment_path(entry: Mapping[str, Any], base: Path | None) -> Path:
    ref = entry.get("segment")
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        raise AuditError(f"audit entry seq {entry.get('seq')!r}: its 'segment' does not name a file")
    path = _referenced(ref["file"], base, entry)
    # Checked before any entry of it is believed (recovery and certificates act on them).
    try:
        digest, _ = file_sha256(path)
    except OSError as exc:
        raise AuditError(f"segment {path} (audit entry seq {entry.get('seq')!r}) cannot be read: "
                         f"{exc.strerror or exc}") from None
    if digest != ref.get("sha256"):
        raise AuditError(f"segment {path} (audit entry seq {entry.get('seq')!r}) does not have the SHA-256 its "
                         "line records (altered or replaced): its entries are not read")
    return path


def _referenced(rel: str, base: Path | None, entry: Mapping[str, Any]) -> Path:
    if base is None:
        raise AuditError(f"audit entry seq {entry.get('seq')!r} refers to the file {rel}: read it with the "
                         "trail's directory (audit.records(), or expand(entry, base))")
    return base / rel


# -- evidence files ---------------------------------------------------------------------------------
#: Where a run's evidence files go: ``<trail>.evidence/<run_id>/`` next to the trail.
EVIDENCE_SUFFIX = ".evidence"
#: Where a distributed run's segments go: ``<trail>.segments/<run_id>/`` (retention_core.partitioned).
SEGMENTS_SUFFIX = ".segments"
#: The columns a streamed push-down batch's evidence file holds (the rest of a record's row is
#: the same for every record of the batch, and is written once, on the line).
STREAMED_FIELDS = ("location", "subject")

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
            "\v": "\\v"}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def evidence_dir(trail: Path, run_id: str) -> Path:
    """The directory a run's evidence files are written to (created by :class:`EvidenceWriter`)."""
    return trail.parent / (trail.name + EVIDENCE_SUFFIX) / run_id


def copy_text_row(values: Sequence[str | None]) -> bytes:
    """One row in ``COPY`` text format (what PostgreSQL streams), for writers that build rows
    themselves (MariaDB, SQLite)."""
    return ("\t".join("\\N" if v is None else v.translate(_ESCAPE_TABLE) for v in values) + "\n").encode("utf-8")


def parse_copy_text(line: bytes, width: int) -> list[str | None]:
    """One ``COPY`` text-format row (without its newline) as *width* values; raises ValueError."""
    text = line.decode("utf-8")
    cells = text.split("\t")
    if len(cells) != width:
        raise ValueError(f"{len(cells)} columns, expected {width}")
    return [None if c == "\\N" else (_unescape(c) if "\\" in c else c) for c in cells]


def _unescape(cell: str) -> str:
    """Undo ``COPY`` text escapes: \\b \\f \\n \\r \\t \\v \\\\, octal \\ooo and \\xhh
    (PostgreSQL writes only the first kind; it reads all)."""
    out: list[str] = []
    i, n = 0, len(cell)
    while i < n:
        c = cell[i]
        if c != "\\" or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = cell[i + 1]
        simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in "01234567":
            j = i + 1
            while j < n and j < i + 4 and cell[j] in "01234567":
                j += 1
            out.append(chr(int(cell[i + 1:j], 8)))
            i = j
        elif nxt == "x" and i + 2 < n and cell[i + 2] in "0123456789abcdefABCDEF":
            j = i + 2
            while j < n and j < i + 4 and cell[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(chr(int(cell[i + 2:j], 16)))
            i = j
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


class EvidenceWriter:
    """A batch's evidence file, written as bytes arrive: counts rows (newlines), hashes, and on
    :meth:`finish` fsyncs the file and its directory, so that it is durable before the intent
    line that names it is written. Created exclusively: a file is never overwritten."""

    #: Bytes gathered before one write and hash update (a database may hand over one row at a time).
    BUFFER = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.rows = 0
        self._last = b"\n"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= self.BUFFER:
            self._flush()

    def _flush(self) -> None:
        data = self._buffer
        if not data:
            return
        self._hash.update(data)
        self.rows += data.count(b"\n")
        self._last = bytes(data[-1:])
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        view.release()
        self._buffer = bytearray()

    def finish(self) -> tuple[int, str]:
        """Make the file durable (file and directory fsynced); (rows, SHA-256)."""
        self._flush()
        if self._last != b"\n":
            raise AuditError(f"evidence file {self.path}: the last row has no newline (the stream was cut)")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        sync_dir(self.path.parent)
        return self.rows, self._hash.hexdigest()

    def abandon(self) -> None:
        """Close without syncing (the batch failed before its intent: the file stays, an orphan
        no line names)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sync_dir(path: Path) -> None:
    """fsync a directory (and its parent, which may have just gained it), so new names in it survive a crash."""
    for each in (path, path.parent):
        fd = os.open(each, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def segment_ref(segment: Path, base: Path) -> dict[str, Any]:
    """A ``segment`` line's reference: the file relative to the trail's directory *base*, its
    line count and head hash, its SHA-256."""
    head = AuditTrail(segment).head()
    digest, _ = file_sha256(segment)
    return {"file": os.path.relpath(segment, base), "lines": head.seq, "head": head.hash, "sha256": digest}


def evidence_ref(trail_dir: Path, path: Path, rows: int, sha256: str) -> dict[str, Any]:
    """The ``evidence`` value of a line naming *path* (relative to the trail's directory)."""
    return {"file": os.path.relpath(path, trail_dir), "rows": rows, "sha256": sha256}


def _expand_evidence(entry: Mapping[str, Any], shared: dict[str, Any], fields: list[str],
                     base: Path | None) -> Iterator[dict[str, Any]]:
    ref = entry.get("evidence")
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        raise AuditError(f"audit entry seq {entry.get('seq')!r}: its 'evidence' does not name a file")
    path = _referenced(ref["file"], base, entry)
    derive = "location" in fields and "location_hex" not in fields
    width = len(fields)
    # Read whole (one batch: bounded) and checked against the line before any row is believed:
    # recovery and certificates act on these rows, so an altered file must not name a record.
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"evidence file {path} (audit entry seq {entry.get('seq')!r}) cannot be read: "
                         f"{exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256") or data.count(b"\n") != ref.get("rows"):
        raise AuditError(f"evidence file {path} (audit entry seq {entry.get('seq')!r}) does not have the SHA-256 "
                         "and row count its line records (altered, truncated or replaced): its rows are not read")
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            values = parse_copy_text(raw, width)
        except ValueError as exc:
            raise AuditError(f"evidence file {path}: row {number}: {exc}") from None
        one = {**shared, **dict(zip(fields, values, strict=True))}
        if derive:
            location = one["location"]
            if location is not None and not location.isascii():
                one["location"], one["location_hex"] = printable(location), exact_hex(location)
            else:
                one["location_hex"] = None
        yield one


def file_sha256(path: Path) -> tuple[str, int]:
    """(SHA-256, newline count) of a file, read in blocks."""
    digest = hashlib.sha256()
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


def read_backwards(path: Path, block: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The trail's lines, last first, parsed strictly; reads only as far as the caller goes
    (what a run or a hold placed last is near the end of a trail of millions of lines). A line
    that does not parse is skipped here: it is `audit verify`'s business."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        tail = b""
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start) + tail
            end = start
            lines = chunk.split(b"\n")
            tail = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                if line.strip():
                    try:
                        yield parse_line(line)
                    except ValueError:
                        continue


def last_event(path: Path, event: str) -> dict[str, Any] | None:
    """The trail's last line of kind *event* (``run-start`` …), or None."""
    if not path.is_file():  # missing, or not a trail at all (a directory: check_writable says so)
        return None
    return next((e for e in read_backwards(path) if isinstance(e, dict) and e.get("event") == event), None)
