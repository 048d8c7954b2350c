"""Every GPU of a machine: one worker process per engine, each on its own devices, claiming chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from worker.machine import EngineProcess, combined_exit, plan_engines

REPO = Path(__file__).resolve().parents[2]


def test_one_engine_per_gpu_group():
    assert plan_engines("w3", 8) == [EngineProcess("w3" if k == 0 else f"w3e{k}", (k,)) for k in range(8)]
    assert plan_engines("w1", 8, 4) == [EngineProcess("w1", (0, 1, 2, 3)), EngineProcess("w1e1", (4, 5, 6, 7))]
    assert plan_engines("w1", 6, 4) == [EngineProcess("w1", (0, 1, 2, 3))]  # two GPUs left idle
    assert plan_engines("w1", 2, 4) == [EngineProcess("w1", (0, 1))]  # too few: vLLM says so
    assert plan_engines("w0", 0) == [EngineProcess("w0", ())]  # no GPU: CPU, one engine, no CUDA_VISIBLE_DEVICES


def test_the_job_exit_code_says_what_to_do_with_the_machine():
    assert combined_exit([0, 0]) == 0
    assert combined_exit([0, 75]) == 75  # stopped: restart the machine, every engine resumes
    assert combined_exit([1, -15]) == 75  # killed by the stop that followed a crash: still worth a restart
    assert combined_exit([0, 1, 0]) == 1
    assert combined_exit([2, 75]) == 75
    assert combined_exit([2, 0]) == 2


def _rendered_run_script(make_run, inputs: Path, tmp_path: Path):
    """The default template's run script and a job's envs, rendered by the launcher for worker w0."""
    from chunkpilot.control.skytask import RunTasks

    run = make_run([inputs], chunks=6, backend="sky", workers=1,
                   engine_options={"delay": 0.01, "batch": 2, "max_in_flight": 4})
    tasks = RunTasks.for_spec(run.spec, run.run_uri, environ={})
    cfg, envs, _ = tasks.render("w0", 1, str(tmp_path / "dist"))
    return run, cfg["run"], dict(envs)


def test_the_rendered_run_script_starts_a_worker_per_gpu(make_run, prompts, tmp_path):
    run, script, envs = _rendered_run_script(make_run, prompts, tmp_path)
    assert envs["CHUNKPILOT_GPUS_PER_ENGINE"] == "1"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    env = {**os.environ, **envs, "CHUNKPILOT_VENV": str(venv), "SKYPILOT_NUM_GPUS_PER_NODE": "2",
           "PYTHONPATH": str(REPO), "CHUNKPILOT_CLAIM_TTL": "30"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 engine(s): w0 on GPU 0, w0e1 on GPU 1" in done.stderr
    run_dir = Path(run.run_uri)
    beats = {p.parent.name: json.loads(p.read_text()) for p in (run_dir / "workers").glob("*/a1.json")}
    assert {w: b["devices"] for w, b in beats.items()} == {"w0": "0", "w0e1": "1"}
    claims = [json.loads(p.read_text()) for p in (run_dir / "claims").glob("*.json")]
    by_worker = {w: sorted(c["chunk"] for c in claims if c["worker"] == w) for w in ("w0", "w0e1")}
    assert all(by_worker.values()), by_worker  # each engine answered chunks of its own
    assert all(c["state"] == "done" for c in claims) and len(list((run_dir / "out").glob("*/_SUCCESS"))) == 6
    assert beats["w0"]["chunks_done"] + beats["w0e1"]["chunks_done"] == 6
