"""corral: durable jobs, multi-step processes and task graphs for Python.

Embedded on one SQLite file by default; many workers on many machines on PostgreSQL.
The README says how to use it; docs/architecture.md says how it is built.
"""

from corral.app import App, Submitted
from corral.context import Context
from corral.errors import (
    Cancelled,
    CorralError,
    CustomIdConflict,
    IllegalTransition,
    Invalid,
    InvalidId,
    InvalidParams,
    LeaseLost,
    ProcessNotFound,
    RetryLater,
    StorageUnavailable,
    UnknownJob,
    UsageError,
)
from corral.jobs import Retry
from corral.model import ErrorInfo, Event, Process, Status
from corral.worker import Worker, WorkerOptions

__all__ = [
    "App",
    "Cancelled",
    "Context",
    "CorralError",
    "CustomIdConflict",
    "ErrorInfo",
    "Event",
    "IllegalTransition",
    "Invalid",
    "InvalidId",
    "InvalidParams",
    "LeaseLost",
    "Process",
    "ProcessNotFound",
    "Retry",
    "RetryLater",
    "Status",
    "StorageUnavailable",
    "Submitted",
    "UnknownJob",
    "UsageError",
    "Worker",
    "WorkerOptions",
]
