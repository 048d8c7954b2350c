"""One exception type per kind of user-facing failure.

Library code raises these early with a message that says what to fix; the CLI
catches ``ChunkpilotError`` once and prints the message as one line.
"""


class ChunkpilotError(Exception):
    """Base class: a failure the user can act on. ``str(exc)`` is the whole message."""


class InputError(ChunkpilotError):
    """An input is missing, empty, unreadable or changed since the run was planned."""


class StoreError(ChunkpilotError):
    """The object store cannot be reached, read or written."""


class NotFoundError(StoreError):
    """A key does not exist in the store."""


class ConfigError(ChunkpilotError):
    """A bad option, name, template or run spec: retrying will not help."""


class BackendError(ChunkpilotError):
    """The job backend could not be reached or refused a request; ``watch`` retries next cycle."""


class RunNotFoundError(ChunkpilotError):
    """No run with that id exists in the store."""


class LeaseHeldError(ChunkpilotError):
    """Another ``watch`` process holds the run's lease."""


class IncompleteRunError(ChunkpilotError):
    """``collect`` was asked for a run whose chunks are not all done."""


class OutputError(ChunkpilotError):
    """A file chunkpilot was asked to write (``collect -o``) cannot be written."""


class CounterError(ChunkpilotError):
    """``collect``'s duplicate custom_id counter (a process of its own) failed: the output is not verified."""


class RunFailedError(ChunkpilotError):
    """A run driven to its end (``Run.wait``, ``launcher watch``) did not finish: chunks failed or
    were cancelled, or its error budget ran out. ``failed`` maps each failed chunk to its reason;
    ``cancelled`` lists the cancelled ones; ``over_budget`` is the budget's message (or None) and
    ``paused`` says the run was paused for it. Committed results stay: ``collect`` with
    ``allow_partial`` reads them."""

    def __init__(self, message: str, run_id: str, failed: dict[str, str] | None = None,
                 cancelled: list[str] | None = None, over_budget: str | None = None, paused: bool = False):
        super().__init__(message)
        self.run_id = run_id
        self.failed = dict(failed or {})
        self.cancelled = list(cancelled or [])
        self.over_budget = over_budget
        self.paused = paused
