"""Plan a run and write it to the store: run.json and one manifest per chunk.

Every check that can fail — inputs, engine, backend, names, the store itself,
the task template — runs before the first byte is written.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from launcher import __version__
from launcher.backends import check_backend_name
from launcher.errors import ConfigError, NotFoundError
from launcher.inputs import resolve_inputs
from launcher.names import validate_run_name
from launcher.plan import next_line_start, plan_chunks
from launcher.spec import ChunkManifest, ChunkSummary, InputPin, RunSpec
from launcher.store import open_store, split_object_uri


@dataclass(frozen=True)
class SubmitOptions:
    inputs: tuple[str, ...]
    chunks: int
    store_uri: str
    engine: str = "vllm"
    model: str | None = None
    backend: str = "local"
    use_spot: bool | None = None  # None: the task template decides
    max_tokens: int = 256
    temperature: float = 0.0
    run_name: str | None = None
    parallel: int | None = None  # None: 1 for local, unlimited for sky
    max_attempts: int = 3
    template: str | None = None
    commit_seconds: float = 5.0
    commit_records: int = 256
    engine_options: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    spec: RunSpec
    manifests: list[ChunkManifest]
    probe_bytes: int  # bytes read to align split points: planning reads nothing else


def new_run_id(name: str | None, now: float | None = None) -> str:
    if name:
        return validate_run_name(name)
    stamp = datetime.fromtimestamp(now or time.time(), timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(2)}"


def model_identity(engine: str, model: str | None) -> tuple[str, str]:
    """(model as given to the worker, revision pinned in run.json)."""
    if engine == "echo":
        return model or "echo", "echo-1"
    from worker.model import DEFAULT_MODEL, model_revision

    chosen = model or DEFAULT_MODEL
    return chosen, model_revision(chosen)


def plan_run(options: SubmitOptions) -> Plan:
    """Resolve, check and plan everything; writes nothing."""
    from worker.engines import check_engine_name

    if options.chunks < 1:
        raise ConfigError("--chunks must be at least 1")
    if options.max_attempts < 1:
        raise ConfigError("--max-attempts must be at least 1")
    check_engine_name(options.engine)
    check_backend_name(options.backend)
    open_store(options.store_uri).check_writable()
    run_id = new_run_id(options.run_name)
    pins = resolve_inputs(list(options.inputs))
    manifests, probe_bytes = _plan(pins, options.chunks)
    model, revision = model_identity(options.engine, options.model)
    parallel = options.parallel if options.parallel is not None else (1 if options.backend == "local" else 0)
    sampling = {"max_tokens": options.max_tokens, "temperature": options.temperature}
    spec = RunSpec(
        run_id=run_id,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        inputs=tuple(pins),
        chunks=tuple(ChunkSummary(m.chunk, m.bytes) for m in manifests),
        engine=options.engine,
        model=model,
        model_revision=revision,
        sampling=sampling,
        backend=options.backend,
        use_spot=options.use_spot,
        max_attempts=options.max_attempts,
        parallel=parallel,
        chunkpilot_version=__version__,
        template=options.template,
        commit_seconds=options.commit_seconds,
        commit_records=options.commit_records,
        engine_options=dict(options.engine_options),
        backend_options=dict(options.backend_options),
    )
    return Plan(spec, manifests, probe_bytes)


# Probes and manifest writes are independent small requests: on S3 each is a round
# trip, so they go out from a small pool instead of one after another.
STORE_CONCURRENCY = 16


def _plan(pins: list[InputPin], chunks: int) -> tuple[list[ChunkManifest], int]:
    read_sizes: list[int] = []  # list.append is thread-safe
    stores = [split_object_uri(p.uri) for p in pins]

    def probe(source: int, offset: int) -> int:
        store, key = stores[source]

        def read(start: int, end: int) -> bytes:
            data = store.get_range(key, start, end)
            read_sizes.append(len(data))
            return data

        return next_line_start(read, pins[source].size, offset)

    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="plan-probe") as pool:
        manifests = plan_chunks([p.size for p in pins], chunks, probe, pool.map)
    return manifests, sum(read_sizes)


def write_run(plan: Plan, store_uri: str) -> str:
    """Write manifests, then run.json (put-if-absent: a run id is never reused). Returns the run's URI."""
    store = open_store(store_uri)
    store.check_writable()
    run_store = store.child(plan.spec.run_id)
    try:
        run_store.head("run.json")
        raise ConfigError(f"a run named {plan.spec.run_id!r} already exists in {store_uri}: choose another --run-name")
    except NotFoundError:
        pass
    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="plan-write") as pool:
        list(pool.map(lambda m: run_store.put(f"chunks/{m.chunk}.json", m.to_json()), plan.manifests))
    if not run_store.put_if_absent("run.json", plan.spec.to_json()):
        raise ConfigError(f"a run named {plan.spec.run_id!r} was just created by someone else: choose another --run-name")
    return run_store.uri
