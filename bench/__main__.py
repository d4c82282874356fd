"""``python -m bench --suite all [--n N] [--rounds R] [--write docs/performance.md]``."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .ours import compile_bytecode
from .results import WorkloadResult, markdown
from .workloads import engine, fs, memory, s3, sql

Runner = Callable[[int, int, Path], WorkloadResult]

#: name -> (default N, runner). Order is the table's order.
WORKLOADS: dict[str, tuple[int, Runner]] = {
    "fs-dry": (200_000, fs.run_dry),
    "fs-enforce": (200_000, fs.run_enforce),
    "s3-dry": (50_000, s3.run_dry),
    "s3-enforce": (50_000, s3.run_enforce),
    # 10,000: moto deep-copies every version of the bucket for each ListObjectVersions request
    # (about 20 s per request at 50,000 versions here), so 50,000 would take most of an hour.
    "s3-enforce-versioned": (10_000, s3.run_enforce_versioned),
    "sql-postgresql": (1_000_000, sql.run_postgresql),
    "sql-sqlite": (1_000_000, sql.run_sqlite),
    "sql-mariadb": (1_000_000, sql.run_mariadb),
    "engine": (1_000_000, engine.run),
    "memory": (1_000_000, memory.run),
}
SUITES = {"all": list(WORKLOADS), "fs": ["fs-dry", "fs-enforce"],
          "s3": ["s3-dry", "s3-enforce", "s3-enforce-versioned"],
          "sql": ["sql-postgresql", "sql-sqlite", "sql-mariadb"], "engine": ["engine"], "memory": ["memory"]}

START, END = "<!-- bench:table:start -->", "<!-- bench:table:end -->"


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--suite", default="all", help="comma-separated: " + ", ".join([*SUITES, *WORKLOADS]))
    ap.add_argument("--n", type=int, help="records per workload (default: each workload's full size)")
    ap.add_argument("--rounds", type=int, default=3, help="samples per contender (median is reported)")
    ap.add_argument("--write", metavar="PATH", help="replace the table in this markdown file (between markers)")
    ap.add_argument("--workdir", metavar="DIR", help="where data is generated (default: a temporary directory)")
    ap.add_argument("--keep-going", action="store_true", help="report a failed workload and go on")
    ap.add_argument("--setup", metavar="VENV", nargs="?", const=str(DEFAULT_VENV),
                    help=f"create VENV (default {DEFAULT_VENV.relative_to(REPO)}) with retention and every peer "
                         "from PyPI, then exit; run the bench with VENV/bin/python -m bench")
    return ap.parse_args(argv)


REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / "bench" / ".venv"


def setup(venv: Path) -> int:
    """The bench's own environment: retention (editable, with extras) plus the peers."""
    import subprocess
    import venv as venv_module

    venv_module.EnvBuilder(with_pip=True, clear=False).create(venv)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[s3,postgres,mysql]",
                    "-r", str(REPO / "bench" / "requirements.txt")], check=True)
    print(f"ready: {python} -m bench --suite all")
    return 0


def selected(spec: str) -> list[str]:
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if part in SUITES:
            names += SUITES[part]
        elif part in WORKLOADS:
            names.append(part)
        else:
            raise SystemExit(f"python -m bench: unknown suite or workload {part!r} "
                             f"(expected one of {', '.join([*SUITES, *WORKLOADS])})")
    return list(dict.fromkeys(names))


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"load average at the end {load}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.setup:
        return setup(Path(args.setup))
    names = selected(args.suite)
    compile_bytecode()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="retention-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[WorkloadResult] = []
    started = time.time()
    failed = False
    try:
        for name in names:
            default_n, runner = WORKLOADS[name]
            n = args.n or default_n
            print(f"[bench] {name}: n={n:,}, rounds={args.rounds} …", file=sys.stderr, flush=True)
            try:
                results.append(runner(n, args.rounds, workdir))
            except Exception as exc:
                if not args.keep_going:
                    raise
                failed = True
                traceback.print_exc()
                results.append(WorkloadResult(name, expected=0, check="", skipped=f"FAILED: {exc}"))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    table = markdown(results)
    body = (f"Command: `{command}` — {machine()}; finished in {time.time() - started:.0f} s.\n\n{table}")
    print(body)
    if args.write:
        write(Path(args.write), body, args.suite)
    return 1 if failed else 0


def write(path: Path, body: str, suite: str) -> None:
    """Replace this suite's block (between its markers), keeping everything else in the file."""
    start, end = f"{START[:-4]} {suite} -->", f"{END[:-4]} {suite} -->"
    block = f"{start}\n{body}{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
