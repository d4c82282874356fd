"""retention: enforce a privacy policy's retention promises. This module is the public API.

Plugins import from here (and, for a command that opens the policy, from
:mod:`retention_core.host`); every other module is the core's own business.
"""

from __future__ import annotations

import pluggy

#: The one home of the version: setup.cfg reads it (``attr:``), the trail, reports and
#: ``retention plugins`` show it.
__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("retention")

from .backend import Backend, Cutoffs, Partition, PushdownPlan, Survey, Tally  # noqa: E402
from .durations import Duration, parse_duration  # noqa: E402
from .engine import covering_holds  # noqa: E402
from .errors import (  # noqa: E402
    BackendError,
    CertificateError,
    ClockError,
    ConfigError,
    LockedError,
    PluginError,
    RetentionError,
)
from .files import atomic_write  # noqa: E402
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
from .options import Options, describe, key_label  # noqa: E402
from .overlap import host_identity  # noqa: E402
from .registry import (  # noqa: E402
    BackendRegistry,
    HoldSourceRegistry,
    ReportWriterRegistry,
    SubjectSourceRegistry,
)

__all__ = [
    "host_identity",
    "Action",
    "Backend",
    "BackendError",
    "BackendRegistry",
    "Category",
    "CertificateError",
    "ClockError",
    "ConfigError",
    "Context",
    "Cutoffs",
    "Decision",
    "Duration",
    "ErasureRequest",
    "Hold",
    "HoldScope",
    "HoldSourceRegistry",
    "LockedError",
    "Options",
    "Outcome",
    "Partition",
    "PluginError",
    "Problem",
    "PushdownPlan",
    "Record",
    "RecordKey",
    "ReportWriterRegistry",
    "RetentionError",
    "Source",
    "Status",
    "Subject",
    "SubjectSourceRegistry",
    "Survey",
    "Tally",
    "__version__",
    "atomic_write",
    "covering_holds",
    "describe",
    "hookimpl",
    "key_label",
    "parse_duration",
]
