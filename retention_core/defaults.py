"""The core's own hook implementations, registered like any plugin (pytest's builtin plugins)."""

from __future__ import annotations

from . import hookimpl
from .registry import BackendRegistry, ReportWriterRegistry, SubjectSourceRegistry
from .subjects import csv_subjects


@hookimpl(trylast=True)
def retention_subject_sources(register: SubjectSourceRegistry) -> None:
    register("csv", csv_subjects)


@hookimpl(trylast=True)
def retention_report_writers(register: ReportWriterRegistry) -> None:
    from .html_report import write_html
    from .report import write_csv, write_json

    register("json", write_json)
    register("csv", write_csv)
    register("html", write_html)
    register("htm", write_html)


@hookimpl(trylast=True)
def retention_register_backends(register: BackendRegistry) -> None:
    """The reference ``memory`` backend, for tests and for trying policies out."""
    from .testing.memory import InMemoryBackend

    register(InMemoryBackend)
