"""SkyPilot backend: one managed job per chunk, from a task template users edit.

This is the only module that imports ``sky``, and only inside functions: importing
it is cheap and works offline. Everything SkyPilot-specific meets chunkpilot here:

* **Rendering.** ``launcher.skytask`` renders each job's task without SkyPilot:
  the template (plain SkyPilot task YAML, ``task_templates/``) with the
  command-line overrides applied, the per-job values as ``env_overrides`` and
  credentials as ``secrets_overrides``, read from the environment at launch and
  never written anywhere: not to the store, a log line, or a dry-run listing.
  This module turns the result into a ``sky.Task``.
* **Validation.** ``validate_run`` renders every chunk's task and validates it
  offline with the real SkyPilot library before anything is written or launched.
  A broken template fails there with SkyPilot's message and the template's path.
* **Jobs.** ``SkyBackend`` launches the tasks concurrently as managed jobs named
  ``<run>-<chunk>-a<attempt>``, polls them all with one ``queue_v2`` request, and
  cancels them in one request. The SDK is injectable (``sdk=``, ``use_sdk``), so
  tests drive the whole loop with a fake that mirrors the real signatures.

A job is found by its name, never only by the id the launch returned: a launch
whose reply was lost is still seen (and never launched twice: the watch loop
claims each attempt in the store before calling ``launch``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from launcher.backends.base import JobState, JobStatus, LaunchRequest
from chunkpilot.errors import BackendError, ChunkpilotError, ConfigError, NotFoundError
from chunkpilot.names import job_name
from launcher.skytask import (
    ENV_ATTEMPT,
    ENV_CHUNK,
    ENV_CHUNK_URI,
    ENV_RUN_ID,
    KNOWN_ACCELERATORS,
    Secrets,
    TaskOptions,
    Template,
    _BlockDumper,
    _resource_variants,
    _uses_s3,
    _worker_lines,
    accelerator_choices,
    apply_overrides,
    check_accelerators,
    check_user_envs,
    display_config,
    job_envs,
    redact,
    resolve_secrets,
)
from chunkpilot.spec import ChunkManifest, RunSpec

log = logging.getLogger("chunkpilot.sky")

# The run's copy of its template, written at first launch: relaunches use exactly it, from any machine.
TEMPLATE_KEY = "sky/task_template.yaml"

# queue_v2 fields the poll needs (status and job_id are always included by SkyPilot).
QUEUE_FIELDS = ("job_id", "task_id", "job_name", "task_name", "submitted_at", "end_at", "recovery_count", "status", "failure_reason")

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


# -- the SDK seam ---------------------------------------------------------------


def _import_sky():
    try:
        import sky  # the one place chunkpilot imports SkyPilot
    except ImportError as exc:
        raise ConfigError(f"the sky backend needs SkyPilot ({exc}): pip install 'chunkpilot[sky]'") from exc
    return sky


class SkySdk:
    """The real SkyPilot client SDK, reduced to what SkyBackend calls.

    ``jobs.launch / jobs.queue_v2 / jobs.cancel`` return request ids; ``get`` waits for
    one and returns its result or raises its error. ``ClusterNotUpError``: no jobs
    controller yet (nothing was ever launched). Jobs run on cloud machines, so
    they cannot read this machine's files (``local_paths_reachable``).
    """

    local_paths_reachable = False

    def __init__(self) -> None:
        sky = _import_sky()
        self.jobs = sky.jobs
        self.get = sky.get
        self.ClusterNotUpError = sky.exceptions.ClusterNotUpError


_sdk_override: Any = None


def use_sdk(sdk: Any) -> Any:
    """Make backends built from now on (``make_backend``, the CLI) use ``sdk``; None: the real one.

    Returns the previous override. For tests and for programs embedding chunkpilot.
    """
    global _sdk_override
    previous, _sdk_override = _sdk_override, sdk
    return previous


def _message(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text or type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ApiServerConnectionError", "ConnectionError", "Timeout", "TimeoutError", "ReadTimeout",
                         "ConnectTimeout", "ServerTemporarilyUnavailableError", "RequestCancelled"})


# -- the seeded catalog ---------------------------------------------------------------

_catalog_seeded = False


def _catalog_gpu_names() -> tuple[str, ...]:
    """The installed SkyPilot's own accelerator names, added to ``check_accelerators``' allow-list."""
    try:  # the installed SkyPilot's own lists, when it is importable
        from sky.utils import gpu_names  # noqa: PLC0415 (this module is where sky is imported)

        return tuple(gpu_names.CANONICAL_GPU_NAMES)
    except Exception:  # noqa: BLE001 - an older/newer layout: the built-in list stands
        return ()


def _ensure_accelerator_catalog() -> bool:
    """Let SkyPilot canonicalize accelerator names offline. Returns True if a seed is in use.

    SkyPilot reads ``$SKY_RUNTIME_DIR|~/.sky/catalogs/v8/common/accelerators.csv`` and
    downloads it when missing. When the user has it, it is used untouched. When not,
    we do not write one there: SkyPilot treats a catalog file without its download
    checksum as *user-modified*, keeps it forever and uploads it to the jobs
    controller. Instead SkyPilot's in-memory table is pointed at a seed built from
    KNOWN_ACCELERATORS, in this process only.
    """
    global _catalog_seeded
    if _catalog_seeded:
        return True
    from sky.catalog import common as catalog_common
    from sky.utils import accelerator_registry

    if os.path.exists(catalog_common.get_catalog_path("common/accelerators.csv")):
        return False
    rows = ["AcceleratorName,Clouds"]
    for name, clouds in sorted(KNOWN_ACCELERATORS.items()):
        rows.append(f'{name},"{[c for c in clouds.split()]}"')
    seed = catalog_common.LazyDataFrame(io.StringIO("\n".join(rows) + "\n"), update_if_stale_func=lambda: False)
    accelerator_registry._accelerator_df = seed  # noqa: SLF001 - documented above; pinned skypilot version
    _catalog_seeded = True
    return True


def _strip_regions(cfg: dict) -> bool:
    """Reduce ``infra: cloud/region[/zone]`` to the cloud (region checks need the cloud's catalog)."""
    changed = False
    resources = cfg.get("resources") if isinstance(cfg.get("resources"), dict) else {}
    for r in _resource_variants(resources):
        for key in ("region", "zone"):
            if r.pop(key, None) is not None:
                changed = True
        infra = r.get("infra")
        if isinstance(infra, str) and "/" in infra and not infra.lower().startswith(("k8s", "kubernetes", "ssh")):
            r["infra"] = infra.split("/", 1)[0]
            changed = True
    return changed


def build_task(cfg: dict, envs: list[tuple[str, str]], secrets: Secrets, source: str, validate: bool = True):
    """A ``sky.Task`` from a rendered config; any SkyPilot complaint becomes a ConfigError naming ``source``."""
    sky = _import_sky()
    _ensure_accelerator_catalog()
    try:
        task = sky.Task.from_yaml_config(copy.deepcopy(cfg), env_overrides=list(envs),
                                         secrets_overrides=list(secrets.overrides))
        if validate:
            with sky.Dag() as dag:
                dag.add(task)
            dag.validate(skip_file_mounts=True, skip_workdir=True)
    except ChunkpilotError:
        raise
    except Exception as exc:  # noqa: BLE001 - SkyPilot raises ValueError, its own errors, jsonschema's...
        if type(exc).__module__.startswith("requests"):
            raise  # a catalog download: the caller decides
        raise ConfigError(f"task template {source}: {_message(exc)}") from exc
    return task


def validate_task(cfg: dict, envs: list[tuple[str, str]], secrets: Secrets, source: str) -> list[str]:
    """Validate offline; returns notes about what could not be checked."""
    try:
        build_task(cfg, envs, secrets, source)
        return []
    except ConfigError:
        raise
    except Exception as exc:  # a per-cloud catalog SkyPilot could not download (offline)
        reduced = copy.deepcopy(cfg)
        if not _strip_regions(reduced):
            raise ConfigError(f"task template {source}: SkyPilot could not check it offline: {_message(exc)}") from exc
        build_task(reduced, envs, secrets, source)
        return ["region/zone not checked: SkyPilot's catalog for that cloud is not on this machine and could not be fetched"]


# -- one run's tasks ---------------------------------------------------------------


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _check_reachable(spec: RunSpec, run_uri: str, sdk: Any) -> None:
    """ConfigError if the jobs would need a path on this machine (unless the SDK runs jobs here)."""
    if getattr(sdk, "local_paths_reachable", False):
        return
    for uri in [run_uri, *(p.uri for p in spec.inputs)]:
        if _is_local(uri):
            raise ConfigError(
                f"{uri} is a path on this machine, which SkyPilot jobs in the cloud cannot read: "
                "put the inputs in object storage and use --store s3://bucket/prefix"
            )


def run_uri_of(store_uri: str, run_id: str) -> str:
    from chunkpilot.store import open_store

    return open_store(store_uri).child(run_id).uri


@dataclass
class RunTasks:
    """Renders the tasks of one run: template + overrides + per-job envs + secrets."""

    spec: RunSpec
    run_uri: str
    template: Template
    options: TaskOptions
    environ: Mapping[str, str]

    @classmethod
    def for_spec(cls, spec: RunSpec, run_uri: str, template: Template | None = None,
                 environ: Mapping[str, str] | None = None) -> "RunTasks":
        options = TaskOptions.from_spec(spec)
        template = template or Template.load(options.template)
        declared = template.config.get("secrets")
        check_user_envs(options, declared if isinstance(declared, dict) else ())
        return cls(spec, run_uri, template, options, os.environ if environ is None else environ)

    def render(self, chunk: str, attempt: int, dist: str) -> tuple[dict, list[tuple[str, str]], Secrets]:
        name = job_name(self.spec.run_id, chunk, attempt)
        try:
            cfg = apply_overrides(self.template.config, self.options, name)
        except ConfigError as exc:
            raise ConfigError(f"task template {self.template.source}: {exc}") from exc
        secrets = resolve_secrets(cfg, self.options.secrets, self.environ)
        envs = job_envs(self.spec, self.options, self.run_uri, chunk, attempt, dist, self.environ)
        return cfg, envs, secrets

    @property
    def source(self) -> str:
        extra = [f"--{k} {v}" for k, v in (("gpus", self.options.gpus), ("infra", self.options.infra)) if v]
        return self.template.source + (f" (with {' '.join(extra)})" if extra else "")

    def task(self, chunk: str, attempt: int, dist: str):
        cfg, envs, secrets = self.render(chunk, attempt, dist)
        check_accelerators(cfg, self.source, self.environ, _catalog_gpu_names())
        return build_task(cfg, envs, secrets, self.source, validate=False)


def _shape(cfg: dict, envs: list[tuple[str, str]]) -> str:
    """What SkyPilot validates, minus the per-job values it does not interpret."""
    per_job = {ENV_CHUNK_URI, ENV_ATTEMPT, ENV_RUN_ID, ENV_CHUNK}
    shape = copy.deepcopy(cfg)
    shape.pop("name", None)
    return json.dumps([shape, [(k, "" if k in per_job else v) for k, v in envs]], sort_keys=True, default=str)


@dataclass
class SkyPlan:
    tasks: RunTasks
    names: list[str]
    first: tuple[dict, list[tuple[str, str]], Secrets]
    dist: str
    notes: list[str]
    shapes: int


def plan_tasks(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str, sdk: Any = None,
               environ: Mapping[str, str] | None = None) -> SkyPlan:
    """Render every chunk's first attempt and validate each distinct task offline with SkyPilot.

    Chunks differ only in values SkyPilot does not interpret (their chunk URI), so
    SkyPilot runs once per distinct task; each chunk's rendering is still checked.
    """
    from launcher.wheel import dist_dir

    environ = os.environ if environ is None else environ
    run_uri = run_uri_of(store_uri, spec.run_id)
    tasks = RunTasks.for_spec(spec, run_uri, environ=environ)
    dist = str(dist_dir(build=False))
    notes: list[str] = []
    seen: set[str] = set()
    first = None
    names = []
    for manifest in manifests:
        cfg, envs, secrets = tasks.render(manifest.chunk, 1, dist)
        first = first or (cfg, envs, secrets)
        names.append(cfg["name"])
        shape = _shape(cfg, envs)
        if shape in seen:
            continue
        seen.add(shape)
        check_accelerators(cfg, tasks.source, environ, _catalog_gpu_names())
        for note in validate_task(cfg, envs, secrets, tasks.source):
            if note not in notes:
                notes.append(note)
    if first is None:
        raise ConfigError("nothing to launch: the run has no chunks")
    notes += _warnings(spec, tasks, first, run_uri, sdk if sdk is not None else _sdk_override)
    return SkyPlan(tasks, names, first, dist, notes, len(seen))


def _warnings(spec: RunSpec, tasks: RunTasks, first, run_uri: str, sdk: Any) -> list[str]:
    cfg, envs, secrets = first
    out = []
    if not getattr(sdk, "local_paths_reachable", False):
        local = [u for u in [run_uri, *(p.uri for p in spec.inputs)] if _is_local(u)]
        if local:
            out.append(f"{local[0]} is on this machine: cloud jobs cannot read it (launching will refuse); "
                       "use --store s3://bucket/prefix and inputs in object storage")
    if _uses_s3(spec, run_uri) and "AWS_ACCESS_KEY_ID" not in secrets.passed:
        out.append("no AWS_ACCESS_KEY_ID passed: jobs reach s3:// only through their machine's own role "
                   "(export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY to pass keys as secrets)")
    if spec.engine == "vllm":
        eo = spec.engine_options or {}
        try:
            used = int(eo.get("tensor_parallel_size", 1)) * int(eo.get("pipeline_parallel_size", 1))
        except (TypeError, ValueError):
            used = 1
        for name, count in accelerator_choices(cfg).items():
            if count != int(count):
                continue
            if count < used:
                raise ConfigError(f"task template {tasks.source}: {name}:{count:g} has fewer GPUs than vLLM's "
                                  f"tensor_parallel_size x pipeline_parallel_size = {used}")
            if count > used:
                out.append(f"{name}:{count:g} gives each job {count:g} GPUs but vLLM uses {used}: pass "
                           f"--engine-option tensor_parallel_size={count:g}")
    return out


def validate_run(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str, launching: bool = False) -> None:
    """Render and validate every chunk's task offline; ConfigError (with the template's path) if any is broken.

    With ``launching``, also refuse what would only fail at launch: a store or input
    on this machine, which cloud jobs cannot read (a dry run just warns about it).
    """
    plan = plan_tasks(spec, manifests, store_uri)
    if launching:
        _check_reachable(spec, run_uri_of(store_uri, spec.run_id), _sdk_override)
    for note in plan.notes:
        log.warning("%s", note)


# -- the dry run -------------------------------------------------------------------


def dry_run_report(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str):
    """What ``submit --backend sky`` would launch: the plan, then the first chunk's task YAML (secrets redacted)."""
    from rich.text import Text

    from launcher.render import human_bytes

    sky = _import_sky()
    plan = plan_tasks(spec, manifests, store_uri)
    cfg, envs, secrets = plan.first
    resources = cfg.get("resources") or {}
    accelerators = ", ".join(f"{n}:{c:g}" for n, c in accelerator_choices(cfg).items()) or "none (CPU only)"
    recovery = resources.get("job_recovery")
    sizes = {m.chunk: m.bytes for m in manifests}
    lines = [
        f"SkyPilot plan for run {spec.run_id}: {len(plan.names)} managed job(s), one per chunk",
        f"  template     {plan.tasks.template.source}",
        f"  model        {spec.engine}:{spec.model} (revision {spec.model_revision})",
        f"  use_spot     {str(resources.get('use_spot', False)).lower()}",
        f"  gpus         {accelerators}",
        f"  infra        {resources.get('infra') or resources.get('cloud') or 'any enabled cloud (see `sky check`)'}",
        f"  recovery     {json.dumps(recovery) if recovery is not None else 'SkyPilot default'}",
        f"  chunkpilot   {spec.chunkpilot_version}, shipped as a wheel built at launch in {plan.dist}",
        "  secrets      " + (", ".join(f"{n} (from ${n})" for n in secrets.passed) or "none")
        + (f"; not set here, left out: {', '.join(secrets.left_out)}" if secrets.left_out else ""),
        "  jobs",
    ]
    lines += [f"    {name}  {human_bytes(sizes.get(m.chunk, 0))}" for name, m in zip(plan.names, manifests)]
    raw, expanded = _worker_lines(cfg, envs)
    if raw:
        lines.append(f"  worker       {raw[0]}")
        lines.append(f"               first job: {expanded[0]}")
    lines += [f"  warning      {note}" for note in plan.notes]
    lines.append(f"--- rendered task for chunk {manifests[0].chunk} ({plan.names[0]}), secrets redacted ---")
    lines.append(yaml.dump(display_config(cfg, envs, secrets), Dumper=_BlockDumper, sort_keys=False,
                           default_flow_style=False, width=10_000).rstrip())
    lines.append("---")
    lines.append(f"validated {len(plan.names)} task(s) offline with SkyPilot {sky.__version__} "
                 f"({plan.shapes} distinct); dry run: nothing launched, nothing written")
    return Text(redact("\n".join(lines), secrets))


# -- the backend ---------------------------------------------------------------------


class SkyBackend:
    """SkyPilot managed jobs, one per chunk attempt, named ``<run>-<chunk>-a<attempt>``."""

    name = "sky"

    def __init__(self, spec: RunSpec, store_uri: str, sdk: Any = None, *, environ: Mapping[str, str] | None = None,
                 max_concurrent_launches: int = 16, dist_root: Path | None = None, retry_seconds: float = 30.0):
        self.spec = spec
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

    @classmethod
    def for_run(cls, spec: RunSpec, store_uri: str) -> "SkyBackend":
        """The backend of ``spec``'s run in the store at ``store_uri`` (cheap: SkyPilot is imported on first use)."""
        return cls(spec, store_uri, sdk=_sdk_override)

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
        run_uri = requests[0].store_uri
        _check_reachable(self.spec, run_uri, self.sdk)
        tasks = self._run_tasks(run_uri)
        if self._dist is None:
            from launcher.wheel import dist_dir

            self._dist = str(dist_dir(self.dist_root))
        built = [tasks.task(r.chunk, r.attempt, self._dist) for r in requests]
        names = [r.name for r in requests]
        first_id, first_error = self._launch_one(built[0], names[0])
        if first_error is not None and not _is_connection_error(first_error):
            raise SkyBackendError(f"SkyPilot refused to launch {names[0]}: {_message(first_error)}") from first_error
        rest: list[tuple[str | None, BaseException | None]] = []
        if len(built) > 1:
            workers = max(1, min(self.max_concurrent_launches, len(built) - 1))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sky-launch") as pool:
                rest = list(pool.map(self._launch_one, built[1:], names[1:]))
        return [first_id, *(job_id for job_id, _ in rest)]

    def _launch_one(self, task: Any, name: str) -> tuple[str | None, BaseException | None]:
        try:
            request_id = self.sdk.jobs.launch(task, name=name)
            job_ids, _handle = self.sdk.get(request_id)
        except Exception as exc:  # noqa: BLE001 - the job may exist anyway: poll finds it by name
            self._launch_errors[name] = _message(exc)
            log.warning("launch of %s got no answer (%s); it is tracked by name", name, _message(exc))
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
        deadline = time.monotonic() + self.retry_seconds
        delay = 1.0
        while True:
            try:
                request_id = self.sdk.jobs.queue_v2(refresh=False, skip_finished=False, all_users=False,
                                                    fields=list(QUEUE_FIELDS), name_match=prefix)
                records = self.sdk.get(request_id)[0]
                break
            except self.sdk.ClusterNotUpError:
                return []  # no jobs controller: nothing was ever launched (or it was torn down)
            except Exception as exc:  # noqa: BLE001
                if _is_connection_error(exc) and time.monotonic() + delay < deadline:
                    log.warning("SkyPilot API server unreachable, retrying in %.0fs: %s", delay, _message(exc))
                    time.sleep(delay)
                    delay = min(2 * delay, 10.0)
                    continue
                raise SkyBackendError(f"cannot list SkyPilot managed jobs: {_message(exc)}") from exc
        return [r for r in records or [] if str(r.get("job_name") or "").startswith(prefix)]

    def _newest_by_name(self, run_id: str, names: Iterable[str]) -> dict[str, Any]:
        wanted = set(names)
        newest: dict[str, Any] = {}
        for record in self._records(run_id):
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
            raise SkyBackendError(f"cannot cancel SkyPilot jobs {job_ids}: {_message(exc)}") from exc


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
    return JobState(normalized, detail, recoveries)


__all__ = [
    "SkyBackend", "SkySdk", "use_sdk", "validate_run", "dry_run_report", "plan_tasks", "job_state", "STATUS_MAP",
    "SkyBackendError",
]
