"""The launcher <-> machine contract of a worker job: which slot a job is, and how many engines it runs.

A job learns who it is from its environment, set by the launcher (``chunkpilot.control.skytask.job_envs``):

* ``CHUNKPILOT_WORKER`` / ``CHUNKPILOT_ATTEMPT``: the worker slot (``w3``) and which launch of it
  this job is — one job per launch request, the plain case.
* ``CHUNKPILOT_MEMBERS`` (``w3:2,w5:2``) with SkyPilot's ``SKYPILOT_JOB_RANK``: one request
  launched several jobs (``sky.jobs.launch(task, pool=..., num_jobs=M)``); the job of rank r is
  member r. SkyPilot numbers ranks per request (a relaunch starts again at 0), so the list — not
  the rank alone — names the slot, and a job restarted by SkyPilot (preemption, recovery) keeps
  its envs and rank, hence its identity, and takes its own claims back at once.
* ``CHUNKPILOT_GPUS_PER_ENGINE``: GPUs one engine uses (vLLM's tensor x pipeline parallel size);
  with ``SKYPILOT_NUM_GPUS_PER_NODE`` it decides how many engine processes the machine runs.

Pure functions; ``worker.machine`` applies them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from chunkpilot.errors import ConfigError
from chunkpilot.names import validate_worker_id

ENV_MEMBERS = "CHUNKPILOT_MEMBERS"
ENV_GPUS_PER_ENGINE = "CHUNKPILOT_GPUS_PER_ENGINE"
ENV_ENGINES = "CHUNKPILOT_ENGINES"  # set by worker.machine for each engine process: how many share the machine
SKY_RANK = "SKYPILOT_JOB_RANK"
SKY_GPUS = "SKYPILOT_NUM_GPUS_PER_NODE"


def encode_members(members: Iterable[tuple[str, int]]) -> str:
    """``[("w3", 2), ("w5", 2)]`` -> ``"w3:2,w5:2"``: rank r of the request is entry r."""
    return ",".join(f"{validate_worker_id(slot)}:{int(attempt)}" for slot, attempt in members)


def decode_members(text: str) -> list[tuple[str, int]]:
    """The inverse of ``encode_members``; ConfigError for anything else."""
    out = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        slot, _, attempt = item.partition(":")
        if not attempt.isdigit() or int(attempt) < 1:
            raise ConfigError(f"${ENV_MEMBERS}: {item!r} is not <worker>:<attempt>")
        out.append((validate_worker_id(slot), int(attempt)))
    return out


def job_identity(environ: Mapping[str, str]) -> tuple[str, int]:
    """(slot, attempt) of the job whose environment is ``environ`` (see the module docstring).

    ConfigError when neither form is there, or the rank is past the member list.
    """
    members = environ.get(ENV_MEMBERS, "").strip()
    if members:
        listed = decode_members(members)
        rank_text = environ.get(SKY_RANK, "0").strip() or "0"
        if not rank_text.isdigit() or int(rank_text) >= len(listed):
            raise ConfigError(f"${SKY_RANK}={rank_text!r} does not name one of the {len(listed)} jobs of ${ENV_MEMBERS}")
        return listed[int(rank_text)]
    worker = environ.get("CHUNKPILOT_WORKER", "").strip()
    if not worker:
        raise ConfigError(f"neither ${ENV_MEMBERS} nor $CHUNKPILOT_WORKER is set: the launcher sets one of them")
    attempt = environ.get("CHUNKPILOT_ATTEMPT", "1").strip() or "1"
    if not attempt.isdigit():
        raise ConfigError(f"$CHUNKPILOT_ATTEMPT={attempt!r} is not a number")
    return validate_worker_id(worker), int(attempt)


def gpus_per_engine(engine_options: Mapping[str, object] | None) -> int:
    """GPUs one vLLM engine takes: ``tensor_parallel_size x pipeline_parallel_size`` (1 by default)."""
    eo = engine_options or {}
    try:
        return max(1, int(eo.get("tensor_parallel_size", 1) or 1) * int(eo.get("pipeline_parallel_size", 1) or 1))
    except (TypeError, ValueError):
        return 1
