"""A small contact-centre policy over the in-memory backend, with a known answer for every record.

As of ``NOW``: acme is active (kept, clock not started), globex ended long ago but is under
the Smith hold, initech ended long ago (due), kid is a minor (due), hooli ended recently
(becomes due inside the forecast window), and dana has an overdue erasure request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from retention_core.state import StateStore
from retention_core.testing import memory
from retention_core.testing.builders import PolicyBuilder

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)

SUBJECTS = [
    {"subject_id": "acme", "controller": "acme-corp", "service_ended_at": "", "minor": False},
    {"subject_id": "globex", "controller": "globex-inc", "service_ended_at": "2024-01-15", "minor": False},
    {"subject_id": "initech", "controller": "initech-llc", "service_ended_at": "2025-01-01", "minor": False},
    {"subject_id": "kid", "controller": "school", "service_ended_at": "", "minor": True},
    {"subject_id": "hooli", "controller": "hooli-xyz", "service_ended_at": "2026-04-01", "minor": False},
    {"subject_id": "dana", "controller": "dana-co", "service_ended_at": "", "minor": False},
]

#: location -> (created, size); every subject has three recordings.
RECORDINGS = {f"{s['subject_id']}/call-{n}.wav": (NOW - 400 * DAY, 1000 * n) for s in SUBJECTS for n in (1, 2, 3)}
#: chat transcripts: 1y after creation; some due now, some in the forecast window, some later.
TRANSCRIPTS = {
    "acme/chat-old.txt": (NOW - 500 * DAY, 300),       # due since NOW - 135d
    "acme/chat-soon.txt": (NOW - 360 * DAY, 200),      # due in ~5 days: week 0
    "acme/chat-later.txt": (NOW - 100 * DAY, 100),     # due in ~265 days: after 26 weeks
    "globex/chat-1.txt": (NOW - 500 * DAY, 50),        # held
    "misc/notes.md": (NOW - 500 * DAY, 10),            # outside match: never part of the source
}


@dataclass
class Demo:
    policy: Path
    recordings: str
    transcripts: str
    folder: Path

    def remaining(self, store: str) -> list[str]:
        return sorted(memory.get_store(store).items)


def seed(store: str, items: dict[str, tuple[datetime, int]]) -> None:
    for location, (created, size) in items.items():
        memory.seed(store, location, created, size=size)


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    tag = f"{request.node.name}-{id(tmp_path)}"
    recordings, transcripts = f"rec-{tag}", f"chat-{tag}"
    seed(recordings, RECORDINGS)
    seed(transcripts, TRANSCRIPTS)
    policy = PolicyBuilder(tmp_path).write(
        categories={"voice_recording": {"retain": "90d", "after": "service_end"},
                    "chat_transcript": {"retain": "1y", "after": "created"}},
        sources=[{"name": "recordings", "backend": "memory", "options": {"store": recordings},
                  "match": "(?P<subject>[^/]+)/call-\\d+\\.wav", "category": "voice_recording"},
                 {"name": "transcripts", "backend": "memory", "options": {"store": transcripts},
                  "match": "(?P<subject>[^/]+)/chat-[a-z0-9]+\\.txt", "category": "chat_transcript"}],
        subjects=SUBJECTS,
        holds=[{"id": "LH-2026-014", "kind": "legal", "scope": {"subject": "globex"}, "reason": "Smith v. Globex"}],
        limits={"max_fraction": 1.0},  # the demo deletes most of a source on purpose
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        # Received 40 days before NOW: overdue by NOW (30-day deadline).
        store.add_request("dana", "dana-co", NOW - 40 * DAY)
    finally:
        store.close()
    yield Demo(policy, recordings, transcripts, tmp_path)
    memory.reset(recordings)
    memory.reset(transcripts)
