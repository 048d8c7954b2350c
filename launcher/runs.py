"""Finding runs in a store and opening one."""

from __future__ import annotations

from dataclasses import dataclass

from chunkpilot import layout
from chunkpilot.errors import ChunkpilotError, NotFoundError, RunNotFoundError
from chunkpilot.names import validate_run_name
from chunkpilot.spec import CancelMarker, ResumeAllowance, RunSpec
from chunkpilot.store import Store, open_store


@dataclass(frozen=True)
class OpenRun:
    store_uri: str  # the store root
    run_store: Store  # rooted at <store>/<run_id>
    spec: RunSpec

    @property
    def run_uri(self) -> str:
        return self.run_store.uri

    @property
    def cancelled(self) -> bool:
        try:
            self.run_store.head(layout.CANCELLED)
            return True
        except NotFoundError:
            return False

    def cancel_marker(self) -> CancelMarker | None:
        """Why the run is paused, or None if it is not."""
        try:
            return CancelMarker.from_json(self.run_store.get(layout.CANCELLED))
        except NotFoundError:
            return None

    def allowance(self) -> ResumeAllowance:
        try:
            return ResumeAllowance.from_json(self.run_store.get(layout.RESUMED))
        except (NotFoundError, ValueError, TypeError):
            return ResumeAllowance()


def open_run(store_uri: str, run_id: str) -> OpenRun:
    validate_run_name(run_id)
    run_store = open_store(store_uri).child(run_id)
    try:
        spec = RunSpec.from_json(run_store.get(layout.RUN_SPEC))
    except NotFoundError:
        raise RunNotFoundError(f"no run {run_id!r} in {store_uri} (see `launcher runs --store {store_uri}`)") from None
    return OpenRun(store_uri, run_store, spec)


@dataclass(frozen=True)
class RunEntry:
    """A run as ``launcher runs`` lists it."""

    spec: RunSpec
    chunks_done: int
    paused: bool

    @property
    def state(self) -> str:
        if self.chunks_done >= len(self.spec.chunks):
            return "done"
        return "paused" if self.paused else "incomplete"


def list_runs(store_uri: str) -> list[RunEntry]:
    """Every run in the store, oldest first, from one listing of the store (plus each run.json)."""
    store = open_store(store_uri)
    runs: list[str] = []
    done: dict[str, int] = {}
    paused: set[str] = set()
    for key in store.keys(""):
        run_id, run_key = layout.split_run_key(key)
        if run_key == layout.RUN_SPEC:
            runs.append(run_id)
        elif run_key == layout.CANCELLED:
            paused.add(run_id)
        elif run_key.startswith(layout.OUTPUTS) and layout.parse_output(run_key)[1] == layout.DONE_NAME:
            done[run_id] = done.get(run_id, 0) + 1
    entries = []
    for run_id in runs:
        try:
            spec = RunSpec.from_json(store.get(layout.run_key(run_id, layout.RUN_SPEC)))
        except (ValueError, KeyError, TypeError, ChunkpilotError):
            continue
        entries.append(RunEntry(spec, done.get(run_id, 0), run_id in paused))
    return sorted(entries, key=lambda e: e.spec.created_at)
