"""The reference backend passes the suite it is the reference for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from retention_core import Backend, Options
from retention_core.testing import BackendConformanceTests, memory
from retention_core.testing.memory import InMemoryBackend


class TestInMemoryBackend(BackendConformanceTests):
    page_size = 7

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        self.store = f"conformance-{uuid.uuid4().hex}"
        with InMemoryBackend(Options({"store": self.store, "page_size": self.page_size})) as backend:
            yield backend
        memory.reset(self.store)

    def seed(self, location: str, created: datetime) -> None:
        memory.seed(self.store, location, created)

    def exists(self, location: str) -> bool:
        return memory.exists(self.store, location)

    def recreate(self, location: str, created: datetime) -> None:
        memory.recreate(self.store, location, created)

    def modify(self, location: str) -> None:
        memory.modify(self.store, location)

    def seed_problem(self, location: str) -> None:
        memory.seed_problem(self.store, location)

    def lock(self, location: str) -> None:
        memory.lock(self.store, location)

    def fault(self, location: str) -> None:
        memory.fault(self.store, location)
