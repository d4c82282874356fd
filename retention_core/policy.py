"""Load and validate the policy YAML into an immutable :class:`Policy`.

Every error is one line naming the file, the key path (``sources[1].match``), what was
expected and what was found. Unknown keys are errors: a typo must never silently disable
a hold or change what gets deleted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .durations import parse_duration
from .errors import ConfigError
from .model import Action, Category, Hold, HoldScope, Limits, Source
from .options import describe, expand_env, key_label
from .patterns import LinearPattern, PatternError

if TYPE_CHECKING:
    from .registry import BackendRegistry

HOLD_KINDS = ("legal", "dispute")
CLOCKS = ("created", "service_end")
ACTIONS = (Action.DELETE.value, Action.ANONYMIZE.value)
_NAME = re.compile(r"\A[A-Za-z0-9_.:-]+\Z")

#: Limits of a policy without a ``limits:`` key: a forgotten key must not mean "no limit" (a test run
#: once deleted 70% of a source with exit 0). ``limits: {}`` given on purpose still means no limit.
DEFAULT_LIMITS = Limits(max_fraction=0.5)


@dataclass(frozen=True)
class ExecutorConfig:
    """``executor:``: where a run's per-record work executes (docs/scaling.md). ``local``: this
    process (the default); ``dask``: a Dask distributed cluster at ``scheduler`` (an address),
    or without one a LocalCluster of ``workers`` processes on this machine."""

    kind: str = "local"
    scheduler: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class Policy:
    """A validated policy file. Paths are absolute (relative ones resolved from the file)."""

    path: Path
    state: str
    audit: Path
    subjects: Mapping[str, Any] | None
    categories: Mapping[str, Category]
    sources: tuple[Source, ...]
    holds: tuple[Hold, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: ``hold_sources:`` entries, each with its ``name`` (default: its ``source``) and ``source``.
    hold_sources: tuple[Mapping[str, Any], ...] = ()
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def limits_for(self, source: Source) -> Limits:
        """*source*'s safety limits: its own ``limits:`` key by key over the policy's."""
        own = source.limits
        if own is None:
            return self.limits
        return Limits(own.max_deletions if own.max_deletions is not None else self.limits.max_deletions,
                      own.max_fraction if own.max_fraction is not None else self.limits.max_fraction)

    def default_fraction(self, source: Source) -> bool:
        """Whether *source*'s max_fraction is DEFAULT_LIMITS' (the policy has no ``limits:``, the source sets none)."""
        return self.limits is DEFAULT_LIMITS and (source.limits is None or source.limits.max_fraction is None)

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"no source named {name!r} (sources: {', '.join(s.name for s in self.sources)})",
                          file=str(self.path), key="--source")


#: Deeper than any policy, declarations file or plugin option needs. PyYAML composes nodes
#: recursively, so without a bound a file nested a few thousand levels deep ends in a
#: RecursionError (a traceback) instead of an error line naming the file.
MAX_YAML_DEPTH = 100

#: Hold ids (policy file and ``holds place``): printable, one token, bounded. An id is echoed
#: in ``holds list``, the run summary and the audit trail, where a newline would forge lines.
HOLD_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _TooDeep(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        super().__init__(f"nested deeper than {MAX_YAML_DEPTH} levels")
        self.line = line


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader for files that decide what is kept: duplicate keys and absurd nesting are errors.

    PyYAML keeps the last of duplicate keys, so a second ``claim: none`` or ``retain: 1d`` would
    silently win; a file must mean what it says. Every YAML file the tool reads as configuration
    (the policy, cookie declarations) loads through :func:`load_yaml` with this class or a subclass.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, file: str, loader: type[StrictLoader] = StrictLoader) -> Any:
    """Parse *text* (read from *file*) with *loader*; every problem is a one-line ConfigError."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"duplicate key {key_label(exc.key)}: a key written twice would silently keep only the "
                          "last value", file=file, key=f"line {exc.line}") from None
    except _TooDeep as exc:
        raise ConfigError(f"invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels", file=file,
                          key=f"line {exc.line}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", file=file, key=where) from None


def check_hold_id(value: Any, key: str, *, file: str | None = None) -> str:
    """*value* as a hold id, or a ConfigError saying what an id may contain."""
    if not isinstance(value, str) or not HOLD_ID.match(value):
        raise ConfigError(f"expected a hold id of 1 to 64 letters, digits, '.', '_', ':' or '-' starting with a "
                          f"letter or digit, found {describe(value)}", file=file, key=key)
    return value


