"""SkyPilot backend: one managed job per worker launch, from a task template users edit.

* **Tasks.** ``chunkpilot.control.skytask`` renders each job's task (pure, no SkyPilot);
  ``chunkpilot.control.backends.sky_sdk`` turns it into a ``sky.Task`` — the only module importing ``sky``.
* **Validation.** ``plan_tasks`` / ``validate_run`` render every worker's task and validate each
  distinct one offline with the real SkyPilot library before anything is written or launched.
  A broken template fails there with SkyPilot's message and the template's path.
* **Jobs.** ``SkyBackend`` launches the tasks concurrently as managed jobs named
  ``<run>-<worker>-a<attempt>`` (``demo-w3-a1``), polls them all with one ``queue_v2`` request, and cancels
  them in one request, through the SDK adapter (``sky_sdk.use_sdk`` swaps in a fake with the
  same signatures for tests).

A job is found by its name, never only by the id the launch returned: a launch whose reply
was lost is still seen (and never launched twice: the watch loop claims each attempt in the
store before calling ``launch``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from chunkpilot import layout
from chunkpilot.fleet import gpus_per_engine
from chunkpilot.errors import BackendError, ConfigError, NotFoundError
from chunkpilot.names import worker_id
from chunkpilot.retry import call
from chunkpilot.spec import ChunkManifest, RunSpec
from chunkpilot.control.backends.base import JobState, JobStatus, LaunchRequest
from chunkpilot.control.backends.sky_sdk import (
    SkySdk,
    build_task,
    catalog_gpu_names,
    is_connection_error,
    message,
    sdk_override,
    validate_pool,
    validate_task,
)
from chunkpilot.control.skytask import (
    RunTasks,
    Secrets,
    TaskOptions,
    Template,
    accelerator_choices,
    check_accelerators,
    check_reachable,
    is_local,
    task_shape,
    uses_hf_datasets,
    uses_s3,
)

log = logging.getLogger("chunkpilot.sky")

# The run's copy of its template, written at first launch: relaunches use exactly it, from any machine.
TEMPLATE_KEY = layout.SKY_TEMPLATE

# queue_v2 fields the poll needs (status and job_id are always included by SkyPilot).
QUEUE_FIELDS = ("job_id", "task_id", "job_name", "task_name", "submitted_at", "start_at", "end_at", "recovery_count", "last_recovered_at",
                "status", "failure_reason", "cloud", "region", "zone", "accelerators", "cluster_resources_full")

# ManagedJobStatus value -> normalized state. FAILED_SETUP / FAILED_PRECHECKS are configuration
# errors: a new attempt would fail the same way. FAILED_NO_RESOURCE / FAILED_CONTROLLER are worth one.
STATUS_MAP: dict[str, JobStatus] = {
    "PENDING": JobStatus.PENDING,
    "SUBMITTED": JobStatus.PENDING,  # DEPRECATED_SUBMITTED
    "STARTING": JobStatus.PENDING,  # the controller is provisioning (may take long for spot)
    "RUNNING": JobStatus.RUNNING,  # setting up or running
    "WINDING_DOWN": JobStatus.RUNNING,
    "RECOVERING": JobStatus.RECOVERING,  # preempted (or failed): SkyPilot restarts the run command
    "CANCELLING": JobStatus.CANCELLING,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "CANCELLED": JobStatus.CANCELLED,
    "FAILED": JobStatus.FAILED,
    "FAILED_SETUP": JobStatus.FAILED_CONFIG,
    "FAILED_PRECHECKS": JobStatus.FAILED_CONFIG,
    "FAILED_NO_RESOURCE": JobStatus.FAILED,
    "FAILED_CONTROLLER": JobStatus.FAILED,
}
_ACTIVE_SKY = {"PENDING", "SUBMITTED", "STARTING", "RUNNING", "WINDING_DOWN", "RECOVERING"}
# SkyPilot's failure_reason for a user program that ended with one exit code: "Job exited with exit code 2 ..."
_WORKER_CONFIG_EXIT = re.compile(r"\bexit code 2\b")

class SkyBackendError(BackendError):
    """SkyPilot could not be reached, or refused a request (not a template mistake)."""


# -- one run's tasks ---------------------------------------------------------------


def run_uri_of(store_uri: str, run_id: str) -> str:
    from chunkpilot.store import open_store

    return open_store(store_uri).child(run_id).uri


# SkyPilot's jobs controller launches ~24 jobs at a time by default and users report it running out of
# memory near 100 parallel launches: a few reconcile cycles for a big fleet beat one flood.
DEFAULT_LAUNCH_BATCH = 16


def launch_batch_of(spec: RunSpec, environ: Mapping[str, str]) -> int:
    """How many jobs one reconcile cycle may launch: ``backend_options["launch_batch"]``, else
    $CHUNKPILOT_LAUNCH_BATCH, else DEFAULT_LAUNCH_BATCH (ConfigError for a value that is not >= 1)."""
    value = (spec.backend_options or {}).get("launch_batch") or environ.get("CHUNKPILOT_LAUNCH_BATCH") or DEFAULT_LAUNCH_BATCH
    try:
        batch = int(value)
    except (TypeError, ValueError):
        batch = 0
    if batch < 1:
        raise ConfigError(f"launch batch {value!r}: expected a whole number of jobs, at least 1")
    return batch


@dataclass
class SkyPlan:
    tasks: RunTasks
    names: list[str]
    first: tuple[dict, list[tuple[str, str]], Secrets]
    dist: str
    notes: list[str]
    shapes: int
    launch_batch: int = DEFAULT_LAUNCH_BATCH
    # On a pool: the pool's config (validated as SkyPilot validates a pool) and the launch requests'
    # sizes (num_jobs), in the order the first cycles send them.
    pool_config: dict | None = None
    requests: list[int] | None = None


def plan_tasks(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str, sdk: Any = None,
               environ: Mapping[str, str] | None = None) -> SkyPlan:
    """Render every worker's first launch and validate each distinct task offline with SkyPilot.

    Workers differ only in values SkyPilot does not interpret (their id), so SkyPilot runs once
    per distinct task; each worker's rendering is still checked.
    """
    from chunkpilot.control.wheel import dist_dir

    environ = os.environ if environ is None else environ
    run_uri = run_uri_of(store_uri, spec.run_id)
    tasks = RunTasks.for_spec(spec, run_uri, environ=environ)
    dist = str(dist_dir(build=False))
    notes: list[str] = []
    seen: set[str] = set()
    first = None
    names = []
    for index in range(max(1, spec.workers)):
        cfg, envs, secrets = tasks.render(worker_id(index), 1, dist)
        first = first or (cfg, envs, secrets)
        names.append(cfg["name"])
        shape = task_shape(cfg, envs)
        if shape in seen:
            continue
        seen.add(shape)
        check_accelerators(cfg, tasks.source, environ, catalog_gpu_names())
        for note in validate_task(cfg, envs, secrets, tasks.source):
            if note not in notes:
                notes.append(note)
    if first is None:
        raise ConfigError("nothing to launch: the run has no chunks")
    notes += _warnings(spec, tasks, first, run_uri, sdk if sdk is not None else sdk_override())
    batch = launch_batch_of(spec, environ)
    plan = SkyPlan(tasks, names, first, dist, notes, len(seen), batch)
    if tasks.options.pool:
        count = max(1, spec.workers)
        plan.requests = [min(batch, count - i) for i in range(0, count, batch)]
        members = [(worker_id(i), 1) for i in range(plan.requests[0])]
        plan.first = tasks.render_batch(members, dist)
        validate_task(*plan.first, tasks.source)
        pool_cfg, pool_envs, pool_secrets = tasks.render_pool(tasks.options.pool, 1, dist)
        validate_pool(pool_cfg, pool_envs, pool_secrets, tasks.source)
        plan.pool_config = pool_cfg
    return plan


def _warnings(spec: RunSpec, tasks: RunTasks, first, run_uri: str, sdk: Any) -> list[str]:
    cfg, envs, secrets = first
    out = []
    if not _reachable(sdk):
        local = [u for u in [run_uri, *(p.uri for p in spec.inputs)] if is_local(u)]
        if local:
            out.append(f"{local[0]} is on this machine: cloud jobs cannot read it (launching will refuse); "
                       "use --store s3://bucket/prefix and inputs in object storage")
    if uses_s3(spec, run_uri) and "AWS_ACCESS_KEY_ID" not in secrets.passed:
        out.append("no AWS_ACCESS_KEY_ID passed: jobs reach s3:// only through their machine's own role "
                   "(export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY to pass keys as secrets)")
    if uses_hf_datasets(spec) and "HF_TOKEN" not in secrets.passed:
        out.append("no HF_TOKEN passed: jobs read the hf://datasets inputs anonymously, which fails for a gated or "
                   "private dataset (export HF_TOKEN: the template passes it as a secret)")
    if spec.engine == "vllm":
        used = gpus_per_engine(spec.engine_options)
        for name, count in accelerator_choices(cfg).items():
            if count != int(count):
                continue
            if count < used:
                raise ConfigError(f"task template {tasks.source}: {name}:{count:g} has fewer GPUs than vLLM's "
                                  f"tensor_parallel_size x pipeline_parallel_size = {used}")
            engines, idle = divmod(int(count), used)
            if idle:
                out.append(f"{name}:{count:g} runs {engines} engine(s) of {used} GPU(s) per machine and leaves {idle} "
                           f"idle: pick a GPU count that is a multiple of {used}")
            elif engines > 1:
                out.append(f"{name}:{count:g} runs {engines} engines of {used} GPU(s) per machine (one worker process "
                           f"each); a model that does not fit {used} GPU(s) needs --engine-option "
                           f"tensor_parallel_size={count:g}")
    return out


def validate_run(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str, launching: bool = False) -> SkyPlan:
    """Render and validate every chunk's task offline; ConfigError (with the template's path) if any is broken.

    With ``launching``, also refuse what would only fail at launch: a store or input
    on this machine, which cloud jobs cannot read (a dry run just warns about it).
    Returns the plan (for the dry run's listing).
    """
    plan = plan_tasks(spec, manifests, store_uri)
    if launching:
        check_reachable(spec, run_uri_of(store_uri, spec.run_id), _reachable(sdk_override()))
    for note in plan.notes:
        log.warning("%s", note)
    return plan


def _reachable(sdk: Any) -> bool:
    return bool(getattr(sdk, "local_paths_reachable", False))


# -- the backend ---------------------------------------------------------------------


class SkyBackend:
    """SkyPilot managed jobs, one per worker launch, named ``<run>-<worker>-a<attempt>``."""

    name = "sky"

    def __init__(self, spec: RunSpec, store_uri: str, sdk: Any = None, *, environ: Mapping[str, str] | None = None,
                 max_concurrent_launches: int = 16, dist_root: Path | None = None, retry_seconds: float = 30.0,
                 launch_batch: int | None = None):
        self.spec = spec
        # Launches per reconcile cycle (``Policy.max_launches_per_cycle``): the run's ``--launch-batch``,
        # else $CHUNKPILOT_LAUNCH_BATCH, else DEFAULT_LAUNCH_BATCH.
        self.launch_batch = launch_batch or launch_batch_of(spec, os.environ if environ is None else environ)
        self.store_uri = store_uri
        self._sdk = sdk
        self.environ = os.environ if environ is None else environ
        self.max_concurrent_launches = max_concurrent_launches
        self.dist_root = dist_root
        self.retry_seconds = retry_seconds  # how long poll/cancel wait out an unreachable API server
        self._tasks: RunTasks | None = None
        self._dist: str | None = None
        self._launch_errors: dict[str, str] = {}
        self._job_ids: dict[str, str] = {}
        self._batches: dict[str, list[str]] = {}  # several-job launch name -> member names by rank

    @classmethod
    def for_run(cls, spec: RunSpec, store_uri: str) -> "SkyBackend":
        """The backend of ``spec``'s run in the store at ``store_uri`` (cheap: SkyPilot is imported on first use)."""
        return cls(spec, store_uri, sdk=sdk_override())

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            self._sdk = SkySdk()
        return self._sdk

    # -- launch ------------------------------------------------------------------
    def _run_tasks(self, run_uri: str) -> RunTasks:
        """The run's tasks, from its pinned template copy in the store (written at first launch)."""
        if self._tasks is None:
            from chunkpilot.store import open_store

            run_store = open_store(run_uri)
            try:
                template = Template.parse(f"{run_uri}/{TEMPLATE_KEY}", run_store.get(TEMPLATE_KEY).decode())
            except NotFoundError:
                template = Template.load(TaskOptions.from_spec(self.spec).template)
                if not run_store.put_if_absent(TEMPLATE_KEY, template.text.encode()):
                    template = Template.parse(f"{run_uri}/{TEMPLATE_KEY}", run_store.get(TEMPLATE_KEY).decode())
            self._tasks = RunTasks.for_spec(self.spec, run_uri, template, self.environ)
        return self._tasks

    def launch(self, requests: list[LaunchRequest]) -> list[str | None]:
        """Launch one managed job per request; each job id, or None where no answer came.

        Every task is rendered first, so a configuration error (e.g. a secret missing
        from this environment) stops the batch before anything is launched. The first
        request goes alone: it may start SkyPilot's API server, and if SkyPilot refuses
        it (no cloud access, an invalid task...) the rest would be refused too, so that
        raises. The others go out concurrently.
        """
        if not requests:
            return []
        run_uri = requests[0].run_uri
        check_reachable(self.spec, run_uri, _reachable(self.sdk))
        tasks = self._run_tasks(run_uri)
        if self._dist is None:
            from chunkpilot.control.wheel import dist_dir

            self._dist = str(dist_dir(self.dist_root))
        if tasks.options.pool:
            return self._launch_on_pool(tasks, requests)
        built = [_task(tasks, r.worker, r.attempt, self._dist) for r in requests]
        names = [r.name for r in requests]
        first_id, first_error = self._launch_one(built[0], names[0])
        if first_error is not None and not is_connection_error(first_error):
            raise SkyBackendError(f"SkyPilot refused to launch {names[0]}: {message(first_error)}") from first_error
        rest: list[tuple[str | None, BaseException | None]] = []
        if len(built) > 1:
            workers = max(1, min(self.max_concurrent_launches, len(built) - 1))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sky-launch") as pool:
                rest = list(pool.map(self._launch_one, built[1:], names[1:]))
        return [first_id, *(job_id for job_id, _ in rest)]

    def _launch_on_pool(self, tasks: RunTasks, requests: list[LaunchRequest]) -> list[str | None]:
        """Every request as one job of a single ``sky.jobs.launch(task, pool=..., num_jobs=N)``.

        The member list (rank r is request r) is written to the store before the launch and goes to
        the jobs as ``CHUNKPILOT_MEMBERS``: a job's identity comes from it and its
        ``SKYPILOT_JOB_RANK``, and ``poll`` finds each member's job by the request's name and rank
        (SkyPilot ranks a request's jobs by sorted job id), even when the reply was lost.
        """
        from chunkpilot.store import open_store

        members = [(r.worker, r.attempt) for r in requests]
        cfg, envs, secrets = tasks.render_batch(members, self._dist or "")
        check_accelerators(cfg, tasks.source, tasks.environ, catalog_gpu_names())
        task = build_task(cfg, envs, secrets, tasks.source, validate=False)
        batch = cfg["name"]
        if len(members) > 1:
            record = json.dumps({"name": batch, "pool": tasks.options.pool, "members": [r.name for r in requests]})
            open_store(requests[0].run_uri).put(layout.pool_launch(batch), record.encode())
            self._batches[batch] = [r.name for r in requests]
        try:
            request_id = self.sdk.jobs.launch(task, name=batch, pool=tasks.options.pool,
                                              num_jobs=len(members) if len(members) > 1 else None)
            job_ids, _handle = self.sdk.get(request_id)
        except Exception as exc:  # noqa: BLE001
            if not is_connection_error(exc):
                raise SkyBackendError(f"SkyPilot refused to launch {batch} on pool {tasks.options.pool}: "
                                      f"{message(exc)}") from exc
            for r in requests:
                self._launch_errors[r.name] = message(exc)
            log.warning("launch of %s got no answer (%s); its jobs are tracked by name and rank", batch, message(exc))
            return [None] * len(requests)
        ids = [str(i) for i in sorted(job_ids or [])]
        out: list[str | None] = [ids[i] if i < len(ids) else None for i in range(len(requests))]
        for r, job_id in zip(requests, out):
            if job_id is not None:
                self._job_ids[r.name] = job_id
        return out

    def _batch_members(self, run_id: str) -> dict[str, list[str]]:
        """Several-job launch name -> its members' names by rank (from the store, once per unknown name)."""
        from chunkpilot.store import open_store

        store = open_store(run_uri_of(self.store_uri, run_id))
        for obj in store.list(layout.POOL_LAUNCHES):
            name = obj.key[len(layout.POOL_LAUNCHES):].removesuffix(".json")
            if name not in self._batches:
                self._batches[name] = list(json.loads(store.get(obj.key))["members"])
        return self._batches

    def _launch_one(self, task: Any, name: str) -> tuple[str | None, BaseException | None]:
        try:
            request_id = self.sdk.jobs.launch(task, name=name)
            job_ids, _handle = self.sdk.get(request_id)
        except Exception as exc:  # noqa: BLE001 - the job may exist anyway: poll finds it by name
            self._launch_errors[name] = message(exc)
            log.warning("launch of %s got no answer (%s); it is tracked by name", name, message(exc))
            return None, exc
        job_id = str(job_ids[0]) if job_ids else None
        if job_id is not None:
            self._job_ids[name] = job_id
        return job_id, None

    # -- poll and cancel -----------------------------------------------------------
    def _records(self, run_id: str) -> list[Any]:
        """The run's managed-job records, in one queue_v2 request (retried while SkyPilot is unreachable).

        Never guessed: if the API server stays unreachable this raises, since reporting
        jobs as missing would get them launched twice.
        """
        prefix = f"{run_id}-"

        def queue() -> list[Any]:
            try:
                request_id = self.sdk.jobs.queue_v2(refresh=False, skip_finished=False, all_users=False,
                                                    fields=list(QUEUE_FIELDS), name_match=prefix)
                return self.sdk.get(request_id)[0] or []
            except self.sdk.ClusterNotUpError:
                return []  # no jobs controller: nothing was ever launched (or it was torn down)

        try:
            records = call(queue, is_connection_error, seconds=self.retry_seconds, first=1.0, log=log,
                           what="listing SkyPilot managed jobs (API server unreachable)")
        except Exception as exc:  # noqa: BLE001 - SkyPilot's own errors, whatever their type
            raise SkyBackendError(f"cannot list SkyPilot managed jobs: {message(exc)}") from exc
        return [r for r in records if str(r.get("job_name") or "").startswith(prefix)]

    def _newest_by_name(self, run_id: str, names: Iterable[str]) -> dict[str, Any]:
        """Each wanted launch's job record: by its own name, or for a member of a several-job launch
        (``_launch_on_pool``) the request's job at its rank."""
        wanted = set(names)
        newest: dict[str, Any] = {}
        records = self._records(run_id)
        shared = [r for r in records if str(r.get("job_name")) not in wanted]
        if shared and wanted - {str(r.get("job_name")) for r in records}:
            by_batch: dict[str, list[Any]] = {}
            for record in shared:
                by_batch.setdefault(str(record.get("job_name")), []).append(record)
            batches = self._batches if all(b in self._batches for b in by_batch) else self._batch_members(run_id)
            for batch, rows in by_batch.items():
                rows.sort(key=lambda r: int(r.get("job_id") or 0))
                for rank, member in enumerate(batches.get(batch, ())):
                    if member in wanted and rank < len(rows):
                        newest[member] = rows[rank]
        for record in records:
            name = record.get("job_name")
            if name not in wanted:
                continue
            known = self._job_ids.get(name)
            current = newest.get(name)
            if current is None or _newer(record, current, known):
                newest[name] = record
        return newest

    def poll(self, run_id: str, names: list[str]) -> dict[str, JobState]:
        newest = self._newest_by_name(run_id, names)
        out = {}
        for name in names:
            if name in newest:
                out[name] = job_state(newest[name])
            else:
                error = self._launch_errors.get(name)
                out[name] = JobState(JobStatus.MISSING, f"launch got no answer: {error}" if error else "")
        return out

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # SkyPilot has no cheap "tell me when a job changes": poll

    def cancel(self, run_id: str, names: list[str]) -> None:
        newest = self._newest_by_name(run_id, names)
        job_ids = sorted(int(r.get("job_id")) for r in newest.values()
                         if r.get("job_id") is not None and _status_value(r.get("status")) in _ACTIVE_SKY)
        if not job_ids:
            return
        try:
            self.sdk.get(self.sdk.jobs.cancel(job_ids=job_ids))
        except self.sdk.ClusterNotUpError:
            return
        except Exception as exc:  # noqa: BLE001
            raise SkyBackendError(f"cannot cancel SkyPilot jobs {job_ids}: {message(exc)}") from exc


def _task(tasks: RunTasks, worker: str, attempt: int, dist: str):
    """One job's ``sky.Task`` (validated as a whole by ``plan_tasks`` at submit)."""
    cfg, envs, secrets = tasks.render(worker, attempt, dist)
    check_accelerators(cfg, tasks.source, tasks.environ, catalog_gpu_names())
    return build_task(cfg, envs, secrets, tasks.source, validate=False)


def _newer(record: Any, current: Any, known_id: str | None) -> bool:
    """Two jobs with one name should not happen; prefer the id we launched, else the newest."""
    if known_id is not None:
        if str(record.get("job_id")) == known_id:
            return True
        if str(current.get("job_id")) == known_id:
            return False
    return (record.get("job_id") or -1) > (current.get("job_id") or -1)


def _status_value(status: Any) -> str:
    return str(getattr(status, "value", status) or "")


def job_state(record: Any) -> JobState:
    """A queue_v2 record -> the normalized state, its recoveries (preemptions) and a useful detail."""
    status = _status_value(record.get("status"))
    reason = str(record.get("failure_reason") or "").strip()
    recoveries = int(record.get("recovery_count") or 0)
    normalized = STATUS_MAP.get(status)
    if normalized is None:
        log.warning("unknown SkyPilot job status %r: treating it as running", status)
        return JobState(JobStatus.RUNNING, f"SkyPilot status {status}", recoveries)
    if status == "FAILED" and _WORKER_CONFIG_EXIT.search(reason):
        normalized = JobStatus.FAILED_CONFIG  # the worker's "configuration error, retrying will not help"
        reason = f"worker exited 2 (configuration error). {reason}"
    detail = " ".join(p for p in (status if status != normalized.value else "", reason) if p)
    if status == "RECOVERING" and not reason:
        detail = "preempted or failed; SkyPilot is restarting it"
    started_at = _float(record.get("start_at"))
    restarts = [t for t in (started_at, _float(record.get("last_recovered_at"))) if t]
    return JobState(normalized, detail, recoveries, started_at=started_at,
                    ended_at=_float(record.get("end_at")) if not normalized.active else None,
                    resources=resources_of(record), running_since=max(restarts) if restarts else None)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def resources_of(record: Any) -> dict[str, Any]:
    """What a queue record says the job runs on: cloud, region, zone, accelerators, and from
    SkyPilot's resources text (``1x[spot](gpus=A10G:1, cpus=4, mem=16, g5.xlarge, disk=256)``)
    the instance type and whether it is spot. Only what the record holds; empty while the
    job has no cluster yet."""
    out: dict[str, Any] = {}
    for key in ("cloud", "region", "zone"):
        if record.get(key):
            out[key] = str(record.get(key))
    accelerators = record.get("accelerators")
    if isinstance(accelerators, dict) and accelerators:
        out["accelerators"] = {str(k): v for k, v in accelerators.items()}
    text = str(record.get("cluster_resources_full") or "")
    inner = re.search(r"\((.*)\)\s*$", text)
    if inner:
        out["spot"] = "[spot]" in text.lower()
        plain = [e.strip() for e in inner.group(1).split(",") if e.strip() and "=" not in e and e.strip() != "..."]
        if plain:
            out["instance_type"] = plain[0]
    return out


# -- prices for the dry run -------------------------------------------------------------


def price_lines(spec: RunSpec, cfg: dict, catalog: Any = None, clouds: list[str] | None = None) -> list[str]:
    """What one job of the plan costs an hour: the user's price, or SkyPilot's catalog price of
    each accelerator choice in the template's cloud (or in every cloud whose catalog this
    machine has), spot and on demand. Lines for the dry run."""
    from chunkpilot.control.pricing import price_for, user_price

    if catalog is None:
        from chunkpilot.control.backends.sky_sdk import cached_catalog_clouds, catalog_price

        catalog = catalog_price
        clouds = clouds if clouds is not None else cached_catalog_clouds()
    resources = cfg.get("resources") if isinstance(cfg.get("resources"), dict) else {}
    spot = bool(resources.get("use_spot", False)) if spec.use_spot is None else spec.use_spot
    user = user_price(spec.price_per_hour, spec.on_demand_price_per_hour)
    infra = str(resources.get("infra") or resources.get("cloud") or "")
    cloud, _, rest = infra.partition("/")
    region = rest.split("/")[0] or None
    where = [cloud] if cloud else list(clouds or [])
    accelerators = accelerator_choices(cfg)
    if user is not None:
        on_demand = f", on demand ${user.on_demand_per_hour:g}/h" if user.on_demand_per_hour is not None else ""
        return [f"${user.per_hour:g}/h per job (--price-per-hour){on_demand}"]
    if not accelerators:
        return ["not priced: no accelerators in the task (pass --price-per-hour)"]
    if not where:
        return ["not priced: no SkyPilot catalog on this machine yet (`sky show-gpus` fetches them; or pass "
                "--price-per-hour)"]
    lines = []
    for name, count in accelerators.items():
        for c in where:
            price = price_for({"cloud": c, "region": region, "accelerators": {name: count}, "spot": spot}, spot, None, catalog)
            if price.per_hour is None:
                lines.append(f"{name}:{count:g} on {c}: {price.source}")
                continue
            on_demand = f" (on demand ${price.on_demand_per_hour:.4g}/h)" if spot and price.on_demand_per_hour else ""
            lines.append(f"{name}:{count:g} ${price.per_hour:.4g}/h{' spot' if spot else ''}{on_demand} · {price.source}")
    return lines


def estimate_price(spec: RunSpec, cfg: dict, catalog: Any = None, clouds: list[str] | None = None):
    """One job's hourly price, spot and on demand, for the dry run's cost estimate
    (``chunkpilot.control.estimate.HourlyPrice``): the user's price for the way the run runs (spot or not;
    ``--on-demand-price-per-hour`` for the other), else SkyPilot's catalog price of the task's first
    accelerator choice — the cheapest of the clouds priced as in ``price_lines``."""
    from chunkpilot.control.estimate import HourlyPrice
    from chunkpilot.control.pricing import price_for

    if catalog is None:
        from chunkpilot.control.backends.sky_sdk import cached_catalog_clouds, catalog_price

        catalog = catalog_price
        clouds = clouds if clouds is not None else cached_catalog_clouds()
    resources = cfg.get("resources") if isinstance(cfg.get("resources"), dict) else {}
    spot_run = bool(resources.get("use_spot", False)) if spec.use_spot is None else spec.use_spot
    if spec.price_per_hour is not None:
        if spot_run:
            return HourlyPrice(spec.price_per_hour, spec.on_demand_price_per_hour, "--price-per-hour")
        return HourlyPrice(None, spec.price_per_hour, "--price-per-hour (on demand; no spot price given)")
    accelerators = accelerator_choices(cfg)
    if not accelerators:
        return HourlyPrice(None, None, "no accelerators in the task (pass --price-per-hour)")
    infra = str(resources.get("infra") or resources.get("cloud") or "")
    cloud, _, rest = infra.partition("/")
    where = [cloud] if cloud else list(clouds or [])
    if not where:
        return HourlyPrice(None, None, "no SkyPilot catalog on this machine yet (`sky show-gpus` fetches them; or "
                                       "pass --price-per-hour)")
    name, count = next(iter(accelerators.items()))
    found = []
    for c in where:
        price = price_for({"cloud": c, "region": rest.split("/")[0] or None, "accelerators": {name: count}, "spot": True},
                          True, None, catalog)
        if price.per_hour is not None:
            found.append(price)
    if not found:
        return HourlyPrice(None, None, f"no catalog price for {name}:{count:g} in {', '.join(where)} "
                                       "(pass --price-per-hour)")
    best = min(found, key=lambda p: p.per_hour)
    return HourlyPrice(best.per_hour, best.on_demand_per_hour, best.source.replace(" spot", ""))


__all__ = ["SkyBackend", "SkyPlan", "validate_run", "plan_tasks", "job_state", "STATUS_MAP", "SkyBackendError"]
