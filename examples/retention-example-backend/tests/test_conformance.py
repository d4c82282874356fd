"""The JSON-lines backend against retention's conformance suite.

The helpers read and write the files with plain ``json`` and ``open`` — never through the
backend — so the suite sees what is really on disk.
"""

from __future__ import annotations

import errno
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from retention_jsonl.backend import JsonlBackend

from retention_core import Backend, Options, Problem, Record
from retention_core.testing import BackendConformanceTests


class TestJsonlBackend(BackendConformanceTests):
    # One delete batch rewrites each file once, as a whole: a fault on a file fails every
    # record of that file in the batch, not only the faulted one.
    fault_isolated = False

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        self.root = tmp_path
        with JsonlBackend(Options({"root": str(tmp_path)})) as backend:
            yield backend

    def to_location(self, name: str) -> str:
        # Spread the suite's names over a few files (one nested) so rewrites are per file.
        files = ("a.jsonl", "b.jsonl", "nested/c.jsonl")
        return f"{files[zlib.crc32(name.encode()) % len(files)]}#{name}"

    def _lines(self, rel: str) -> list[dict[str, Any]]:
        path = self.root / rel
        if not path.exists():
            return []
        return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw.strip()]

    def seed(self, location: str, created: datetime) -> None:
        rel, _, ident = location.partition("#")
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": ident, "created": created.isoformat(), "subject": "s1",
                                 "text": "hello"}) + "\n")

    def exists(self, location: str) -> bool:
        rel, _, ident = location.partition("#")
        return any(line["id"] == ident for line in self._lines(rel))

    def _write(self, rel: str, lines: list[dict[str, Any]]) -> None:
        (self.root / rel).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    def recreate(self, location: str, created: datetime) -> None:
        # An application deleting the event and logging a new one with the same id: new text.
        rel, _, ident = location.partition("#")
        lines = [line for line in self._lines(rel) if line["id"] != ident]
        self._write(rel, [*lines, {"id": ident, "created": created.isoformat(), "subject": "s1",
                                   "text": "a new event"}])

    def modify(self, location: str) -> None:
        rel, _, ident = location.partition("#")
        self._write(rel, [dict(line, text=line["text"] + "!") if line["id"] == ident else line
                          for line in self._lines(rel)])

    def seed_problem(self, location: str) -> None:
        rel, _, ident = location.partition("#")
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        with (self.root / rel).open("a", encoding="utf-8") as fh:  # a naive time: never guessed
            fh.write(json.dumps({"id": ident, "created": "2020-01-01T00:00:00", "subject": "s1"}) + "\n")

    def lock(self, location: str) -> None:
        rel, _, ident = location.partition("#")
        self._write(rel, [dict(line, locked=True) if line["id"] == ident else line for line in self._lines(rel)])

    def fault(self, location: str) -> None:
        target = str(self.root / location.partition("#")[0])
        real_replace = os.replace
        tripped: list[str] = []

        def replace_failing_once(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if not tripped and os.fspath(dst) == target:
                tripped.append(target)
                raise OSError(errno.EIO, "injected I/O error")
            real_replace(src, dst, *args, **kwargs)

        self.monkeypatch.setattr(os, "replace", replace_failing_once)

    # -- beyond the suite: what is specific to this backend ------------------------------------

    def test_anonymize_keeps_only_the_allowed_fields(self, backend: Backend, source: Any) -> None:
        self.seed("a.jsonl#r1", datetime.fromisoformat("2020-01-01T00:00:00+00:00"))
        [record] = backend.scan(source)
        [outcome] = backend.anonymize([record])
        assert outcome.status == "anonymized"
        assert self._lines("a.jsonl") == [{"id": "r1", "created": "2020-01-01T00:00:00+00:00", "anonymized": True}]

    def test_lines_that_cannot_be_records_are_problems(self, backend: Backend, source: Any) -> None:
        (self.root / "a.jsonl").write_text(
            '{"id": "naive", "created": "2020-01-01T00:00:00", "subject": "acme"}\n'
            '{"id": "no-created"}\n'
            'not json\n'
            '{"id": "ok", "created": "2020-01-01T00:00:00Z", "subject": "acme"}\n'
            '{"id": "ok", "created": "2020-01-02T00:00:00Z", "subject": "acme"}\n', encoding="utf-8")
        items = list(backend.scan(source))
        assert [(r.location, r.subject) for r in items if isinstance(r, Record)] == [("a.jsonl#ok", "acme")]
        problems = [(p.location, p.subject) for p in items if isinstance(p, Problem)]
        assert problems == [("a.jsonl#naive", "acme"), ("a.jsonl#no-created", None), ("a.jsonl:3", None),
                            ("a.jsonl#ok", "acme")]

    def test_a_duplicated_id_is_never_deleted(self, backend: Backend, source: Any) -> None:
        self.seed("a.jsonl#r1", datetime.fromisoformat("2020-01-01T00:00:00+00:00"))
        [record] = backend.scan(source)
        self.seed("a.jsonl#r1", datetime.fromisoformat("2020-01-02T00:00:00+00:00"))  # a second copy since
        [outcome] = backend.delete([record])
        assert outcome.status == "changed"
        assert len(self._lines("a.jsonl")) == 2

    def test_an_unreadable_folder_is_a_problem(self, backend: Backend, source: Any) -> None:
        self.seed("ok.jsonl#r1", datetime.fromisoformat("2020-01-01T00:00:00+00:00"))
        (self.root / "locked").mkdir()
        real_scandir = os.scandir

        def scandir(path: Any) -> Any:
            if os.fspath(path).endswith("locked"):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_scandir(path)

        self.monkeypatch.setattr(os, "scandir", scandir)
        items = list(backend.scan(source))
        assert [r.location for r in items if isinstance(r, Record)] == ["ok.jsonl#r1"]
        assert [(p.location, p.reason) for p in items if isinstance(p, Problem)] == [
            ("locked", "cannot read the folder: Permission denied")]

    def test_delete_keeps_unparseable_lines_and_file_mode(self, backend: Backend, source: Any) -> None:
        path = self.root / "a.jsonl"
        path.write_text('garbage line\n{"id": "x", "created": "2020-01-01T00:00:00Z"}\n', encoding="utf-8")
        path.chmod(0o640)
        [record] = [r for r in backend.scan(source) if isinstance(r, Record)]
        assert [o.status for o in backend.delete([record])] == ["deleted"]
        assert path.read_text(encoding="utf-8") == "garbage line\n"
        assert path.stat().st_mode & 0o777 == 0o640
        assert [p.name for p in self.root.iterdir()] == ["a.jsonl"], "no temporary file may be left behind"

    def test_root_must_exist(self, tmp_path: Path) -> None:
        from retention_core import ConfigError

        with pytest.raises(ConfigError, match="options.root: expected an existing directory"):
            JsonlBackend(Options({"root": str(tmp_path / "nope")}))

    def test_fault_helper_really_faults(self, backend: Backend, source: Any) -> None:
        """This backend does not retry, so the injected fault must surface as ``failed``."""
        self.seed("a.jsonl#r1", datetime.fromisoformat("2020-01-01T00:00:00+00:00"))
        [record] = backend.scan(source)
        self.fault("a.jsonl#r1")
        [outcome] = backend.delete([record])
        assert outcome.status == "failed" and "injected" in (outcome.error or "")
        assert self.exists("a.jsonl#r1")
