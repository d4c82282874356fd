"""Typed reading of a mapping from config, with errors that name the key.

Backends and subject sources use :class:`Options` so their option errors read exactly
like the core's: ``policy.yaml: sources[0].options.root: expected an existing directory,
found '/nope'``. Unknown keys are errors, because a typo must never silently change what
gets deleted.

String values may name environment variables as ``${NAME}`` (a database password kept out of
the YAML, in the environment file cron or systemd reads); ``$${`` stands for a literal ``${``.
An unset variable is an error naming it and the key, never an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
_REQUIRED: Any = object()
# The getters are named str/int/bool; these aliases keep annotations unambiguous in the class.
from typing import TypeAlias  # noqa: E402

_Str: TypeAlias = str
_Int: TypeAlias = int
_Bool: TypeAlias = bool


class Options:
    """A read-once view of an options mapping.

    Call the typed getters for every key you accept, then :meth:`done` to reject the rest.
    Errors carry ``key`` relative to this mapping; the core places them in the file.
    """

    def __init__(self, data: Mapping[str, Any] | None, *, base_dir: Path | None = None,
                 where: _Str = "options") -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping, found {describe(data)}", key=where)
        self._data = dict(data)
        self._seen: set[str] = set()
        self.base_dir = base_dir or Path.cwd()
        self.where = where

    def error(self, key: _Str, message: _Str) -> ConfigError:
        """A ConfigError for *key* of this mapping."""
        return ConfigError(message, key=f"{self.where}.{key}")

    def raw(self, key: _Str, default: Any = _REQUIRED) -> Any:
        """The value of *key* as given, with ``${NAME}`` replaced from the environment."""
        self._seen.add(key)
        if key not in self._data or self._data[key] is None:
            if default is _REQUIRED:
                raise self.error(key, "is required")
            return default
        return _expand_all(self._data[key], f"{self.where}.{key}")

    def __contains__(self, key: _Str) -> _Bool:
        return key in self._data

    def str(self, key: _Str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, found {describe(value)}")
        return value

    def int(self, key: _Str, default: Any = _REQUIRED, *, minimum: _Int | None = None,
            maximum: _Int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, found {describe(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, found {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"expected an integer <= {maximum}, found {value}")
        return value

    def bool(self, key: _Str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, found {describe(value)}")
        return value

    def choice(self, key: _Str, choices: tuple[_Str, ...], default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, found {describe(value)}")
        return value

    def mapping(self, key: _Str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, found {describe(value)}")
        return value

    def path(self, key: _Str, default: Any = _REQUIRED) -> Any:
        """A filesystem path; relative paths are relative to the config file's folder."""
        value = self.str(key, default)
        if value is default and default is not _REQUIRED:
            return value
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def done(self) -> None:
        """Reject every key no getter asked for."""
        unknown = sorted(set(self._data) - self._seen, key=str)
        if unknown:
            raise self.error(key_label(unknown[0]), "unknown key"
                             + (f" (accepted: {', '.join(sorted(self._seen))})" if self._seen else ""))


def describe(value: Any) -> str:
    """How a value found in config reads in a one-line error: ``nothing``, ``true``, ``42``,
    ``'text'`` (shortened), or its type's name — never a whole mapping or a line break."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) < 60 else repr(value[:57] + "...")
    return type(value).__name__ if not isinstance(value, Mapping) else "a mapping"


_PLAIN_KEY = re.compile(r"\A[A-Za-z0-9_.:-]{1,80}\Z")


def key_label(name: Any) -> str:
    """A key name as it may appear in a one-line error: quoted unless plain (a key holding a
    line break must not split the error or forge a log line)."""
    text = str(name)
    return text if _PLAIN_KEY.match(text) else repr(text)


_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def expand_env(value: _Str, *, key: _Str, environ: Mapping[_Str, _Str] | None = None) -> _Str:
    """*value* with every ``${NAME}`` replaced by that environment variable (``$${`` is a
    literal ``${``); an unset or malformed variable is a :class:`ConfigError` at *key*."""
    if "${" not in value:
        return value
    env = os.environ if environ is None else environ

    def replace(found: re.Match[_Str]) -> _Str:
        if found.group(0) == "$${":
            return "${"
        name = found.group(1)
        if not _NAME.match(name):
            raise ConfigError(f"expected ${{NAME}} with a variable name of letters, digits and _, found "
                              f"{describe('${' + name + '}')}", key=key)
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set (the value uses ${{{name}}}); set it "
                              "where the run gets its environment (cron: the crontab or an env file; systemd: "
                              "EnvironmentFile=)", key=key)
        return env[name]

    return _VARIABLE.sub(replace, value)


def _expand_all(value: Any, key: _Str) -> Any:
    """:func:`expand_env` over a value read from config: strings, and those inside mappings and lists."""
    if isinstance(value, str):
        return expand_env(value, key=key)
    if isinstance(value, Mapping):
        return {k: _expand_all(v, f"{key}.{key_label(k)}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_all(v, f"{key}[{n}]") for n, v in enumerate(value)]
    return value
