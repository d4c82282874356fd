"""What the tool says on stderr: quiet plain lines under cron, JSON lines for log shippers,
live progress bars for a person at a terminal.

Cron mails whatever a job prints, so by default only warnings and errors reach stderr (the
run's summary goes to stdout, and ``--quiet`` drops it too). ``--log-format json`` writes one
JSON object per line — warnings and errors, and with ``-v`` every event — so a log pipeline
never has to parse prose.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any, TextIO, cast

import click

FORMATS = ("text", "json")
log = logging.getLogger("retention")

_format = "text"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        body.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``retention: warning: message`` — the same shape as the CLI's error lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"retention: {record.levelname.lower()}: {record.getMessage()}"


def configure(fmt: str = "text", verbosity: int = 0, stream: IO[str] | None = None) -> None:
    """Route every ``retention*`` logger (core and plugins) to *stream* in *fmt*.

    Both formats show warnings and errors; ``-v`` adds info events (run start and end, each
    source), ``-vv`` debug. A nightly job that went well therefore writes nothing to stderr.
    """
    global _format
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, found {fmt!r}")
    _format = fmt
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("retention")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def current_format() -> str:
    return _format


def event(name: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log a named event; its fields become JSON keys (and are dropped from text lines)."""
    log.log(level, message, extra={"event": name, "fields": fields})


def error_line(message: str, exit_code: int) -> str:
    """The one line a failing command prints on stderr, in the current format."""
    if _format == "json":
        return json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                           "level": "error", "logger": "retention", "event": "error", "message": message,
                           "exit_code": exit_code}, ensure_ascii=False)
    return f"retention: error: {message}"


def interactive() -> bool:
    """A person is watching: stdout and stderr are terminals and logs are for people."""
    return _format == "text" and _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """Progress on a terminal, drawn by click's progress bar: the scan, then the deletions.

    A scan streams, so its total is unknown until it ends: the scan bar fills per source and
    its text shows the records listed in the current one and the rate. Deletions have a
    known total per source (what the scan found due), so each source gets its own bar with
    counts, rate and ETA, advanced once per batch. Built only when :func:`interactive`.
    """

    def __init__(self, sources: list[str], stream: IO[str] | None = None) -> None:
        self.sources = sources
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.total = 0
        self._seen: dict[str, int] = {}
        self._current = ""
        self._scan: Any = None
        self._delete: Any = None
        self._deleting = ""
        self._deleted = 0
        self._delete_start = 0.0
        #: When the last callback came: a source's first batch started about then.
        self._last = self.start

    def __call__(self, source: str, scanned: int) -> None:
        """The scan's callback (``RunOptions.progress``): *scanned* records so far in *source*."""
        new = source not in self._seen
        self._seen[source] = scanned
        self._current = source
        self.total = sum(self._seen.values())
        self._last = time.monotonic()
        if self._scan is None:
            self._scan = self._bar(max(len(self.sources), 1), "scanning", self._scan_text, show_eta=False)
        if new and len(self._seen) > 1:
            self._scan.update(1)  # a new source: the previous one is done
        else:
            self._scan.render_progress()  # click's update(0) would draw nothing

    def deleted(self, source: str, count: int, planned: int) -> None:
        """The deletions' callback (``RunOptions.deleting``): one batch of *count* records done
        in *source*, where *planned* were due."""
        if source != self._deleting:
            self._end_scan()
            self._end_delete()
            self._deleting, self._deleted, self._delete_start = source, 0, self._last
            self._delete = self._bar(max(planned, 1), f"deleting {source}", self._delete_text, show_eta=True)
        self._deleted += count
        self._last = time.monotonic()
        if self._delete.length is not None and self._deleted > self._delete.length:
            self._delete.length = self._deleted  # more became due since the scan (set-based batches)
        self._delete.update(count)

    def finish(self) -> None:
        """Close the bars, so the terminal keeps their last state."""
        self._end_scan()
        self._end_delete()

    def _bar(self, length: int, label: str, text: Callable[[Any], str], *, show_eta: bool) -> Any:
        bar = click.progressbar(length=length, label=label, file=cast(TextIO, self.stream), item_show_func=text,
                                show_eta=show_eta, show_percent=True, show_pos=True, width=24)
        bar.__enter__()
        return bar

    def _scan_text(self, _: Any) -> str:
        rate = self.total / max(time.monotonic() - self.start, 1e-6)
        return (f"{self._current}: {self._seen.get(self._current, 0):,} records · {self.total:,} in all "
                f"· {rate:,.0f}/s")

    def _delete_text(self, _: Any) -> str:
        rate = self._deleted / max(time.monotonic() - self._delete_start, 1e-6)
        return f"{self._deleted:,} records · {rate:,.0f}/s"

    def _end_scan(self) -> None:
        if self._scan is not None:
            self._scan.update(self._scan.length - self._scan.pos)
            self._scan.__exit__(None, None, None)
            self._scan = None

    def _end_delete(self) -> None:
        if self._delete is not None:
            self._delete.__exit__(None, None, None)
            self._delete = None


__all__ = ["FORMATS", "JsonFormatter", "ProgressBar", "TextFormatter", "configure", "current_format",
           "error_line", "event", "interactive"]
