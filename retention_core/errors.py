"""The small error hierarchy, every class in this one module; the CLI turns each into one line and
an exit code (``exit_code``)."""

from __future__ import annotations


class RetentionError(Exception):
    """Base of every error the tool reports to a user instead of a traceback."""

    exit_code = 2


class ConfigError(RetentionError):
    """Bad configuration or CLI input: names the file, the key path, expected vs found."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, *, file: str | None = None, prefix: str | None = None) -> ConfigError:
        """The same error, placed inside a file and under a parent key path."""
        key = self.key
        if prefix:
            key = f"{prefix}.{key}" if key else prefix
        return ConfigError(self.detail, file=file or self.file, key=key)


class PluginError(RetentionError):
    """A plugin failed to load or registered something invalid."""


class BackendError(RetentionError):
    """Storage said something the backend could not turn into an outcome."""

    exit_code = 1


class StateStoreError(RetentionError):
    """The state store's database refused or failed a statement (retention_core/statedb.py)."""


class DuplicateKeyError(StateStoreError):
    """A state store row with that key exists already: another process wrote it first."""


class LockedError(RetentionError):
    """Another run holds the state store's lock."""

    exit_code = 4


class ClockError(RetentionError):
    """The system clock is behind the last enforcing run's: refuse rather than guess."""

    exit_code = 3


class CertificateError(RetentionError):
    """The trail cannot support a certificate (broken chain, run not found or not finished)."""

    exit_code = 1


class AuditError(RetentionError):
    """The trail cannot be read or extended as an audit trail: a line that is not one, a
    keyed trail written without its key. Nothing is appended until an operator looks."""


class FenceTimeout(RetentionError):
    """A batch in flight did not finish within the wait: the hold is stored, but that batch may
    still delete records in its scope."""

    exit_code = 1
