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


class NotStorable(UsageError):
    """A value cannot be stored as JSON: its type, a non-finite number, a lone surrogate or a
    NUL character, nesting past the bound, an integer past Python's digit limit."""


class StorageError(CorralError):
    """The database refused or failed, through no fault of the caller's input: a corrupt,
    read-only, deleted or replaced file, or a schema newer than this corral. Permanent:
    trying again does not help. The CLI exits 2 on these."""


class StorageUnavailable(StorageError):
    """The database cannot be reached right now: a server down or restarting, a network
    cut, a lock held past the busy timeout, a full disk. Transient: try again. The CLI
    exits 3 on these; a worker waits and retries."""


class StorageLocked(StorageUnavailable):
    """Another process holds the database's write lock past the busy timeout (a worker
    stopped with Ctrl-Z or SIGSTOP, a debugger, a paused container)."""


class ValueRejected(StorageError):
    """The backend refused a value of one write (what the encoding checks let through).
    A worker settles each commit of a batch on its own when it meets this, so that only
    the process whose value it was fails."""


class IllegalTransition(CorralError):
    """A status change the rules of docs/state-machine.md do not allow. Nothing was written."""


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
