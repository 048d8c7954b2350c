"""Finding runs in a store and opening one."""

from __future__ import annotations

from dataclasses import dataclass

from launcher.errors import NotFoundError, RunNotFoundError
from launcher.names import validate_run_name
from launcher.spec import RunSpec
from launcher.store import Store, open_store


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
            self.run_store.head("CANCELLED")
            return True
        except NotFoundError:
            return False


def open_run(store_uri: str, run_id: str) -> OpenRun:
    validate_run_name(run_id)
    run_store = open_store(store_uri).child(run_id)
    try:
        spec = RunSpec.from_json(run_store.get("run.json"))
    except NotFoundError:
        raise RunNotFoundError(f"no run {run_id!r} in {store_uri} (see `launcher runs --store {store_uri}`)") from None
    return OpenRun(store_uri, run_store, spec)


def list_runs(store_uri: str) -> list[RunSpec]:
    """Every run in the store, oldest first."""
    store = open_store(store_uri)
    specs = []
    for obj in store.list(""):
        parts = obj.key.split("/")
        if len(parts) == 2 and parts[1] == "run.json":
            try:
                specs.append(RunSpec.from_json(store.get(obj.key)))
            except (ValueError, KeyError, TypeError):
                continue
    return sorted(specs, key=lambda s: s.created_at)
