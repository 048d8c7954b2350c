"""SkyPilot pools for a run's workers: ``launcher pool up|status|down NAME``.

A pool is a set of warm SkyPilot machines whose setup (the vLLM install) ran once; a run submitted
with ``--pool NAME`` launches its workers as jobs exec'd onto them (``SkyBackend._launch_on_pool``,
``num_jobs`` per request). The pool's YAML is rendered from the same task template as the jobs
(``chunkpilot.control.skytask.pool_config``) and validated offline the way SkyPilot validates a pool, before
anything is sent. These functions are the library path; the CLI only parses and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from chunkpilot.errors import ConfigError
from chunkpilot.control.backends.sky_sdk import SkySdk, build_task, message, rolling_update_mode, sdk_override, validate_pool
from chunkpilot.control.skytask import Secrets, TaskOptions, Template, pool_config, resolve_secrets, check_user_envs, ENV_DIST


@dataclass(frozen=True)
class PoolPlan:
    """What ``pool up`` applies: the rendered pool config, its env overrides and secrets."""

    name: str
    config: dict
    envs: list[tuple[str, str]]
    secrets: Secrets
    source: str


def plan_pool(name: str, workers: int, options: TaskOptions, environ: Mapping[str, str], dist: str) -> PoolPlan:
    """Render the pool ``name`` of ``workers`` machines from ``options``' template; validate it offline."""
    if workers < 1:
        raise ConfigError("--workers: a pool needs at least one worker")
    template = Template.load(options.template)
    declared = template.config.get("secrets")
    check_user_envs(options, declared if isinstance(declared, dict) else ())
    try:
        cfg = pool_config(template.config, options, name, workers)
    except ConfigError as exc:
        raise ConfigError(f"task template {template.source}: {exc}") from exc
    secrets = resolve_secrets(cfg, options.secrets, environ)
    envs = [(ENV_DIST, dist), *sorted(options.envs.items())]
    validate_pool(cfg, envs, secrets, template.source)
    return PoolPlan(name, cfg, envs, secrets, template.source)


def _sdk(sdk: Any) -> Any:
    return sdk if sdk is not None else (sdk_override() or SkySdk())


def pool_up(plan: PoolPlan, sdk: Any = None) -> None:
    """Create the pool, or update it in place (rolling), with ``sky.jobs.pool_apply``."""
    sdk = _sdk(sdk)
    task = build_task(plan.config, plan.envs, plan.secrets, plan.source, validate=False)
    try:
        sdk.get(sdk.jobs.pool_apply(task, plan.name, mode=rolling_update_mode()))
    except Exception as exc:  # noqa: BLE001 - SkyPilot's errors, read in one place
        raise ConfigError(f"SkyPilot did not apply pool {plan.name}: {message(exc)}") from exc


def pool_status(name: str | None, sdk: Any = None) -> list[dict]:
    """``sky.jobs.pool_status``: one dict per pool (``name``, ``status``, ``replica_info``...)."""
    sdk = _sdk(sdk)
    try:
        return list(sdk.get(sdk.jobs.pool_status(name)) or [])
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"SkyPilot could not show pool {name or '(all)'}: {message(exc)}") from exc


def pool_down(name: str, sdk: Any = None) -> None:
    """``sky.jobs.pool_down``: tear the pool's machines down (jobs on it are cancelled by SkyPilot)."""
    sdk = _sdk(sdk)
    try:
        sdk.get(sdk.jobs.pool_down(name))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"SkyPilot did not take pool {name} down: {message(exc)}") from exc


def status_lines(rows: list[dict]) -> list[str]:
    """One line per pool: name, status, workers ready of wanted. Pure."""
    out = []
    for row in rows:
        replicas = row.get("replica_info") or []
        ready = sum(1 for r in replicas if str(getattr(r.get("status"), "value", r.get("status"))) == "READY")
        status = getattr(row.get("status"), "value", row.get("status"))
        out.append(f"{row.get('name')}: {status} · {ready}/{row.get('target_num_replicas', len(replicas))} workers ready")
    return out


__all__ = ["PoolPlan", "plan_pool", "pool_up", "pool_status", "pool_down", "status_lines"]
