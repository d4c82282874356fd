"""One workload's outcome: every contender measured, the goal, and the rendered table rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .measure import Measured

OURS = "retention"


@dataclass(frozen=True)
class Goal:
    """``ours / peer >= ratio`` (peer None: ``ours >= rate`` records/s, or a custom check)."""

    peer: str | None
    ratio: float = 0.0
    text: str = ""


@dataclass
class WorkloadResult:
    name: str
    expected: int  # what every contender must select (or leave), checked after each sample
    check: str  # how ``expected`` was checked, in words, e.g. "files left afterwards"
    contenders: list[Measured] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # workload-specific verdicts (memory)
    skipped: str = ""  # why the whole workload did not run

    @property
    def ours(self) -> Measured | None:
        return next((m for m in self.contenders if m.contender == OURS), None)

    def ratio(self, peer: str) -> float | None:
        ours = self.ours
        other = next((m for m in self.contenders if m.contender == peer), None)
        if ours is None or other is None or not other.rate:
            return None
        return ours.rate / other.rate

    def verdicts(self) -> list[str]:
        out = []
        for goal in self.goals:
            ratio = self.ratio(goal.peer) if goal.peer else None
            met = ratio is not None and ratio >= goal.ratio
            shown = f"{ratio:.2f}×" if ratio is not None else "n/a"
            out.append(f"{goal.text}: {shown} — {'met' if met else 'NOT met'}")
        out += [f"{k}: {v}" for k, v in self.extra.items()]
        return out


HEADER = ("workload", "contender", "version", "records", "records/s (median)", "ours/peer", "wall s (median)",
          "CPU s (median)", "peak RSS MB", "selection check")


def rows(results: Sequence[WorkloadResult]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for res in results:
        if res.skipped:
            out.append((res.name, "—", "—", "—", "—", "—", "—", "—", "—",
                        f"skipped: {' '.join(res.skipped.split())[:300]}"))
            continue
        for m in res.contenders:
            if m.failures and not m.samples:
                label = "not run" if m.failures[0].startswith("not installed") else \
                    f"FAILED ({len(m.failures)}×)"
                out.append((res.name, m.contender, m.version, f"{m.records:,}", "—", "—", "—", "—", "—",
                            f"{label}: {m.failures[0]}"))
                continue
            ratio = "" if m.contender == OURS else _fmt_ratio(res.ratio(m.contender))
            expected = f" (expected {res.expected:,})" if res.expected >= 0 else ""
            check = f"{res.check}: {'/'.join(f'{s:,}' for s in sorted(set(m.selected)))}{expected}"
            out.append((res.name, m.contender + (f" ({m.note})" if m.note else ""), m.version, f"{m.records:,}",
                        f"{m.rate:,.0f}", ratio, f"{m.median_wall:.3f}", f"{m.median_cpu:.2f}", f"{m.peak_rss_mb:.0f}",
                        check))
    return out


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}×"


def markdown(results: Sequence[WorkloadResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows(results)]
    verdicts = [f"- **{res.name}** — {v}" for res in results if not res.skipped for v in res.verdicts()]
    return "\n".join(lines) + ("\n\nGoals:\n\n" + "\n".join(verdicts) if verdicts else "") + "\n"


def alternate(contenders: list[Measured], round_no: int) -> list[Measured]:
    """Alternate who goes first, so no one always gets the coldest (or warmest) cache."""
    k = round_no % len(contenders)
    return contenders[k:] + contenders[:k]


def require_same(res: WorkloadResult) -> None:
    """Every contender (ours always; a peer unless it failed) must have selected what was expected."""
    for m in res.contenders:
        if m.failures and m.contender != OURS:
            continue  # a peer that failed is shown as failed, with what it left
        wrong = [s for s in m.selected if s != res.expected]
        if wrong:
            raise AssertionError(f"{res.name}: {m.contender} {res.check} {wrong[0]}, expected {res.expected}")
