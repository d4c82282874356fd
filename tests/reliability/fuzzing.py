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

#: name → (what stderr shows, where the defect is). Reported to the lead; see docs/reliability.md.
KNOWN_DEFECTS = {
    "huge-duration": (re.compile(r"internal error: (OverflowError|ValueError: year -?\d+ is out of range)"),
                      "retention_core/durations.py: a huge count (99999999999999d, P9999999999Y) overflows "
                      "timedelta/datetime; parse_duration and the policy loader raise or pass it on instead of a "
                      "ConfigError, and `plan --within` fails in Duration.after"),
    "subjects-not-utf8": (re.compile(r"internal error: UnicodeDecodeError"),
                          "retention_core/subjects.py csv_subjects: a subjects CSV that is not UTF-8 raises "
                          "UnicodeDecodeError instead of a ConfigError naming the file"),
    "click-usage-block": (re.compile(r"^Usage: .*\nTry '.*--help' for help\.\n\nError: ", re.S),
                          "retention_core/cli.py (and the cookies group): click's usage errors (a bad --kind, a "
                          "missing option) print a four-line usage block, not the one-line error cron expects; "
                          "exit 2 is right"),
    "declaration-basis-type": (re.compile(r"internal error: TypeError: unhashable type"),
                               "plugins/retention_cookies/declarations.py _service: a service's `basis` that is a "
                               "mapping or list raises TypeError (unhashable) instead of a ConfigError"),
    "raw-key-in-error": (re.compile(r"\Aretention: error: (?!internal error)[^\n]*"
                                    r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]"),
                         "retention_core/policy.py _Reader: a key or category name is echoed raw into the error's "
                         "key path (`categories.<name>`, `<key>: unknown key`), so a name holding a CR/LF makes a "
                         "multi-line error (and lets a config forge log lines); quote it as the other messages do"),
    "har-shape": (re.compile(r"internal error: (AttributeError|TypeError|KeyError|IndexError): .*har|"
                             r"internal error: (AttributeError: '\w+' object has no attribute|TypeError: '\w+' object "
                             r"is not (iterable|subscriptable))"),
                  "plugins/retention_cookies/har.py read_har: a HAR whose parts have the wrong JSON type "
                  "(log, request or a header not an object) raises AttributeError instead of a ConfigError"),
}


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
