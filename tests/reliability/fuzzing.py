"""What every fuzzed CLI invocation must satisfy, and the tally the figures are made of.

A *crash* is anything but a clean answer: an exit code outside the allowed set, a Python
traceback, the CLI's "internal error" fallback (an exception nobody turned into a clear
message), or an error that is not exactly one line on stderr.

Crashes whose cause is already known and reported are listed in :data:`KNOWN_DEFECTS`:
each has its own ``xfail(strict=True)`` regression test in test_fuzz.py, so fixing one
makes that test fail until its entry is removed here. Any *other* crash fails the run.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from click.testing import CliRunner

#: name → (what stderr shows, where the defect is). Every defect the suite found so far has
#: been fixed and has its own regression test in test_fuzz.py; a newly found one, if it
#: cannot be fixed at once, is listed here with an ``xfail(strict=True)`` test of its own.
KNOWN_DEFECTS: dict[str, tuple[re.Pattern[str], str]] = {}


@dataclass
class Fuzz:
    """Invokes the CLI in process and classifies every answer."""

    name: str
    allowed: frozenset[int] = frozenset({0, 2})
    examples: int = 0
    crashes: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    runner: CliRunner = field(default_factory=CliRunner)

    def invoke(self, args: list[str], *, env: dict[str, str] | None = None) -> Any:
        from retention_core.cli import cli

        self.examples += 1
        result = self.runner.invoke(cli, args, env=env, catch_exceptions=True)
        problem = self.problem(result.exit_code, result.stdout, result.stderr, result.exception)
        if problem is not None:
            signature = self.signature(result.stderr or "")
            if signature in KNOWN_DEFECTS:
                self.known[signature] += 1
            else:
                self.crashes.append(f"{args!r}: {problem}")
        return result

    def problem(self, code: int, out: str, err: str, exception: BaseException | None = None) -> str | None:
        if exception is not None and not isinstance(exception, SystemExit):
            return f"uncaught {type(exception).__name__}: {exception}"
        if "Traceback (most recent call last)" in out + err:
            return f"traceback (exit {code})"
        if "internal error" in err:
            return f"internal error (exit {code}): {err.strip()[:300]}"
        if code not in self.allowed:
            return f"exit {code}, allowed {sorted(self.allowed)}: {err.strip()[:300]}"
        if code == 2 and len(err.strip().splitlines()) != 1:
            return f"exit 2 with {len(err.strip().splitlines())} lines on stderr: {err.strip()[:300]!r}"
        return None

    @staticmethod
    def signature(err: str) -> str:
        for name, (pattern, _) in KNOWN_DEFECTS.items():
            if pattern.search(err):
                return name
        return "?"

    def record(self, figures: Counter[str]) -> None:
        figures["fuzz_inputs"] += self.examples
        figures[f"fuzz_inputs[{self.name}]"] += self.examples
        figures["fuzz_crashes_new"] += len(self.crashes)
        figures["fuzz_crashes_known"] += sum(self.known.values())
        for signature, n in self.known.items():
            figures[f"fuzz_crashes_known[{signature}]"] += n

    def check(self) -> None:
        assert not self.crashes, f"{len(self.crashes)} crashes, first: {self.crashes[:3]}"
