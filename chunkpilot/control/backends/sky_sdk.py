"""The SkyPilot SDK adapter: the only module that imports ``sky``, and only inside functions.

* ``SkySdk``: the real client SDK reduced to what the backend calls (``jobs.launch``,
  ``jobs.queue_v2``, ``jobs.cancel``, ``get``); ``use_sdk`` swaps in another with the same
  signatures (tests' fake, which ``test_sky.py`` checks against the installed package).
* ``build_task`` / ``validate_task``: a rendered task config as a ``sky.Task``, validated
  offline with SkyPilot's own ``Dag.validate``; SkyPilot's complaints become ConfigErrors
  naming the template.
* The accelerator catalog SkyPilot needs offline, seeded in memory (never written to ``~/.sky``).
* ``message`` / ``is_connection_error``: SkyPilot's exceptions, read in one place.
"""

from __future__ import annotations

import copy
import io
import os
import re
from typing import Any

from chunkpilot.errors import ChunkpilotError, ConfigError
from chunkpilot.control.skytask import KNOWN_ACCELERATORS, Secrets, resource_variants


def import_sky():
    try:
        import sky  # the one place chunkpilot imports SkyPilot
    except ImportError as exc:
        raise ConfigError(f"the sky backend needs SkyPilot ({exc}): pip install 'chunkpilot[sky]'") from exc
    return sky


class SkySdk:
    """The real SkyPilot client SDK, reduced to what SkyBackend and ``chunkpilot.control.pools`` call.

    ``jobs.launch / jobs.queue_v2 / jobs.cancel / jobs.pool_apply / jobs.pool_status /
    jobs.pool_down`` return request ids; ``get`` waits for
    one and returns its result or raises its error. ``ClusterNotUpError``: no jobs
    controller yet (nothing was ever launched). Jobs run on cloud machines, so
    they cannot read this machine's files (``local_paths_reachable``).
    """

    local_paths_reachable = False

    def __init__(self) -> None:
        sky = import_sky()
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


def sdk_override() -> Any:
    """The SDK ``use_sdk`` set, or None for the real one."""
    return _sdk_override


def message(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text or type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ApiServerConnectionError", "ConnectionError", "Timeout", "TimeoutError", "ReadTimeout",
                         "ConnectTimeout", "ServerTemporarilyUnavailableError", "RequestCancelled"})


# -- the seeded catalog ---------------------------------------------------------------

_catalog_seeded = False


def catalog_gpu_names() -> tuple[str, ...]:
    """The installed SkyPilot's own accelerator names, added to ``check_accelerators``' allow-list."""
    try:  # the installed SkyPilot's own lists, when it is importable
        from sky.utils import gpu_names  # noqa: PLC0415 (this module is where sky is imported)

        return tuple(gpu_names.CANONICAL_GPU_NAMES)
    except Exception:  # noqa: BLE001 - an older/newer layout: the built-in list stands
        return ()


def ensure_accelerator_catalog() -> bool:
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
    for r in resource_variants(resources):
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
    sky = import_sky()
    ensure_accelerator_catalog()
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
        raise ConfigError(f"task template {source}: {message(exc)}") from exc
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
            raise ConfigError(f"task template {source}: SkyPilot could not check it offline: {message(exc)}") from exc
        build_task(reduced, envs, secrets, source)
        return ["region/zone not checked: SkyPilot's catalog for that cloud is not on this machine and could not be fetched"]


def validate_pool(cfg: dict, envs: list[tuple[str, str]], secrets: Secrets, source: str):
    """A pool's ``sky.Task``, validated offline as a task and as a pool (SkyPilot's own
    ``validate_service_task``: no job_recovery, spot all or none, no ordered resources)."""
    task = build_task(cfg, envs, secrets, source)
    from sky.serve import serve_utils

    try:
        serve_utils.validate_service_task(task, pool=True)
    except Exception as exc:  # noqa: BLE001 - SkyPilot raises ValueError / RuntimeError
        raise ConfigError(f"pool from {source}: {message(exc)}") from exc
    return task


def rolling_update_mode():
    """``serve_utils.UpdateMode.ROLLING``, what ``sky jobs pool apply`` uses by default."""
    import_sky()
    from sky.serve import serve_utils

    return serve_utils.UpdateMode.ROLLING


def sky_version() -> str:
    return str(import_sky().__version__)


# -- prices ------------------------------------------------------------------------------


def catalog_price(cloud: str, use_spot: bool, *, instance_type: str | None = None,
                  accelerators: dict[str, float] | None = None, region: str | None = None,
                  zone: str | None = None) -> tuple[float, str]:
    """The hourly price (USD) SkyPilot's catalog gives, and the instance type it is for.

    With ``instance_type``, that instance's; else the cheapest instance carrying
    ``accelerators``. In ``region``/``zone`` when given, else the cheapest anywhere (as
    ``sky.catalog`` does). The catalog is SkyPilot's local copy
    (``$SKY_RUNTIME_DIR|~/.sky/catalogs/v8/<cloud>/vms.csv``); SkyPilot downloads it when it is
    missing. LookupError with a readable reason when there is no price.
    """
    import contextlib
    import logging

    sky = import_sky()
    catalog = sky.catalog
    cloud_name = cloud.lower()
    quiet = logging.getLogger("sky.catalog.common")  # "Failed to fetch ... catalog": we say it better
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress output
            if instance_type is None:
                if not accelerators:
                    raise LookupError("no instance type or accelerators to price")
                name, count = next(iter(accelerators.items()))
                found, _fuzzy = catalog.get_instance_type_for_accelerator(
                    name, count, use_spot=use_spot, region=region, zone=zone, clouds=cloud_name)
                if not found:
                    raise LookupError(f"{cloud} offers no {name}:{count:g}" + (f" in {region}" if region else ""))
                instance_type = found[0]
            price = catalog.get_hourly_cost(instance_type, use_spot, region, zone, clouds=cloud_name)
    except LookupError:
        raise
    except Exception as exc:  # noqa: BLE001 - SkyPilot's own errors (no catalog offline, unknown cloud...)
        if is_connection_error(exc):
            raise LookupError(f"SkyPilot's {cloud} catalog is not on this machine and could not be downloaded "
                              f"(`sky show-gpus --infra {cloud_name}` fetches it)") from exc
        raise LookupError(f"SkyPilot's {cloud} catalog has no price: {message(exc).splitlines()[0]}") from exc
    finally:
        quiet.disabled = was_disabled
    return float(price), instance_type


def cached_catalog_clouds() -> list[str]:
    """Clouds whose SkyPilot catalog is already on this machine (no download needed)."""
    from sky.catalog import common as catalog_common

    root = os.path.dirname(catalog_common.get_catalog_path("x"))
    try:
        return sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "vms.csv")))
    except OSError:
        return []