def check_actions(policy: Policy, backends: BackendRegistry) -> None:
    """Refuse ``action: anonymize`` on a source whose backend cannot anonymize.

    Otherwise ``validate`` passes and every due record of the source then fails at run time.
    Only a source's fixed ``category`` is checked: one taken from a ``(?P<category>...)`` group
    is known per record, and the run reports such a record as failed.
    """
    for source in policy.sources:
        category = policy.categories.get(source.category or "")
        if category is None or category.action is not Action.ANONYMIZE:
            continue
        key = f"sources[{source.index}]"
        try:
            backend = backends.get(source.backend, key=f"{key}.backend")
        except ConfigError as exc:
            raise exc.located(file=str(policy.path)) from None
        if not backend.can_anonymize:
            raise ConfigError(f"category {category.name!r} has action: anonymize, but backend {source.backend!r} "
                              f"of source {source.name!r} cannot anonymize (use action: delete, or a backend "
                              "that can)", file=str(policy.path), key=f"{key}.category")


class _Reader:
    """Walks the YAML tree, keeping the key path for error messages."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=key or None)

    def mapping(self, value: Any, key: str, *, required: tuple[str, ...] = (),
                optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, found {describe(value)}")
        for name in value:
            if name not in required and name not in optional:
                accepted = ", ".join((*required, *optional))
                raise self.fail(_join(key, key_label(name)), f"unknown key (accepted: {accepted})")
        for name in required:
            if name not in value or value[name] is None:
                raise self.fail(_join(key, name), "is required")
        return value

    def string(self, value: Any, key: str, *, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, found {describe(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"expected letters, digits, '_', '.', ':' or '-', found {value!r}")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, found {describe(value)}")
        return str(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def load_policy(path: str | Path) -> Policy:
    """Read and validate *path*; raise :class:`ConfigError` on the first problem."""
    path = Path(path).expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", file=str(path)) from None
    data = load_yaml(text, str(path))
    return parse_policy(data, path)


def parse_policy(data: Any, path: Path) -> Policy:
    """Validate an already-parsed YAML document (exposed for tests and fuzzing)."""
    r = _Reader(path)
    top = r.mapping(data, "", required=("version", "categories", "sources"),
                    optional=("state", "audit", "subjects", "holds", "hold_sources", "limits", "executor"))
    if top["version"] != 1 or isinstance(top["version"], bool):
        raise r.fail("version", f"expected 1, found {describe(top['version'])}")
    base = path.parent

    state = top.get("state") or "sqlite:///.retention/state.db"
    try:  # ${NAME} from the environment, as in backend options: the password stays out of the YAML
        state = _sqlite_relative(expand_env(r.string(state, "state"), key="state"), base)
    except ConfigError as exc:
        raise exc.located(file=r.file) from None
    if _in_memory(state):
        raise r.fail("state", f"{state!r} is an in-memory database: holds, erasure requests and the run lock "
                              "would be forgotten when each command ends; give a file or a server")
    audit = Path(r.string(top.get("audit") or ".retention/audit.jsonl", "audit")).expanduser()
    audit = audit if audit.is_absolute() else base / audit

    subjects = None
    if top.get("subjects") is not None:
        block = top["subjects"]
        if not isinstance(block, Mapping):
            raise r.fail("subjects", f"expected a mapping, found {describe(block)}")
        if "source" not in block:
            raise r.fail("subjects.source", "is required")
        r.string(block["source"], "subjects.source")
        subjects = dict(block)

    categories = _categories(r, top["categories"])
    sources = _sources(r, top["sources"], categories)
    holds = _holds(r, top.get("holds"), categories, sources)
    limits = _limits(r, top["limits"]) if "limits" in top else DEFAULT_LIMITS
    return Policy(path=path, state=state, audit=audit, subjects=subjects, categories=categories,
                  sources=sources, holds=holds, limits=limits, hold_sources=_hold_sources(r, top.get("hold_sources")),
                  executor=_executor(r, top.get("executor")))


#: What ``executor: {kind: …}`` accepts (retention_core.executors.KINDS).
EXECUTOR_KINDS = ("local", "dask")
#: The Dask comm schemes a scheduler address may name (``tcp`` when it names none).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_SCHEDULER_ADDRESS = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                                r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")


def scheduler_address_problem(address: str) -> str | None:
    """Why *address* is not a Dask scheduler address (``tcp://host:8786``), or None: checked
    before a run starts, so a typo is a one-line configuration error, not a traceback."""
    found = _SCHEDULER_ADDRESS.fullmatch(address)
    if found is None:
        return f"expected a Dask scheduler address such as tcp://host:8786, found {describe(address)}"
    scheme = (found["scheme"] or "tcp").lower()
    if scheme not in SCHEDULER_SCHEMES:
        return f"unknown scheme {scheme!r} in {address!r}: expected one of {', '.join(SCHEDULER_SCHEMES)}"
    if found["port"] is not None and not 0 < int(found["port"]) < 65536:
        return f"port {found['port']} in {address!r} is not 1-65535"
    return None


def _executor(r: _Reader, value: Any) -> ExecutorConfig:
    """``executor: {kind: local|dask, scheduler: ADDRESS, workers: N}``."""
    if value is None:
        return ExecutorConfig()
    body = r.mapping(value, "executor", required=("kind",), optional=("scheduler", "workers"))
    kind = r.string(body["kind"], "executor.kind")
    if kind not in EXECUTOR_KINDS:
        raise r.fail("executor.kind", f"expected one of {', '.join(EXECUTOR_KINDS)}, found {describe(kind)}")
    scheduler = body.get("scheduler")
    if scheduler is not None:
        try:
            scheduler = expand_env(r.string(scheduler, "executor.scheduler"), key="executor.scheduler")
        except ConfigError as exc:
            raise exc.located(file=r.file) from None
        problem = scheduler_address_problem(scheduler)
        if problem is not None:
            raise r.fail("executor.scheduler", problem)
    workers = body.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024):
        raise r.fail("executor.workers", f"expected a whole number from 1 to 1024, found {describe(workers)}")
    if kind == "local" and (scheduler is not None or workers is not None):
        raise r.fail("executor", "scheduler: and workers: need kind: dask")
    return ExecutorConfig(kind, scheduler, workers)


def _hold_sources(r: _Reader, value: Any) -> tuple[Mapping[str, Any], ...]:
    """``hold_sources:``: ``{source: NAME, name: …, options…}`` each; the rest are the source's options.

    The name attributes the holds (``holds list``, reports, the trail) and keys what the state
    store remembers of them, so it must be unique and cannot be an origin the core uses itself.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail("hold_sources", f"expected a list of hold sources, found {describe(value)}")
    out: list[dict[str, Any]] = []
    for i, body in enumerate(value):
        key = f"hold_sources[{i}]"
        if not isinstance(body, Mapping):
            raise r.fail(key, f"expected a mapping, found {describe(body)}")
        if body.get("source") is None:
            raise r.fail(f"{key}.source", "is required")
        source = r.string(body["source"], f"{key}.source")
        name = r.string(body.get("name", source), f"{key}.name", pattern=_NAME)
        if name in ("state", "config"):
            raise r.fail(f"{key}.name", f"{name!r} names the holds of the {name} itself: choose another name")
        if any(entry["name"] == name for entry in out):
            raise r.fail(f"{key}.name", f"duplicate hold source name {name!r} (give each a name:)")
        out.append({**body, "name": name, "source": source})
    return tuple(out)


def _in_memory(url: str) -> bool:
    """Whether a state URL names a SQLite database that lives only as long as one process."""
    if not url.startswith("sqlite"):
        return False
    rest = url.split("://", 1)[-1].lstrip("/")
    path, _, query = rest.partition("?")
    return path in ("", ":memory:") or path.startswith(":memory:") or "mode=memory" in query \
        or path.startswith("file::memory:")


def _sqlite_relative(url: str, base: Path) -> str:
    """Make ``sqlite:///relative.db`` relative to the config file, not the working dir."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        rest = url[len(prefix):]
        if rest and not rest.startswith(":memory:"):
            return prefix + str(base / rest)
    return url


def _categories(r: _Reader, value: Any) -> dict[str, Category]:
    if not isinstance(value, Mapping) or not value:
        raise r.fail("categories", f"expected a non-empty mapping of category names, found {describe(value)}")
    out = {}
    for name, body in value.items():
        key = f"categories.{key_label(name)}"
        r.string(name, key, pattern=_NAME)
        body = r.mapping(body, key, required=("retain",), optional=("after", "action"))
        try:
            retain = parse_duration(body["retain"])
        except ValueError as exc:
            raise r.fail(f"{key}.retain", str(exc)) from None
        after = r.choice(body.get("after", "created"), f"{key}.after", CLOCKS)
        action = Action(r.choice(body.get("action", "delete"), f"{key}.action", ACTIONS))
        out[name] = Category(name=name, retain=retain, after=after, action=action)
    return out


def _sources(r: _Reader, value: Any, categories: Mapping[str, Category]) -> tuple[Source, ...]:
    if not isinstance(value, list) or not value:
        raise r.fail("sources", f"expected a non-empty list of sources, found {describe(value)}")
    out: list[Source] = []
    for i, body in enumerate(value):
        key = f"sources[{i}]"
        body = r.mapping(body, key, required=("name", "backend"),
                         optional=("options", "match", "category", "overlaps", "limits"))
        name = r.string(body["name"], f"{key}.name", pattern=_NAME)
        if any(s.name == name for s in out):
            raise r.fail(f"{key}.name", f"duplicate source name {name!r}")
        backend = r.string(body["backend"], f"{key}.backend")
        options = body.get("options") or {}
        if not isinstance(options, Mapping):
            raise r.fail(f"{key}.options", f"expected a mapping, found {describe(options)}")
        match = None
        if body.get("match") is not None:
            text = r.string(body["match"], f"{key}.match")
            try:
                match = LinearPattern(text)
            except PatternError as exc:
                raise r.fail(f"{key}.match", f"expected a regular expression, found {text!r} ({exc})") from None
            extra = set(match.groupindex) - {"subject", "category"}
            if extra:
                raise r.fail(f"{key}.match", f"unknown named group {sorted(extra)[0]!r} "
                                             "(accepted: subject, category)")
        category = body.get("category")
        if category is not None:
            r.string(category, f"{key}.category")
            if category not in categories:
                raise r.fail(f"{key}.category", f"unknown category {category!r} "
                                                f"(categories: {', '.join(categories)})")
        elif match is None or "category" not in match.groupindex:
            raise r.fail(f"{key}.category", "is required (or a (?P<category>...) group in match)")
        overlaps = body.get("overlaps") or []
        if not isinstance(overlaps, list):
            raise r.fail(f"{key}.overlaps", f"expected a list of source names, found {describe(overlaps)}")
        out.append(Source(name=name, backend=backend, options=dict(options), match=match,
                          category=category, index=i,
                          overlaps=tuple(r.string(o, f"{key}.overlaps[{n}]") for n, o in enumerate(overlaps)),
                          limits=_limits(r, body["limits"], f"{key}.limits") if "limits" in body else None))
    names = {s.name for s in out}
    for source in out:
        for n, other in enumerate(source.overlaps):
            if other not in names or other == source.name:
                raise r.fail(f"sources[{source.index}].overlaps[{n}]",
                             f"expected the name of another source, found {other!r}")
    return tuple(out)


def parse_scope(r: _Reader, value: Any, key: str) -> HoldScope:
    scope = r.mapping(value, key, optional=("subject", "category", "source"))
    given = {k: r.string(v, f"{key}.{k}") for k, v in scope.items() if v is not None}
    if not given:
        raise r.fail(key, "a hold needs at least one of subject, category, source: an empty scope "
                          "would hold everything by accident")
    return HoldScope(**given)


def _holds(r: _Reader, value: Any, categories: Mapping[str, Category],
           sources: tuple[Source, ...]) -> tuple[Hold, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail("holds", f"expected a list of holds, found {describe(value)}")
    out: list[Hold] = []
    for i, body in enumerate(value):
        key = f"holds[{i}]"
        body = r.mapping(body, key, required=("id", "kind", "scope", "reason"))
        hold_id = check_hold_id(body["id"], f"{key}.id", file=r.file)
        if any(h.id == hold_id for h in out):
            raise r.fail(f"{key}.id", f"duplicate hold id {hold_id!r}")
        kind = r.choice(body["kind"], f"{key}.kind", HOLD_KINDS)
        scope = parse_scope(r, body["scope"], f"{key}.scope")
        if scope.category is not None and scope.category not in categories:
            raise r.fail(f"{key}.scope.category", f"unknown category {scope.category!r}")
        if scope.source is not None and scope.source not in {s.name for s in sources}:
            raise r.fail(f"{key}.scope.source", f"unknown source {scope.source!r}")
        out.append(Hold(id=hold_id, kind=kind, scope=scope, reason=r.string(body["reason"], f"{key}.reason"),
                        placed_by="config", origin="config"))
    return tuple(out)


def _limits(r: _Reader, value: Any, key: str = "limits") -> Limits:
    if value is None:
        return Limits()
    body = r.mapping(value, key, optional=("max_deletions", "max_fraction"))
    max_deletions = body.get("max_deletions")
    if max_deletions is not None and (isinstance(max_deletions, bool) or not isinstance(max_deletions, int)
                                      or max_deletions < 0):
        raise r.fail(f"{key}.max_deletions", f"expected a whole number >= 0, found {describe(max_deletions)}")
    max_fraction = body.get("max_fraction")
    if max_fraction is not None and (isinstance(max_fraction, bool) or not isinstance(max_fraction, (int, float))
                                     or not 0 <= max_fraction <= 1):
        raise r.fail(f"{key}.max_fraction", f"expected a number from 0 to 1, found {describe(max_fraction)}")
    return Limits(max_deletions=max_deletions,
                  max_fraction=float(max_fraction) if max_fraction is not None else None)
