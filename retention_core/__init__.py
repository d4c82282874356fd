"""retention: enforce a privacy policy's retention promises. This module is the public API."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("retention")

from .backend import Backend, Cutoffs, PushdownPlan, Survey  # noqa: E402
from .durations import Duration, parse_duration  # noqa: E402
from .errors import (  # noqa: E402
    BackendError,
    ConfigError,
    LockedError,
    PluginError,
    RetentionError,
    SafetyLimitError,
)
from .model import (  # noqa: E402
    Action,
    Category,
    Context,
    Decision,
    ErasureRequest,
    Hold,
    HoldScope,
    Outcome,
    Problem,
    Record,
    RecordKey,
    Source,
    Status,
    Subject,
)
from .options import Options  # noqa: E402

__all__ = [
    "Action",
    "Backend",
    "BackendError",
    "Category",
    "ConfigError",
    "Context",
    "Cutoffs",
    "Decision",
    "Duration",
    "ErasureRequest",
    "Hold",
    "HoldScope",
    "LockedError",
    "Options",
    "Outcome",
    "Problem",
    "PluginError",
    "PushdownPlan",
    "Survey",
    "Record",
    "RecordKey",
    "RetentionError",
    "SafetyLimitError",
    "Source",
    "Status",
    "Subject",
    "hookimpl",
    "parse_duration",
]
