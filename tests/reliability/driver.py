"""Run the real ``retention`` CLI in a subprocess, with the few knobs the reliability tests need.

The tests must kill, pause and race a *real* process, so they start this script instead of
``python -m retention_core``. It changes nothing in the tool's logic; it only

* shrinks backend batches (``RELIABILITY_BATCH_SIZE``) so a small data set spans many
  batches — the fs and s3 batch sizes are otherwise 1000 records;
* SIGKILLs the process just *before* the n-th batch's intent is journalled
  (``RELIABILITY_KILL_BEFORE_INTENT=<n>``): the core's own kill points all sit after a
  journal write, and this one covers the gap between a backend's work and its intent;
* registers a tiny observer plugin that can pause the run at a batch boundary
  (``RELIABILITY_PAUSE_AFTER_BATCH=<n>`` pauses after the n-th batch's outcomes were
  journalled; ``RELIABILITY_PAUSE_BEFORE_DELETE=1`` pauses before the first backend call)
  until the test creates the file named by ``RELIABILITY_RESUME``. While paused the test
  places holds, swaps directories for symlinks or starts rival runs.

Usage: ``python driver.py <retention arguments>`` (exactly like the ``retention`` command).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PAUSE_TIMEOUT = 120.0


def _shrink_batches(size: int) -> None:
    import retention_fs.backend as fs_backend
    import retention_s3.backend as s3_backend

    fs_backend.FilesystemBackend.batch_size = size
    s3_backend.S3_MAX_KEYS = size  # S3Backend.batch_size = S3_MAX_KEYS × concurrency


class Pauser:
    """An observer plugin: signals a pause by writing a file, then waits for the resume file."""

    def __init__(self, after_batch: int | None, before_delete: bool, signal_file: Path, resume_file: Path) -> None:
        self.after_batch = after_batch
        self.before_delete = before_delete
        self.signal_file = signal_file
        self.resume_file = resume_file
        self.batches = 0
        self.deleted = 0

    def _pause(self, info: dict[str, Any]) -> None:
        self.signal_file.write_text(json.dumps(info))
        deadline = time.monotonic() + PAUSE_TIMEOUT
        while not self.resume_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("driver: nobody resumed the paused run")
            time.sleep(0.01)

    def retention_before_delete(self, batch: list[Any], context: Any) -> None:
        if self.before_delete and self.batches == 0:
            self._pause({"pid": os.getpid(), "batch": 0, "records": [r.location for r in batch]})

    def retention_after_delete(self, outcomes: list[Any], context: Any) -> None:
        self.batches += 1
        self.deleted += sum(1 for o in outcomes if o.status.value == "deleted")
        if self.after_batch is not None and self.batches == self.after_batch:
            self._pause({"pid": os.getpid(), "batch": self.batches, "deleted": self.deleted})


def _kill_before_intent(nth: int) -> None:
    import signal

    from retention_core.journal import Journal

    seen = [0]

    def killing(original: Any) -> Any:
        def intent(self: Any, *args: Any, **options: Any) -> Any:
            seen[0] += 1
            if seen[0] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args, **options)
        return intent

    # A streamed push-down batch (its rows in an evidence file) journals its intent with
    # streamed_intent: killed before it, the rows are in the file and the transaction open.
    Journal.intent = killing(Journal.intent)  # type: ignore[method-assign]
    Journal.streamed_intent = killing(Journal.streamed_intent)  # type: ignore[method-assign]


def _pauser() -> Pauser | None:
    after = os.environ.get("RELIABILITY_PAUSE_AFTER_BATCH")
    before = os.environ.get("RELIABILITY_PAUSE_BEFORE_DELETE") == "1"
    if after is None and not before:
        return None
    from retention_core import hookimpl

    plugin = Pauser(int(after) if after else None, before, Path(os.environ["RELIABILITY_SIGNAL"]),
                    Path(os.environ["RELIABILITY_RESUME"]))
    # pluggy needs the markers on the methods it should call.
    for name in ("retention_before_delete", "retention_after_delete"):
        hookimpl(getattr(type(plugin), name))
    return plugin


def main() -> None:
    size = os.environ.get("RELIABILITY_BATCH_SIZE")
    if size:
        _shrink_batches(int(size))
    kill = os.environ.get("RELIABILITY_KILL_BEFORE_INTENT")
    if kill:
        _kill_before_intent(int(kill))
    plugin = _pauser()
    import retention_core.cli as cli_module

    if plugin is not None:
        from retention_core.plugins import load_plugins

        cli_module.load_plugins = lambda: load_plugins(extra=[plugin])  # type: ignore[assignment]
    sys.argv[0] = "retention"
    cli_module.main()


if __name__ == "__main__":
    main()
