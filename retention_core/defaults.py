"""The core's own hook implementations, registered like any plugin (pytest's builtin plugins)."""

from __future__ import annotations

from . import hookimpl
from .holdsources import CsvHolds, SqlHolds
from .registry import HoldSourceRegistry, ReportWriterRegistry, SubjectSourceRegistry
from .subjects import csv_subjects, sql_subjects


@hookimpl(trylast=True)
def retention_register_subject_sources(register: SubjectSourceRegistry) -> None:
    register("csv", csv_subjects)
    register("sql", sql_subjects)


@hookimpl(trylast=True)
def retention_register_hold_sources(register: HoldSourceRegistry) -> None:
    register("csv", CsvHolds)
    register("sql", SqlHolds)


@hookimpl(trylast=True)
def retention_register_report_writers(register: ReportWriterRegistry) -> None:
    from .html_report import write_html
    from .report import write_csv, write_json

    register("json", write_json)
    register("csv", write_csv)
    register("html", write_html)
    register("htm", write_html)
