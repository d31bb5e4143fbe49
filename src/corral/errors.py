"""Every error a corral user can meet. Messages say what was wrong and what to do."""

from __future__ import annotations


class CorralError(Exception):
    """Base class of corral's errors."""


class UsageError(CorralError):
    """Bad input from the caller: nothing was written. The CLI exits 2 on these."""


class UnknownJob(UsageError):
    pass


class InvalidParams(UsageError):
    pass


class InvalidId(UsageError):
    pass


class ProcessNotFound(UsageError):
    pass


class CustomIdConflict(UsageError):
    """A custom id already names a process of another job or with other parameters."""


class ConfigurationError(UsageError):
    """A job, handler or app was declared wrongly."""


class StorageUnavailable(UsageError):
    """The database cannot be reached, opened or read."""


class IllegalTransition(CorralError):
    """A status change the rules of DESIGN §2 do not allow. Nothing was written."""


class ProcessTerminal(IllegalTransition):
    pass


class LeaseLost(CorralError):
    """This worker no longer holds the lease: its writes about the process are refused."""


class Invalid(Exception):
    """Raised by a job's `validate` to reject a process: it ends `failed`, reason `invalid`."""


class RetryLater(Exception):
    """Raised by a handler to be called again after `after` seconds, without using an attempt."""

    def __init__(self, after: float = 1.0, reason: str = "") -> None:
        super().__init__(reason or f"retry in {after}s")
        self.after = float(after)
        self.reason = reason


class Cancelled(Exception):
    """Raised by `ctx.heartbeat()` when the process was asked to cancel."""
