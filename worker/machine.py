"""``python -m worker.machine``: a worker job's run command — every GPU of the machine answers.

vLLM runs one engine per process (offline data parallelism is gone: one process per GPU group is
the supported way), so a job on a machine with G GPUs starts ``G // P`` worker processes, P being
the GPUs one engine needs (``CHUNKPILOT_GPUS_PER_ENGINE``: tensor x pipeline parallel size). Engine
k gets ``CUDA_VISIBLE_DEVICES`` = GPUs ``k*P .. k*P+P-1`` and the worker id
``engine_worker_id(slot, k)`` (``w3``, ``w3e1``...), so its claims, heartbeats and parts are its own.

* One engine (a one-GPU machine, CPU, or TP across all GPUs): the worker replaces this process
  (``exec``), exactly as if the run command started it — signals reach it directly.
* Several: they run side by side; SIGTERM/SIGINT (a preemption notice, a cancel) are passed on to
  each. The machine is one unit of recovery: when one engine ends with an error, the others are
  asked to stop (they commit, release their claims and exit 75) and the job exits with
  ``combined_exit`` — 75 (SkyPilot restarts the job; every engine resumes from committed output),
  the crash's code, 2 (configuration error) — or 0 once every engine found nothing left to claim.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from chunkpilot.errors import ConfigError
from chunkpilot.fleet import ENV_ENGINES, ENV_GPUS_PER_ENGINE, SKY_GPUS, job_identity
from chunkpilot.names import engine_worker_id

log = logging.getLogger("chunkpilot.machine")

EXIT_DONE, EXIT_CONFIG, EXIT_PREEMPTED = 0, 2, 75


@dataclass(frozen=True)
class EngineProcess:
    """One worker process of the machine: its worker id and the GPUs it sees (empty: no GPU given)."""

    worker: str
    devices: tuple[int, ...]

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(d) for d in self.devices)


def plan_engines(slot: str, gpus: int, gpus_per_engine: int = 1) -> list[EngineProcess]:
    """The engine processes a machine with ``gpus`` GPUs runs for worker slot ``slot``.

    ``gpus // gpus_per_engine`` engines on consecutive GPUs; GPUs left over stay idle. No GPU
    (CPU, or SkyPilot did not say): one engine with no devices. Fewer GPUs than one engine needs:
    one engine on all of them (vLLM then says what is wrong).
    """
    per = max(1, gpus_per_engine)
    if gpus <= 0:
        return [EngineProcess(slot, ())]
    count = max(1, gpus // per)
    if gpus < per:
        return [EngineProcess(slot, tuple(range(gpus)))]
    return [EngineProcess(engine_worker_id(slot, k), tuple(range(k * per, (k + 1) * per))) for k in range(count)]


def combined_exit(codes: Sequence[int]) -> int:
    """The job's exit code from its engines' (a negative code: killed by that signal).

    Any engine stopped early (75, or killed) -> 75: worth restarting the machine, and every engine
    resumes. Else a crash (another non-zero code) -> the first one. Else a configuration error
    (2) -> 2. Else 0.
    """
    if any(c == EXIT_PREEMPTED or c < 0 for c in codes):
        return EXIT_PREEMPTED
    crashes = [c for c in codes if c not in (EXIT_DONE, EXIT_CONFIG)]
    if crashes:
        return crashes[0]
    return EXIT_CONFIG if EXIT_CONFIG in codes else EXIT_DONE


def worker_command(python: str, run_uri: str, engine: EngineProcess, attempt: int) -> list[str]:
    return [python, "-m", "worker", "--run", run_uri, "--worker", engine.worker, "--attempt", str(attempt)]


def engine_env(environ: Mapping[str, str], engine: EngineProcess, engines: int) -> dict[str, str]:
    env = {**environ, "CHUNKPILOT_WORKER": engine.worker, ENV_ENGINES: str(engines)}
    if engine.devices:
        env["CUDA_VISIBLE_DEVICES"] = engine.cuda_visible_devices
    return env


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"${name}={value!r} is not a whole number") from exc


def run_machine(environ: Mapping[str, str], python: str = sys.executable) -> int:
    """Start this machine's engines and wait for them; the job's exit code (see the module docstring)."""
    run_uri = environ.get("CHUNKPILOT_RUN_URI", "").strip()
    if not run_uri:
        raise ConfigError("$CHUNKPILOT_RUN_URI is not set: the launcher sets it for every job")
    slot, attempt = job_identity(environ)
    gpus = _int_env(environ, SKY_GPUS, 0)
    per = _int_env(environ, ENV_GPUS_PER_ENGINE, 1)
    engines = plan_engines(slot, gpus, per)
    if gpus > len(engines) * per:
        log.warning("%d GPU(s) idle: %d engine(s) of %d GPU(s) each use %d of %d", gpus - len(engines) * per,
                    len(engines), per, len(engines) * per, gpus)
    log.info("launch %d of %s: %d engine(s): %s", attempt, slot, len(engines),
             ", ".join(f"{e.worker} on GPU {e.cuda_visible_devices or '-'}" for e in engines))
    if len(engines) == 1:
        engine = engines[0]
        os.execvpe(python, worker_command(python, run_uri, engine, attempt), engine_env(environ, engine, 1))
    children = [subprocess.Popen(worker_command(python, run_uri, e, attempt), env=engine_env(environ, e, len(engines)))
                for e in engines]
    return wait_all(children)


def wait_all(children: list[subprocess.Popen]) -> int:
    """Wait for every child, passing SIGTERM/SIGINT on; the first error stops the others."""
    def forward(signum, _frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes: dict[int, int] = {}
    stopping = False
    while len(codes) < len(children):
        pid, status = os.wait()
        child = next((c for c in children if c.pid == pid), None)
        if child is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        child.returncode = code
        codes[pid] = code
        if code != EXIT_DONE and not stopping:
            stopping = True
            log.warning("engine process %d exited %d: stopping the others", pid, code)
            forward(signal.SIGTERM, None)
    return combined_exit([codes[c.pid] for c in children])


def main() -> None:
    logging.basicConfig(level=os.environ.get("CHUNKPILOT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        sys.exit(run_machine(os.environ))
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(EXIT_CONFIG)


if __name__ == "__main__":
    main()
