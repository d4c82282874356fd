"""What the tool says on stderr: quiet plain lines under cron, JSON lines for log shippers,
a live progress line for a person at a terminal.

Cron mails whatever a job prints, so by default only warnings and errors reach stderr (the
run's summary goes to stdout). ``--log-format json`` writes one JSON object per line —
every event, errors included — so a log pipeline never has to parse prose.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any

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

    Text shows warnings and errors (``-v`` adds info, ``-vv`` debug); JSON shows info and up,
    because a log pipeline filters better than a person does.
    """
    global _format
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, found {fmt!r}")
    _format = fmt
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    base = logging.INFO if fmt == "json" else logging.WARNING
    level = base if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("retention")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(level, base))
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
    """A single self-overwriting line: sources done, records scanned and the rate.

    The total number of records is unknown until a scan ends (scans stream), so the bar
    fills per source, and the counter and rate show the work inside the current one.
    """

    WIDTH = 24

    def __init__(self, sources: list[str], stream: IO[str] | None = None) -> None:
        self.sources = sources
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.total = 0
        self._seen: dict[str, int] = {}
        self._shown = False

    def __call__(self, source: str, scanned: int) -> None:
        self._seen[source] = scanned
        self.total = sum(self._seen.values())
        self.stream.write("\r" + self.line(source) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def line(self, source: str) -> str:
        done = max(0, len(self._seen) - 1)
        position = self.sources.index(source) + 1 if source in self.sources else len(self._seen)
        count = max(len(self.sources), 1)
        filled = int(self.WIDTH * done / count)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        rate = self.total / max(time.monotonic() - self.start, 1e-6)
        return (f"[{bar}] source {position}/{count} {source}: {self._seen[source]:,} records "
                f"· {self.total:,} in all · {rate:,.0f}/s")

    def finish(self) -> None:
        """Replace the live line by a final one, so the terminal keeps what happened."""
        if self._shown:
            took = time.monotonic() - self.start
            self.stream.write(f"\r[{'#' * self.WIDTH}] scanned {self.total:,} records from {len(self._seen)} "
                              f"source{'s' if len(self._seen) != 1 else ''} in {took:.1f} s "
                              f"({self.total / max(took, 1e-6):,.0f}/s)\x1b[K\n")
            self.stream.flush()


__all__ = ["FORMATS", "JsonFormatter", "ProgressBar", "TextFormatter", "configure", "current_format",
           "error_line", "event", "interactive"]
