"""SQL: N rows, ``created`` spread over two years, delete those older than 365 days (~half),
with legal holds on 10 of the 1,000 tenants (1% of rows), which every contender keeps.

Peers: one raw ``DELETE … WHERE created < cutoff``, and the nibbling loop people write to
keep transactions short (``DELETE … WHERE id IN (SELECT id … LIMIT 10000)``; on MariaDB,
which has no LIMIT in IN-subqueries, ``DELETE … WHERE created < cutoff LIMIT 10000``).
The evidence floors: the raw DELETE with ``RETURNING id, created``, each row fetched into
Python, written to a file and fsynced before the commit; and on PostgreSQL the streamed floor,
``COPY (DELETE … RETURNING id, created) TO STDOUT`` as bytes into a file, fsynced (issue 16) —
the least a deletion that names every row it deleted must do.
Each sample gets a fresh copy of one generated table (copied untimed, inside the database);
rows left afterwards are counted. No row's age is within two days of the boundary.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..measure import Measured, execute
from ..ours import run_cli, version, write_policy
from ..results import OURS, Goal, WorkloadResult, alternate, require_same

URLS = {
    "postgresql": os.environ.get("RETENTION_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("RETENTION_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
TEMPLATE = "bench_rows_template"
# Age in days of row g: spread over two years by a multiplicative hash, kept off 363..368.
_AGE = "((({g} * 7919) % 730000) / 1000.0)"


def age_days(g: int) -> float:
    a = ((g * 7919) % 730000) / 1000.0
    return a + 5 if 363 <= a < 368 else a


#: Tenants under a legal hold: g % 1000 in 0, 100, … 900, i.e. 1% of rows (bench.peers.SQL_HELD).
HELD = tuple(f"t{i}" for i in range(0, 1000, 100))


def kept(n: int) -> int:
    return sum(1 for g in range(1, n + 1) if age_days(g) < 365 or g % 100 == 0)


def _age_sql(g: str) -> str:
    a = _AGE.format(g=g)
    return f"(CASE WHEN {a} >= 363 AND {a} < 368 THEN {a} + 5 ELSE {a} END)"


@dataclass(frozen=True)
class Flavor:
    kind: str

    def create(self, table: str) -> list[str]:
        ts = {"postgresql": "TIMESTAMPTZ", "mariadb": "DATETIME(6)", "sqlite": "DATETIME"}[self.kind]
        return [f"CREATE TABLE {table} (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(32) NOT NULL, "
                f"created {ts} NOT NULL, payload VARCHAR(64))"]

    def fill(self, table: str, n: int) -> list[str]:
        age = _age_sql("g")
        if self.kind == "postgresql":
            return [f"INSERT INTO {table} SELECT g, 't' || (g % 1000), now() - make_interval(secs => {age} * 86400),"
                    f" 'payload' FROM generate_series(1::bigint, {n}::bigint) AS s(g)"]
        if self.kind == "mariadb":
            return [f"INSERT INTO {table} SELECT g, CONCAT('t', g % 1000), UTC_TIMESTAMP(6) - INTERVAL "
                    f"ROUND({age} * 86400) SECOND, 'payload' FROM (SELECT seq AS g FROM seq_1_to_{n}) AS s"]
        return [f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
                f"INSERT INTO {table} SELECT g, 't' || (g % 1000), "
                f"strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || CAST(ROUND({age} * 86400) AS INTEGER) || ' seconds'),"
                f" 'payload' FROM s"]

    def index(self, table: str) -> str:
        return f"CREATE INDEX {table}_created ON {table} (created)"

    def copy(self, source: str, table: str) -> list[str]:
        if self.kind == "postgresql":
            return [f"CREATE TABLE {table} (LIKE {source} INCLUDING ALL)",
                    f"INSERT INTO {table} SELECT * FROM {source}", f"ANALYZE {table}"]
        return [f"CREATE TABLE {table} LIKE {source}", f"INSERT INTO {table} SELECT * FROM {source}",
                f"ANALYZE TABLE {table}"]


def _engine(url: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    return sa.create_engine(url, connect_args={"connect_timeout": 3} if not url.startswith("sqlite") else {})


def _run_sql(url: str, statements: list[str]) -> None:
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _count(url: str, table: str) -> int:
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def reachable(url: str) -> str | None:
    try:
        _count(url, "(SELECT 1 AS x) AS probe")
    except Exception as exc:  # a missing driver counts as a missing service
        return f"{url.split('@')[-1]} unreachable ({type(exc).__name__})"
    return None


def _policy(directory: Path, url: str, table: str, kind: str) -> Path:
    options = {"url": url, "table": table, "key": "id", "subject": "tenant", "created": "created"}
    if kind != "postgresql":
        options["timezone"] = "UTC"  # naive DATETIME columns hold UTC
    path = write_policy(directory, [{"name": "rows", "backend": "sql", "options": options, "category": "row"}],
                        {"row": {"retain": "365d", "after": "created"}})
    import yaml

    policy = yaml.safe_load(path.read_text())
    policy["holds"] = [{"id": f"LH-{t}", "kind": "legal", "scope": {"subject": t}, "reason": "bench: 1% of rows"}
                       for t in HELD]
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _run(kind: str, n: int, rounds: int, workdir: Path) -> WorkloadResult:
    name = f"sql {kind} ({n:,} rows, delete ~half, holds on 1%)"
    flavor = Flavor(kind)
    if kind == "sqlite":
        template_file = workdir / "sql-sqlite" / "template.db"
        template_file.parent.mkdir(parents=True, exist_ok=True)
        template_file.unlink(missing_ok=True)
        base_url = f"sqlite:///{template_file}"
    else:
        base_url = URLS[kind]
        why = reachable(base_url)
        if why:
            return WorkloadResult(name, expected=0, check="", skipped=why)
    res = WorkloadResult(name, expected=kept(n), check="rows left")
    ours = Measured(name, OURS, version(), n, note="push-down, streamed evidence (no --report)")
    single = Measured(name, "one raw DELETE … WHERE created < cutoff", _server_version(base_url), n)
    nibble = "DELETE … WHERE created < cutoff LIMIT 10000 (loop)" if kind == "mariadb" else \
        "DELETE … IN (SELECT … LIMIT 10000) (loop)"
    batched = Measured(name, nibble, single.version, n)
    floor = Measured(name, "evidence floor: one DELETE … RETURNING id, created; rows fsynced to a file",
                     single.version, n)
    res.contenders = [ours, single, floor, batched]
    copy = None
    if kind == "postgresql":
        copy = Measured(name, "streamed floor: COPY (DELETE … RETURNING id, created) TO STDOUT; bytes fsynced "
                              "to a file", single.version, n)
        res.contenders.insert(2, copy)
    res.goals = [Goal(single.contender, 0.5, "ours ≥ 0.5× the single raw DELETE")]
    if kind == "postgresql":
        res.goals.append(Goal(batched.contender, 2.0, "ours ≥ 2× the nibbling loop"))
    if kind != "sqlite":
        _run_sql(base_url, [f"DROP TABLE IF EXISTS {TEMPLATE}"])
    _run_sql(base_url, flavor.create(TEMPLATE) + flavor.fill(TEMPLATE, n) + [flavor.index(TEMPLATE)])
    try:
        for r in range(rounds):
            for who in alternate(res.contenders, r):
                table = f"bench_rows_{r}_{res.contenders.index(who)}"
                if kind == "sqlite":
                    copy = workdir / "sql-sqlite" / f"{table}.db"
                    shutil.copyfile(template_file, copy)
                    url = f"sqlite:///{copy}"
                    _run_sql(url, [f"ALTER TABLE {TEMPLATE} RENAME TO {table}"])
                else:
                    url = base_url
                    _run_sql(url, [f"DROP TABLE IF EXISTS {table}"] + flavor.copy(TEMPLATE, table))
                try:
                    if who is ours:
                        sample, got = run_cli(_policy(workdir / f"sql-{kind}" / f"ours-{r}", url, table, kind),
                                              dry_run=False)
                        if int(got.get("deleted", -1)) != n - res.expected:
                            raise AssertionError(f"retention deleted {got.get('deleted')} of "
                                                 f"{n - res.expected} due rows")
                    else:
                        how = ("sql-single" if who is single else "sql-returning" if who is floor else
                               "sql-copy" if who is copy else "sql-batched")
                        evidence = ([str(workdir / f"sql-{kind}" / f"evidence-{r}-{how}.tsv")]
                                    if who is floor or who is copy else [])
                        sample = execute([sys.executable, "-m", "bench.peers", how, url, table, "365", *evidence])
                    who.samples.append(sample)
                    who.selected.append(_count(url, table))
                finally:
                    if kind == "sqlite":
                        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                    else:
                        _run_sql(url, [f"DROP TABLE IF EXISTS {table}"])
    finally:
        if kind != "sqlite":
            _run_sql(base_url, [f"DROP TABLE IF EXISTS {TEMPLATE}"])
    require_same(res)
    return res


def _server_version(url: str) -> str:
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                return "SQLite " + str(conn.execute(sa.text("SELECT sqlite_version()")).scalar_one())
            raw = str(conn.execute(sa.text("SELECT version()")).scalar_one())
            return raw.split(" on ")[0].split(",")[0]
    finally:
        engine.dispose()


def run_postgresql(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    return _run("postgresql", n, rounds, workdir)


def run_sqlite(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    return _run("sqlite", n, rounds, workdir)


def run_mariadb(n: int, rounds: int, workdir: Path) -> WorkloadResult:
    return _run("mariadb", n, rounds, workdir)
