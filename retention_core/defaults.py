"""The core's own hook implementations, registered like any plugin (pytest's builtin plugins)."""

from __future__ import annotations

from . import hookimpl
from .registry import ReportWriterRegistry, SubjectSourceRegistry
from .subjects import csv_subjects


@hookimpl(trylast=True)
def retention_subject_sources(register: SubjectSourceRegistry) -> None:
    register("csv", csv_subjects)


@hookimpl(trylast=True)
def retention_report_writers(register: ReportWriterRegistry) -> None:
    from .report import write_csv, write_json

    register("json", write_json)
    register("csv", write_csv)
