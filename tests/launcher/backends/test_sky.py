"""The SkyPilot backend: templates, offline validation, the dry run, status mapping, and whole runs.

Whole runs go submit -> watch -> collect through the CLI with a fake SkyPilot SDK
(tests/fakesky.py) whose jobs run the real worker; SkyPilot itself (the real
library, 0.14.1) renders and validates every task. No API server is ever started
(see conftest.py).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from chunkpilot.errors import ConfigError
from chunkpilot.control.backends.base import JobState, JobStatus, LaunchRequest
from chunkpilot.control.submit import SubmitOptions, plan_run

SECRET = "hf_SECRETVALUE123"


# -- helpers ---------------------------------------------------------------------


def write_input(path: Path, records: int) -> Path:
    with open(path, "w") as f:
        for i in range(records):
            f.write(json.dumps({"custom_id": f"r{i:04d}", "prompt": f"tell me about item number {i} please"}) + "\n")
    return path


def plan(tmp_path: Path, chunks: int = 2, records: int = 20, engine: str = "echo", **backend_options):
    options = {"template": None, "gpus": None, "infra": None, "envs": {}, "secrets": [], "use_spot": None}
    options.update(backend_options)
    planned = plan_run(SubmitOptions(
        inputs=(str(write_input(tmp_path / "in.jsonl", records)),), chunks=chunks, store_uri=str(tmp_path / "runs"),
        engine="echo", backend="sky", run_name="unit", template=options["template"], backend_options=options,
    ))
    # Planned with echo (no model to resolve); the sky backend only looks at the engine's name and options.
    return replace(planned, spec=planned.spec.with_(engine=engine))


def cli(*args: str, env: dict | None = None):
    from launcher.cli import cli as launcher_cli

    # A wide console: rich folds long lines (paths) at 80 columns when output is not a terminal.
    result = CliRunner(mix_stderr=False).invoke(launcher_cli, list(args), env={"COLUMNS": "1000", **(env or {})},
                                                catch_exceptions=False)
    return result


def flat(text: str) -> str:
    """Rich wraps long lines at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


def broken_template(tmp_path: Path, old: str, new: str) -> Path:
    from chunkpilot.control.skytask import find_template

    text = find_template(None).read_text()
    assert old in text, old
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- the fake mirrors the real SDK -------------------------------------------------------


def test_fake_sdk_has_the_real_signatures(sky, tmp_path):
    from tests.fakesky import FakeSky

    fake = FakeSky(tmp_path)
    pairs = [(fake.jobs.launch, sky.jobs.launch), (fake.jobs.queue_v2, sky.jobs.queue_v2),
             (fake.jobs.cancel, sky.jobs.cancel), (fake.get, sky.get), (fake.jobs.pool_apply, sky.jobs.pool_apply),
             (fake.jobs.pool_status, sky.jobs.pool_status), (fake.jobs.pool_down, sky.jobs.pool_down)]
    for mine, real in pairs:
        ours = [(p.name, p.kind, p.default) for p in inspect.signature(mine).parameters.values()]
        theirs = [(p.name, p.kind, p.default) for p in inspect.signature(real).parameters.values()]
        assert ours == theirs, real.__name__
    assert fake.ClusterNotUpError is sky.exceptions.ClusterNotUpError


def test_the_real_sdk_cannot_start_a_server_here(sky, tmp_path):
    from chunkpilot.control.backends.sky import SkyBackend, SkyBackendError
    from chunkpilot.control.backends.sky_sdk import SkySdk

    p = plan(tmp_path)
    backend = SkyBackend(p.spec, str(tmp_path / "runs"), sdk=SkySdk(), retry_seconds=0)
    started = time.monotonic()
    with pytest.raises(SkyBackendError):
        backend.poll("unit", ["unit-w0-a1"])
    assert time.monotonic() - started < 15


# -- templates ------------------------------------------------------------------------


def test_shipped_templates_are_found_by_name():
    from chunkpilot.control.skytask import DEFAULT_TEMPLATE, find_template, shipped_templates

    names = [p.name for p in shipped_templates()]
    assert DEFAULT_TEMPLATE == "vllm-spot.yaml" and {"vllm-spot.yaml", "vllm-tp-ondemand.yaml"} <= set(names)
    assert find_template("vllm-tp-ondemand") == find_template("vllm-tp-ondemand.yaml")
    with pytest.raises(ConfigError, match="not found.*vllm-spot"):
        find_template("no-such-template")


@pytest.mark.parametrize("template", ["vllm-spot", "vllm-tp-ondemand"])
def test_every_shipped_template_validates_with_skypilot(sky, tmp_path, template):
    from chunkpilot.control.backends.sky import plan_tasks, validate_run
    from chunkpilot.control.skytask import ENV_ATTEMPT, ENV_DIST, ENV_RUN_URI, ENV_WORKER

    p = plan(tmp_path, chunks=3, engine="vllm" if "tp" not in template else "echo", template=template)
    validate_run(p.spec, p.manifests, str(tmp_path / "runs"))
    result = plan_tasks(p.spec, p.manifests, str(tmp_path / "runs"))
    assert result.names == ["unit-w0-a1", "unit-w1-a1", "unit-w2-a1"]  # sky: a worker per chunk by default
    cfg, envs, _ = result.first
    raw = yaml.safe_load(Path(result.tasks.template.source).read_text())
    assert {ENV_RUN_URI, ENV_WORKER, ENV_ATTEMPT, ENV_DIST} <= {k for k, v in raw["envs"].items() if v is None}
    assert raw["resources"]["job_recovery"]["recover_on_exit_codes"] == [75]
    assert "python -m worker" in cfg["run"]
    assert not (tmp_path / "runs" / "unit").exists(), "validation wrote to the store"


def test_validation_leaves_the_users_sky_catalog_alone(sky, sky_sandbox, tmp_path):
    from chunkpilot.control.backends.sky import validate_run

    p = plan(tmp_path, gpus="H100:1")
    validate_run(p.spec, p.manifests, str(tmp_path / "runs"))
    assert not (sky_sandbox / ".sky" / "catalogs" / "v8" / "common" / "accelerators.csv").exists()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("  use_spot: true", "  use_spott: true", "did you mean 'use_spot'"),
        ("strategy: EAGER_NEXT_REGION", "strategy: EAGER_NEXT_REGIO", "not a valid jobs recovery strategy"),
        ("{L4: 1, A10G: 1,", "{L4O: 1, A10G: 1,", "unknown accelerator 'L4O' (did you mean L4"),
        ("  CHUNKPILOT_LOG_LEVEL: INFO", "  CHUNKPILOT_LOG_LEVEL: INFO\n  MODEL_BUCKET: null",
         "Environment variable 'MODEL_BUCKET' is None"),
    ],
    ids=["typo-key", "bad-strategy", "unknown-gpu", "missing-required-env"],
)
def test_a_broken_template_fails_validation_with_skypilots_message_and_its_path(sky, tmp_path, old, new, message):
    from chunkpilot.control.backends.sky import validate_run

    path = broken_template(tmp_path, old, new)
    p = plan(tmp_path, template=str(path))
    with pytest.raises(ConfigError) as err:
        validate_run(p.spec, p.manifests, str(tmp_path / "runs"))
    assert str(path) in str(err.value) and message in str(err.value)
    # The CLI shows it as one line, before anything is written.
    result = cli("submit", str(tmp_path / "in.jsonl"), "--chunks", "2", "--backend", "sky", "--engine", "echo",
                 "--store", str(tmp_path / "runs"), "--template", str(path))
    assert result.exit_code == 1 and message in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_an_unknown_gpu_on_the_command_line_is_refused(sky, tmp_path):
    from chunkpilot.control.backends.sky import validate_run

    p = plan(tmp_path, gpus="H10O:1")
    with pytest.raises(ConfigError, match=r"with --gpus H10O:1\): unknown accelerator 'H10O' \(did you mean H100"):
        validate_run(p.spec, p.manifests, str(tmp_path / "runs"))


def test_a_region_is_validated_offline_as_far_as_skypilot_can(sky, tmp_path):
    from chunkpilot.control.backends.sky import plan_tasks

    # Checking a region needs that cloud's catalog, which SkyPilot downloads: offline, the cloud is still checked.
    p = plan(tmp_path, infra="gcp/us-central1", gpus="L4:1")
    result = plan_tasks(p.spec, p.manifests, str(tmp_path / "runs"))
    assert result.first[0]["resources"]["infra"] == "gcp/us-central1"
    p = plan(tmp_path, infra="nocloud/us-central1")
    with pytest.raises(ConfigError, match="task template .*vllm-spot.yaml.*nocloud"):
        plan_tasks(p.spec, p.manifests, str(tmp_path / "runs"))


def test_overrides_replace_the_templates_choices():
    from chunkpilot.control.skytask import TaskOptions, Template, accelerator_choices, apply_overrides

    template = Template.load("vllm-spot").config
    template["resources"]["any_of"] = [{"accelerators": "A100:1", "infra": "gcp"}, {"accelerators": "H100:1"}]
    cfg = apply_overrides(template, TaskOptions(gpus="L4:1", infra="aws/us-east-1", use_spot=False), "r-w0-a1")
    assert cfg["name"] == "r-w0-a1"
    assert accelerator_choices(cfg) == {"L4": 1.0}
    assert cfg["resources"]["infra"] == "aws/us-east-1" and cfg["resources"]["use_spot"] is False
    assert cfg["resources"].get("any_of") is None  # alternatives emptied by the overrides are dropped
    unchanged = apply_overrides(template, TaskOptions(), "x")
    assert unchanged["resources"]["use_spot"] is True and len(unchanged["resources"]["any_of"]) == 2
    assert set(accelerator_choices(unchanged)) == {"L4", "A10G", "L40S", "A100", "A100-80GB", "H100"}


def test_credentials_go_in_secrets_never_in_envs(sky, tmp_path, monkeypatch):
    from chunkpilot.control.backends.sky import validate_run

    for bad in ({"HF_TOKEN": "x"}, {"MY_API_KEY": "x"}, {"CHUNKPILOT_ATTEMPT": "3"}):
        p = plan(tmp_path, envs=bad)
        with pytest.raises(ConfigError, match="--env"):
            validate_run(p.spec, p.manifests, str(tmp_path / "runs"))
    p = plan(tmp_path, secrets=["NOT_SET_TOKEN"])
    with pytest.raises(ConfigError, match=r"\$NOT_SET_TOKEN is not set"):
        validate_run(p.spec, p.manifests, str(tmp_path / "runs"))


# -- the dry run --------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_the_rendered_task_without_secrets(sky, sky_sandbox, tmp_path):
    write_input(tmp_path / "in.jsonl", 30)
    store = tmp_path / "runs"
    result = cli("submit", str(tmp_path / "in.jsonl"), "--chunks", "3", "--backend", "sky", "--engine", "echo",
                 "--store", str(store), "--run-name", "demo", "--secret", "HF_TOKEN", "--env", "FOO=bar", "--dry-run",
                 env={"HF_TOKEN": SECRET})
    assert result.exit_code == 0, result.stderr
    out = flat(result.stdout)
    # sky defaults to a worker per chunk: three worker jobs, each free to take any chunk.
    assert "3 managed job(s), one per worker, pulling 3 chunk(s)" in out
    for name in ("demo-w0-a1", "demo-w1-a1", "demo-w2-a1"):
        assert name in out
    assert "demo-0000" not in out
    assert "use_spot: true" in out
    assert "exec python -m worker.machine" in out and "one worker process per 1 GPU(s) of the machine" in out
    assert f"python -m worker --run \"{store}/demo\" --worker \"w0\" --attempt \"1\"" in out
    assert "HF_TOKEN: <redacted>" in out and "FOO: bar" in out
    assert "validated 3 task(s) offline with SkyPilot 0.14.1" in out
    # The rendered task is the YAML SkyPilot gets (bar the redacted secret).
    rendered = result.stdout.split("secrets redacted ---\n", 1)[1].rsplit("\n---\n", 1)[0]
    assert yaml.safe_load(rendered)["resources"]["job_recovery"]["strategy"] == "EAGER_NEXT_REGION"
    assert SECRET not in result.stdout + result.stderr
    assert not store.exists(), "a dry run wrote to the store"
    for path in [*sky_sandbox.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    on_demand = cli("submit", str(tmp_path / "in.jsonl"), "--chunks", "2", "--backend", "sky", "--engine", "echo",
                    "--store", str(store), "--no-use-spot", "--gpus", "L4:1", "--infra", "aws", "--dry-run")
    assert on_demand.exit_code == 0, on_demand.stderr
    out = flat(on_demand.stdout)
    assert "use_spot: false" in out and "accelerators: L4:1" in out and "infra: aws" in out and "H100" not in out


def test_a_hub_dataset_reaches_jobs_with_hf_token_as_a_secret_never_written(sky, sky_sandbox, hf_hub, tmp_path):
    sha = hf_hub.push("org/gated", {"train.jsonl": b'{"prompt": "hi"}\n' * 20}, gated=True, token=SECRET)
    args = ("submit", "hf://datasets/org/gated", "--chunks", "2", "--backend", "sky", "--engine", "echo",
            "--store", str(tmp_path / "runs"), "--dry-run")
    result = cli(*args, env={"HF_TOKEN": SECRET})
    assert result.exit_code == 0, result.stderr
    out = flat(result.stdout)
    assert f"hf://datasets/org/gated@{sha}/train.jsonl jsonl, uncompressed, 340 B, commit {sha}" in out
    assert "HF_TOKEN: <redacted>" in out and f"HF_ENDPOINT: {hf_hub.endpoint}" in out
    assert "no HF_TOKEN passed" not in out
    assert SECRET not in result.stdout + result.stderr
    for path in [*sky_sandbox.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    hf_hub.push("org/open", {"train.jsonl": b'{"prompt": "hi"}\n' * 20})
    result = cli(*args[:1], "hf://datasets/org/open", *args[2:])
    assert result.exit_code == 0, result.stderr
    assert "no HF_TOKEN passed: jobs read the hf://datasets inputs anonymously" in flat(result.stdout)


def test_the_dry_run_prices_a_job_from_skypilots_catalog_or_the_users_price(sky, sky_catalog, tmp_path):
    write_input(tmp_path / "in.jsonl", 10)
    common = ("submit", str(tmp_path / "in.jsonl"), "--chunks", "1", "--backend", "sky", "--engine", "echo",
              "--store", str(tmp_path / "runs"), "--dry-run")
    spot = flat(cli(*common, "--gpus", "L4:1", "--infra", "aws").stdout)
    assert "price L4:1 $0.3208/h spot (on demand $0.8048/h) · SkyPilot catalog: aws cheapest region g6.xlarge spot" in spot
    in_region = flat(cli(*common, "--gpus", "A10G:1", "--infra", "aws/us-east-1", "--no-use-spot").stdout)
    assert "price A10G:1 $1.006/h · SkyPilot catalog: aws us-east-1 g5.xlarge" in in_region
    unknown = flat(cli(*common, "--gpus", "H100:1", "--infra", "aws").stdout)
    assert "price H100:1 on aws: aws offers no H100:1 (pass --price-per-hour)" in unknown
    # Every accelerator the template allows, in every cloud whose catalog is on this machine.
    default = flat(cli(*common).stdout)
    assert "L4:1 $0.3208/h spot" in default and "A10G:1 $0.438/h spot" in default and "L40S:1 on aws: aws offers no L40S:1" in default
    given = flat(cli(*common, "--price-per-hour", "0.25", "--on-demand-price-per-hour", "0.9").stdout)
    assert "price $0.25/h per job (--price-per-hour), on demand $0.9/h" in given


@pytest.mark.parametrize("model, refused", [(None, "the bundled model smollm2-135m-instruct (for local runs)"),
                                            ("LOCAL", "is a folder on this machine")])
def test_a_model_a_cloud_machine_cannot_load_is_refused_before_anything_runs(tmp_path, model, refused):
    write_input(tmp_path / "in.jsonl", 10)
    if model == "LOCAL":
        model = tmp_path / "my-model"
        model.mkdir()
        (model / "config.json").write_text("{}")
    args = ["submit", str(tmp_path / "in.jsonl"), "--chunks", "1", "--backend", "sky", "--store", str(tmp_path / "runs"), "--dry-run"]
    result = cli(*args, *(["--model", str(model)] if model else []))
    assert result.exit_code == 1 and refused in flat(result.stderr)
    assert "--model Qwen/Qwen2.5-7B-Instruct" in result.stderr and "s3://bucket/models/name/" in result.stderr


def test_a_hub_model_or_a_model_folder_in_object_storage_is_accepted(sky, tmp_path, s3_bucket, s3_admin_client):
    write_input(tmp_path / "in.jsonl", 10)
    s3_admin_client.put_object(Bucket=s3_bucket, Key="models/m/config.json", Body=b"{}")
    sha = "0123456789abcdef0123456789abcdef01234567"
    for model, shown in ((f"Qwen/Qwen2.5-7B-Instruct@{sha}", f"model vllm:Qwen/Qwen2.5-7B-Instruct (revision {sha})"),
                         (f"s3://{s3_bucket}/models/m/", f"model vllm:s3://{s3_bucket}/models/m (revision store-")):
        result = cli("submit", str(tmp_path / "in.jsonl"), "--chunks", "1", "--backend", "sky", "--store",
                     str(tmp_path / "runs"), "--model", model, "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert shown in flat(result.stdout)


def test_the_tensor_parallel_template_checks_the_gpu_count(sky, tmp_path):
    from chunkpilot.control.backends.sky import plan_tasks

    p = plan(tmp_path, engine="vllm", template="vllm-tp-ondemand", gpus="H100:2")
    spec = p.spec.with_(engine_options={"tensor_parallel_size": 4})
    with pytest.raises(ConfigError, match="fewer GPUs than vLLM"):
        plan_tasks(spec, p.manifests, str(tmp_path / "runs"))
    p = plan(tmp_path, engine="vllm", template="vllm-tp-ondemand")
    notes = plan_tasks(p.spec, p.manifests, str(tmp_path / "runs")).notes
    assert any("tensor_parallel_size=4" in n for n in notes)


# -- status mapping and polling -------------------------------------------------------------


def test_managed_job_statuses_map_to_normalized_states(sky):
    from chunkpilot.control.backends.sky import STATUS_MAP, job_state

    S = sky.jobs.ManagedJobStatus
    expected = {
        S.PENDING: JobStatus.PENDING, S.DEPRECATED_SUBMITTED: JobStatus.PENDING, S.STARTING: JobStatus.PENDING,
        S.RUNNING: JobStatus.RUNNING, S.WINDING_DOWN: JobStatus.RUNNING, S.RECOVERING: JobStatus.RECOVERING,
        S.CANCELLING: JobStatus.CANCELLING, S.SUCCEEDED: JobStatus.SUCCEEDED, S.CANCELLED: JobStatus.CANCELLED,
        S.FAILED: JobStatus.FAILED, S.FAILED_NO_RESOURCE: JobStatus.FAILED, S.FAILED_CONTROLLER: JobStatus.FAILED,
        S.FAILED_SETUP: JobStatus.FAILED_CONFIG, S.FAILED_PRECHECKS: JobStatus.FAILED_CONFIG,
    }
    assert set(expected) == set(S) and set(STATUS_MAP) == {s.value for s in S}
    from sky.schemas.api.responses import ManagedJobRecord

    for status, normalized in expected.items():
        state = job_state(ManagedJobRecord(job_id=1, job_name="r-w0-a1", status=status, recovery_count=2,
                                           failure_reason="boom" if status.is_failed() else None))
        assert state.status is normalized and state.recoveries == 2, status
        if status.is_failed():
            assert "boom" in state.detail
        if normalized.value != status.value:
            assert status.value in state.detail or status in (S.DEPRECATED_SUBMITTED, S.STARTING, S.WINDING_DOWN)
    # The worker's exit 2 (configuration error) is not worth a new attempt either.
    worker_config_error = job_state({"status": S.FAILED, "failure_reason": "Job exited with exit code 2 (user program failure)."})
    assert worker_config_error.status is JobStatus.FAILED_CONFIG and "configuration error" in worker_config_error.detail
    assert job_state({"status": S.FAILED, "failure_reason": "Job exited with exit code 255"}).status is JobStatus.FAILED
    # When it last became RUNNING: its first start, or its last recovery (SkyPilot's own record).
    recovered = job_state(ManagedJobRecord(job_id=1, job_name="r-w0-a1", status=S.RUNNING, recovery_count=1,
                                           start_at=100.0, last_recovered_at=700.0))
    assert recovered.running_since == 700.0 and recovered.started_at == 100.0
    assert job_state(ManagedJobRecord(job_id=1, job_name="r-w0-a1", status=S.RUNNING, start_at=100.0)).running_since == 100.0


def test_poll_is_one_request_finds_jobs_by_name_and_survives_a_missing_controller(sky, tmp_path):
    from chunkpilot.control.backends.sky import SkyBackend
    from tests.fakesky import FakeSky

    fake = FakeSky(tmp_path / "fake")
    p = plan(tmp_path)
    backend = SkyBackend(p.spec, str(tmp_path / "runs"), sdk=fake)
    names = ["unit-w0-a1", "unit-w1-a1"]
    assert backend.poll("unit", names) == {n: JobState(JobStatus.MISSING) for n in names}  # ClusterNotUpError
    assert [c[0] for c in fake.calls] == ["queue_v2"] and fake.calls[0][1]["name_match"] == "unit-"

    # Two jobs under one name (should not happen): the newest wins. Another run's job is ignored.
    from tests.fakesky import FakeJob

    S = sky.jobs.ManagedJobStatus
    with fake._lock:
        for job_id, name, status in [(1, "unit-w0-a1", S.FAILED), (2, "unit-w0-a1", S.RUNNING),
                                     (3, "unit2-w1-a1", S.SUCCEEDED)]:
            fake._jobs[job_id] = FakeJob(job_id, name, None, {}, {}, status=status)
    fake.calls.clear()
    states = backend.poll("unit", names)
    assert states["unit-w0-a1"].status is JobStatus.RUNNING and states["unit-w1-a1"].status is JobStatus.MISSING
    assert len(fake.calls) == 1


# -- shipping chunkpilot ------------------------------------------------------------------------


def test_the_launcher_ships_its_own_build_as_an_installable_wheel(tmp_path):
    from chunkpilot.control.wheel import dist_dir, wheel_filename

    folder = dist_dir(tmp_path / "a")
    again = dist_dir(tmp_path / "b")
    wheel = folder / wheel_filename()
    assert [p.name for p in folder.iterdir()] == [wheel.name]
    assert wheel.read_bytes() == (again / wheel_filename()).read_bytes(), "builds are not reproducible"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "chunkpilot/control/backends/sky.py" in names and "worker/__main__.py" in names
    assert not any("__pycache__" in n for n in names)
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, timeout=120)
    assert (target / "worker" / "loop.py").exists() and (target / "worker" / "chunk.py").exists()
    assert not (target / "worker" / "run.py").exists()  # the one-chunk worker is gone
    assert "launcher = launcher.cli:main" in next(target.glob("chunkpilot-*.dist-info")).joinpath("entry_points.txt").read_text()


# -- launching -------------------------------------------------------------------------------------


def test_the_wheels_fallback_requirements_are_the_packages_dependencies():
    import tomllib

    from chunkpilot.control.wheel import FALLBACK_REQUIRES

    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    assert list(FALLBACK_REQUIRES) == pyproject["project"]["dependencies"]


def test_launch_refuses_local_paths_when_jobs_run_in_the_cloud(sky, tmp_path):
    from chunkpilot.control.backends.sky import SkyBackend
    from tests.fakesky import FakeSky

    class CloudFake(FakeSky):
        local_paths_reachable = False

    fake = CloudFake(tmp_path / "fake")
    p = plan(tmp_path)
    backend = SkyBackend(p.spec, str(tmp_path / "runs"), sdk=fake)
    request = LaunchRequest(p.spec, str(tmp_path / "runs" / "unit"), "w0", 1, "unit-w0-a1")
    with pytest.raises(ConfigError, match="cannot read"):
        backend.launch([request])
    assert fake.calls == []
    # Before anything is written, when the CLI says it is about to launch (the real SDK runs jobs elsewhere).
    from chunkpilot.control.backends.sky import validate_run

    validate_run(p.spec, p.manifests, str(tmp_path / "runs"))  # a dry run only warns
    with pytest.raises(ConfigError, match="cannot read"):
        validate_run(p.spec, p.manifests, str(tmp_path / "runs"), launching=True)


def test_a_refused_launch_stops_the_batch_with_skypilots_reason(sky, tmp_path, fake_sky):
    from chunkpilot.control.backends.sky import SkyBackend, SkyBackendError
    from tests.fakesky import REFUSE_LAUNCH

    p = plan(tmp_path, chunks=3)
    (tmp_path / "runs" / "unit").mkdir(parents=True)
    fake_sky.faults["unit-w0-a1"] = REFUSE_LAUNCH
    backend = SkyBackend(p.spec, str(tmp_path / "runs"), sdk=fake_sky)
    requests = [LaunchRequest(p.spec, str(tmp_path / "runs" / "unit"), f"w{i}", 1, f"unit-w{i}-a1")
                for i in range(len(p.manifests))]
    with pytest.raises(SkyBackendError, match="refused to launch unit-w0-a1: No cloud access"):
        backend.launch(requests)
    assert [c for c in fake_sky.calls if c[0] == "launch"] == [] and fake_sky.all_jobs == []


def test_a_missing_secret_stops_the_batch_before_anything_launches(sky, tmp_path, fake_sky):
    from chunkpilot.control.backends.sky import SkyBackend

    p = plan(tmp_path, secrets=["HF_TOKEN"])
    backend = SkyBackend(p.spec, str(tmp_path / "runs"), sdk=fake_sky, environ={})
    requests = [LaunchRequest(p.spec, str(tmp_path / "runs" / "unit"), w, 1, f"unit-{w}-a1") for w in ("w0", "w1")]
    (tmp_path / "runs" / "unit").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"\$HF_TOKEN is not set"):
        backend.launch(requests)
    assert fake_sky.all_jobs == []


# -- whole runs through the CLI --------------------------------------------------------------------


def submit(tmp_path: Path, run: str, records: int, chunks: int, *extra: str, env: dict | None = None):
    write_input(tmp_path / f"{run}.jsonl", records)
    result = cli("submit", str(tmp_path / f"{run}.jsonl"), "--chunks", str(chunks), "--backend", "sky",
                 "--engine", "echo", "--engine-option", "delay=0.03", "--engine-option", "batch=2",
                 "--engine-option", "max_in_flight=4", "--commit-records", "4", "--commit-seconds", "0.2",
                 "--store", str(tmp_path / "runs"), "--run-name", run, *extra, env=env)
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def status_of(tmp_path: Path, run: str) -> dict:
    result = cli("status", run, "--store", str(tmp_path / "runs"), "--json")
    assert result.exit_code == 0, result.stderr
    return {row["chunk"]: row for row in json.loads(result.stdout)["chunks"]}


def status_json(tmp_path: Path, run: str) -> dict:
    result = cli("status", run, "--store", str(tmp_path / "runs"), "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def launched_names(fake) -> list[str]:
    """Every launch the fake SDK was asked for, in order (a lost reply still counts)."""
    return [kw["name"] for name, kw in fake.calls if name == "launch"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def collect_ids(tmp_path: Path, run: str) -> list[str]:
    out = tmp_path / f"{run}-results.jsonl"
    collected = cli("collect", run, "--store", str(tmp_path / "runs"), "-o", str(out))
    assert collected.exit_code == 0, collected.stderr
    return [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]


def test_a_run_survives_preemption_controller_failure_lost_replies_and_false_success(sky, tmp_path, fake_sky, sky_catalog,
                                                                                     monkeypatch):
    from tests.fakesky import FAILED_CONTROLLER, LOSE_LAUNCH_REPLY, PREEMPT, SUCCEED_WITHOUT_MARKER

    # Faults, not the tail: idle workers do not split a busy one's chunk here, so chunks and attempts
    # stay exact (tests/worker/test_splits.py tests splits).
    monkeypatch.setenv("CHUNKPILOT_SPLITS", "0")

    run = "cloud"
    # Faults are keyed by job name: each hits one worker launch (sky's default: a worker per chunk).
    fake_sky.faults.update({
        f"{run}-w1-a1": PREEMPT,
        f"{run}-w2-a1": FAILED_CONTROLLER,
        f"{run}-w3-a1": SUCCEED_WITHOUT_MARKER,
        f"{run}-w4-a1": LOSE_LAUNCH_REPLY,
    })
    records = 150
    submit(tmp_path, run, records, 5, "--secret", "HF_TOKEN", "--gpus", "L4:1", env={"HF_TOKEN": SECRET})
    assert sorted(launched_names(fake_sky)) == [f"{run}-w{i}-a1" for i in range(5)]
    assert fake_sky.max_launches_in_flight > 1, "launches were not concurrent"
    watched = cli("watch", run, "--store", str(tmp_path / "runs"), "--interval", "0.2", env={"HF_TOKEN": SECRET})
    assert watched.exit_code == 0, watched.stderr
    runs = tmp_path / "runs" / run

    report = status_json(tmp_path, run)
    rows = {row["chunk"]: row for row in report["chunks"]}
    assert {c: r["state"] for c, r in rows.items()} == {f"{i:04d}": "DONE" for i in range(5)}
    # No job name is ever launched twice, whatever the faults.
    names = launched_names(fake_sky)
    assert len(names) == len(set(names)), names
    # Preempted: SkyPilot recovered the job (RECOVERING) and restarted the worker from scratch; the same
    # launch took back the chunk it held and resumed it, as the same attempt.
    [preempted] = fake_sky.jobs_named(f"{run}-w1-a1")
    assert preempted.recovery_count == 1 and preempted.worker_starts == 2 and preempted.fault_chunk is not None
    assert rows[preempted.fault_chunk]["attempts"] == 1
    marker = read_json(runs / "out" / preempted.fault_chunk / "_SUCCESS")
    assert 0 < marker["resumed_records"] < marker["records"]
    # FAILED_CONTROLLER: the job ended while it held a chunk with committed parts; the watcher released
    # the claim, and whoever took it next (another worker, or w2's relaunch) made attempt 2 and resumed.
    [killed] = fake_sky.jobs_named(f"{run}-w2-a1")
    assert killed.status.value == "FAILED_CONTROLLER" and killed.fault_chunk not in (None, preempted.fault_chunk)
    assert rows[killed.fault_chunk]["attempts"] == 2
    assert 0 < read_json(runs / "out" / killed.fault_chunk / "_SUCCESS")["resumed_records"]
    first = read_json(runs / "jobs" / "w2" / "a1.json")
    assert first["ended_at"] is not None and "failed_controller" in first["reason"].lower(), first
    # Every other chunk was answered by its first attempt: no fault cost a chunk more than its holder's.
    assert {c: r["attempts"] for c, r in rows.items() if c != killed.fault_chunk} == \
        {c: 1 for c in rows if c != killed.fault_chunk}
    # SUCCEEDED without running the worker: nothing was claimed by it, and the slot, ended while every
    # chunk remained, was relaunched as a worker.
    assert read_json(runs / "jobs" / "w3" / "a1.json")["state"] == "SUCCEEDED"
    assert len(fake_sky.jobs_named(f"{run}-w3-a2")) == 1
    assert not any(json.loads(p.read_text())["worker"] == "w3" and json.loads(p.read_text())["worker_attempt"] == 1
                   for p in (runs / "claims").glob("*.json"))
    # The launch whose reply was lost was found by name (polled to its end), not launched again.
    assert len(fake_sky.jobs_named(f"{run}-w4-a1")) == 1 and names.count(f"{run}-w4-a1") == 1
    lost = read_json(runs / "jobs" / "w4" / "a1.json")
    assert lost["job_id"] is None and lost["state"] in ("SUCCEEDED", "CANCELLED") and lost["ended_at"] is not None, lost
    # The worker got the secret as a SkyPilot secret; nothing in the store holds it.
    assert all(j.secrets.get("HF_TOKEN") == SECRET and "HF_TOKEN" not in j.envs for j in fake_sky.all_jobs)
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert (runs / "sky" / "task_template.yaml").exists()

    assert collect_ids(tmp_path, run) == [f"r{i:04d}" for i in range(records)]  # every record, once

    # What SkyPilot said about each job went into its attempt record, priced from SkyPilot's catalog
    # (tests/data/sky_catalog: L4 on g6.xlarge, us-east-1 spot 0.3208/0.3411 by zone, on demand 0.8048).
    # The job reports zone us-east-1a; AWS catalogs list zone ids, so the region's cheapest is used.
    first = read_json(runs / "jobs" / "w1" / "a1.json")
    assert first["chunk"] == "w1" and first["name"] == f"{run}-w1-a1"  # the field holds the worker slot
    assert first["recoveries"] == 1 and first["started_at"] >= first["launched_at"]
    assert first["resources"] == {"cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a", "accelerators": {"L4": 1},
                                  "spot": True, "instance_type": "g6.xlarge"}
    assert (first["price_per_hour"], first["on_demand_per_hour"]) == (0.3208, 0.8048)
    assert first["price_source"] == "SkyPilot catalog: AWS us-east-1 g6.xlarge spot"
    for path in (runs / "jobs").glob("*/a*.json"):  # every launch that ran on a machine is priced
        record = read_json(path)
        if record["started_at"] is not None:
            assert record["price_per_hour"] == 0.3208, record
    # The worker's history: SkyPilot restarted the preempted job in place, a second life of launch 1.
    # (a worker killed mid-write may leave a temporary file, which the store never lists)
    history = sorted(p.name for p in (runs / "history" / "w1").iterdir() if not p.name.startswith("."))
    assert history == ["a1.0.jsonl", "a1.1.jsonl"]
    start = json.loads((runs / "history" / "w1" / "a1.1.jsonl").read_text().splitlines()[0])
    assert start["resources"] == {"cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a", "gpus": 1}
    # Status: one row per worker slot; the preemption is counted on w1 and in the totals.
    workers = {w["worker"]: w for w in report["workers"]}
    assert set(workers) == {f"w{i}" for i in range(5)} and report["totals"]["workers"] == 5
    assert workers["w1"]["preemptions"] == 1
    assert sum(w["preemptions"] for w in workers.values()) == report["totals"]["preemptions"] == 1
    # (a slot whose job ended while a dead worker's claim was still unreleased may be launched again later)
    assert workers["w3"]["launches"] >= 2 and len(fake_sky.jobs_named(f"{run}-w3-a2")) == 1
    assert sum(w["chunks_done"] for w in workers.values()) == 5
    assert 1 <= report["totals"]["engine_starts"] <= len(names)
    cost = report["totals"]["cost"]
    assert cost["unpriced_attempts"] == 0 and cost["so_far"] > 0 and cost["projected"] == cost["so_far"]
    assert cost["on_demand"] > cost["so_far"] and cost["interruptions"] >= 2  # w1's preemption, w2's controller
    made = cli("report", run, "--store", str(tmp_path / "runs"), "-o", str(tmp_path / "report.html"))
    assert made.exit_code == 0, made.stderr
    page = (tmp_path / "report.html").read_text()
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    # The report lists the interruptions, per worker launch (w1's preemption: its first life was killed).
    assert ("w1", 1, 0, "killed") in {(i["worker"], i["launch"], i["life"], i["how"]) for i in data["interruptions"]}
    # Its timeline has a row per worker, and the kill marker is on w1's.
    assert ("w1", 1, 0) in {(m["worker"], m["launch"], m["life"]) for m in data["timeline"]["markers"]}


def test_warm_workers_launch_one_job_per_worker_not_per_chunk(sky, tmp_path, fake_sky):
    """The issue's check: 40 chunks on 4 workers is 4 jobs, each pulling chunk after chunk with one
    engine; a worker job that ends while chunks remain is relaunched as that worker's next launch."""
    from tests.fakesky import FAILED_CONTROLLER

    run = "many"
    fake_sky.faults[f"{run}-w1-a1"] = FAILED_CONTROLLER
    records = 200
    submit(tmp_path, run, records, 40, "--workers", "4")
    assert sorted(launched_names(fake_sky)) == [f"{run}-w{i}-a1" for i in range(4)], "one job per worker, not per chunk"
    watched = cli("watch", run, "--store", str(tmp_path / "runs"), "--interval", "0.2")
    assert watched.exit_code == 0, watched.stderr

    # w1's job died (FAILED_CONTROLLER) with 30-odd chunks left: relaunched once, as w1's second launch.
    names = launched_names(fake_sky)
    assert sorted(names) == sorted([f"{run}-w{i}-a1" for i in range(4)] + [f"{run}-w1-a2"]), names
    assert fake_sky.jobs_named(f"{run}-w1-a1")[0].status.value == "FAILED_CONTROLLER"
    # The others ended by themselves (nothing left to claim) or, still winding down when the last chunk
    # was done, were cancelled by the watcher: none is left running.
    ends = {j.name: j.status.value for j in fake_sky.all_jobs if j.name != f"{run}-w1-a1"}
    assert set(ends.values()) <= {"SUCCEEDED", "CANCELLED"}, ends
    killed = fake_sky.jobs_named(f"{run}-w1-a1")[0].fault_chunk
    report = status_json(tmp_path, run)
    rows = {row["chunk"]: row for row in report["chunks"]}
    assert len(rows) == 40 and {r["state"] for r in rows.values()} == {"DONE"}
    # What w1's dead launch held went to a second attempt: the chunk it was answering, and the next one
    # if it had already taken it (a worker takes the next chunk while the last requests of one finish).
    retried = {c for c, r in rows.items() if r["attempts"] == 2}
    assert killed in retried and len(retried) <= 2, (killed, retried)
    assert all(r["attempts"] == 1 for c, r in rows.items() if c not in retried)
    workers = {w["worker"]: w for w in report["workers"]}
    assert sorted(workers) == ["w0", "w1", "w2", "w3"] and report["totals"]["workers"] == 4
    assert workers["w1"]["launches"] == 2 and workers["w1"]["name"] == f"{run}-w1-a2"
    assert all(workers[w]["launches"] == 1 for w in ("w0", "w2", "w3"))
    assert sum(w["chunks_done"] for w in workers.values()) == 40
    # One engine per launch that claimed a chunk: at most 5 engine starts for 40 chunks.
    assert 4 <= report["totals"]["engine_starts"] <= 5
    assert max(w["chunks_done"] for w in workers.values()) > 1, "no worker answered more than one chunk"
    # Attempt records are per worker launch.
    assert sorted(str(p.relative_to(tmp_path / "runs" / run / "jobs")) for p in
                  (tmp_path / "runs" / run / "jobs").glob("*/a*.json")) == ["w0/a1.json", "w1/a1.json", "w1/a2.json",
                                                                             "w2/a1.json", "w3/a1.json"]
    assert collect_ids(tmp_path, run) == [f"r{i:04d}" for i in range(records)]  # every record, once


def test_a_worker_restarted_in_place_takes_back_its_chunk_first(sky, tmp_path, fake_sky):
    """SkyPilot restarts a preempted job's worker as the same launch: it resumes the chunk it held
    before taking any other, so that claim is renewed again (left unrenewed while the worker answers
    other chunks, its lease would run out and the launcher would take the job for hung)."""
    from tests.fakesky import PREEMPT

    run = "inplace"
    fake_sky.faults[f"{run}-w0-a1"] = PREEMPT
    submit(tmp_path, run, 60, 3, "--workers", "1")
    watched = cli("watch", run, "--store", str(tmp_path / "runs"), "--interval", "0.2")
    assert watched.exit_code == 0, watched.stderr
    [job] = fake_sky.jobs_named(f"{run}-w0-a1")
    assert job.recovery_count == 1 and job.worker_starts == 2 and launched_names(fake_sky) == [f"{run}-w0-a1"]
    runs = tmp_path / "runs" / run
    second = [json.loads(line) for line in (runs / "history" / "w0" / "a1.1.jsonl").read_text().splitlines()]
    claimed = [e["chunk"] for e in second if e["event"] == "claim"]
    assert claimed[0] == job.fault_chunk, (claimed, job.fault_chunk)
    rows = status_of(tmp_path, run)
    assert {c: (r["state"], r["attempts"]) for c, r in rows.items()} == {c: ("DONE", 1) for c in rows}
    assert 0 < read_json(runs / "out" / job.fault_chunk / "_SUCCESS")["resumed_records"]
    # The launch's heartbeat counts both lives: two engine starts, every chunk once.
    [worker] = status_json(tmp_path, run)["workers"]
    assert (worker["engine_starts"], worker["chunks_done"], worker["launches"]) == (2, 3, 1), worker


def test_a_setup_failure_is_reported_and_not_retried(sky, tmp_path, fake_sky):
    from tests.fakesky import FAILED_SETUP

    # One worker: its setup fails, retrying cannot help, and no worker is left to answer the chunks.
    run = "broken"
    fake_sky.faults[f"{run}-w0-a1"] = FAILED_SETUP
    submit(tmp_path, run, 40, 2, "--workers", "1")
    watched = cli("watch", run, "--store", str(tmp_path / "runs"), "--interval", "0.2")
    assert watched.exit_code == 1
    assert "FAILED_SETUP" in flat(watched.stderr)
    rows = status_of(tmp_path, run)
    assert {r["state"] for r in rows.values()} == {"FAILED"}
    for row in rows.values():
        assert row["attempts"] == 0 and "no worker can run" in row["reason"] and "FAILED_SETUP" in row["reason"], row
    assert launched_names(fake_sky) == [f"{run}-w0-a1"]

    # Two workers: the other one answers every chunk; the broken slot is reported, never relaunched.
    run = "half"
    fake_sky.faults[f"{run}-w0-a1"] = FAILED_SETUP
    submit(tmp_path, run, 40, 2, "--workers", "2")
    watched = cli("watch", run, "--store", str(tmp_path / "runs"), "--interval", "0.2")
    assert watched.exit_code == 0, watched.stderr
    report = status_json(tmp_path, run)
    assert {r["state"] for r in report["chunks"]} == {"DONE"}
    workers = {w["worker"]: w for w in report["workers"]}
    assert workers["w0"]["launches"] == 1 and "FAILED" in workers["w0"]["state"], workers["w0"]
    assert workers["w1"]["chunks_done"] == 2
    assert sorted(n for n in launched_names(fake_sky) if n.startswith(f"{run}-")) == [f"{run}-w0-a1", f"{run}-w1-a1"]
    assert "FAILED_SETUP" in read_json(tmp_path / "runs" / run / "jobs" / "w0" / "a1.json")["reason"]
    assert collect_ids(tmp_path, run) == [f"r{i:04d}" for i in range(40)]


def test_cancel_stops_the_runs_jobs_in_one_request(sky, tmp_path, fake_sky):
    run = "stopme"
    write_input(tmp_path / f"{run}.jsonl", 400)
    result = cli("submit", str(tmp_path / f"{run}.jsonl"), "--chunks", "2", "--backend", "sky", "--engine", "echo",
                 "--engine-option", "delay=0.2", "--engine-option", "batch=1", "--store", str(tmp_path / "runs"),
                 "--run-name", run)
    assert result.exit_code == 0, result.stderr
    wait_for(lambda: all(j.status.value == "RUNNING" and j.process is not None for j in fake_sky.all_jobs)
             and len(fake_sky.all_jobs) == 2, what="jobs running")
    cancelled = cli("cancel", run, "--store", str(tmp_path / "runs"))
    assert cancelled.exit_code == 0, cancelled.stderr
    cancels = [kw for name, kw in fake_sky.calls if name == "cancel"]
    assert len(cancels) == 1 and sorted(cancels[0]["job_ids"]) == sorted(j.job_id for j in fake_sky.all_jobs)
    wait_for(lambda: all(j.status.value == "CANCELLED" for j in fake_sky.all_jobs), what="jobs cancelled")
    rows = status_of(tmp_path, run)
    assert {r["state"] for r in rows.values()} == {"CANCELLED"}
    # A cancel pauses: resuming gives the cancelled attempts back and launches the next ones.
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.watch import WatchOptions, reconcile_once, resume

    paused = open_run(str(tmp_path / "runs"), run)
    assert resume(paused).reason == "cancelled by `launcher cancel`" and not paused.cancelled
    reconcile_once(paused, make_backend(paused.spec, str(tmp_path / "runs")), WatchOptions(max_attempts=1), set())
    assert sorted(j.name for j in fake_sky.all_jobs) == [f"{run}-w0-a1", f"{run}-w0-a2", f"{run}-w1-a1", f"{run}-w1-a2"]
    assert cli("cancel", run, "--store", str(tmp_path / "runs")).exit_code == 0


# -- every GPU of a machine -------------------------------------------------------------------


def test_an_eight_gpu_task_validates_offline_and_runs_an_engine_per_gpu(sky, tmp_path):
    from chunkpilot.control.backends.sky import plan_tasks

    p = plan(tmp_path, engine="vllm", gpus="H100:8")
    planned = plan_tasks(p.spec, p.manifests, str(tmp_path / "runs"))  # SkyPilot's own Dag.validate, offline
    cfg, envs, _ = planned.first
    assert cfg["resources"]["accelerators"] == "H100:8" and dict(envs)["CHUNKPILOT_GPUS_PER_ENGINE"] == "1"
    assert "python -m worker.machine" in cfg["run"]
    assert any("H100:8 runs 8 engines of 1 GPU(s) per machine" in n for n in planned.notes)
    tp = plan_tasks(p.spec.with_(engine_options={"tensor_parallel_size": 4}), p.manifests, str(tmp_path / "runs"))
    assert dict(tp.first[1])["CHUNKPILOT_GPUS_PER_ENGINE"] == "4"
    assert any("runs 2 engines of 4 GPU(s)" in n for n in tp.notes)
    odd = plan_tasks(p.spec.with_(engine_options={"tensor_parallel_size": 3}), p.manifests, str(tmp_path / "runs"))
    assert any("leaves 2 idle" in n for n in odd.notes)


def test_fifty_workers_are_launched_sixteen_per_cycle(sky, tmp_path):
    from chunkpilot.control.backends.sky import SkyBackend
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.submit import write_run
    from chunkpilot.control.watch import WatchOptions, reconcile_once
    from tests.fakesky import FakeSky

    p = plan(tmp_path, chunks=50, records=100)
    p = replace(p, spec=p.spec.with_(workers=50))
    store = str(tmp_path / "runs")
    write_run(p, store)
    run = open_run(store, p.spec.run_id)
    fake = FakeSky(tmp_path / "fake", step_delay=600)  # jobs stay PENDING: this test counts launches only
    try:
        backend = SkyBackend(p.spec, store, sdk=fake, dist_root=tmp_path / "dist")
        assert backend.launch_batch == 16
        counts = []
        for _ in range(4):
            reconcile_once(run, backend, WatchOptions(), set())
            counts.append(sum(1 for c in fake.calls if c[0] == "launch"))
        assert counts == [16, 32, 48, 50]
        assert fake.max_launches_in_flight <= 16
        assert sorted(j.name for j in fake.all_jobs) == sorted(f"unit-w{i}-a1" for i in range(50))
    finally:
        fake.shutdown()


# -- SkyPilot pools ---------------------------------------------------------------------------


def test_the_pool_yaml_comes_from_the_template_and_passes_skypilots_pool_validation(sky, tmp_path):
    from chunkpilot.control.pools import plan_pool
    from chunkpilot.control.skytask import TaskOptions

    pool = plan_pool("fleet", 3, TaskOptions(gpus="H100:8"), {}, str(tmp_path / "dist"))
    assert pool.config["pool"] == {"workers": 3} and "run" not in pool.config
    assert "job_recovery" not in pool.config["resources"] and "vllm==" in pool.config["setup"]
    assert "CHUNKPILOT_WORKER" not in pool.config["envs"] and pool.config["resources"]["accelerators"] == "H100:8"
    # SkyPilot's own pool check is what runs: the template's job_recovery would be refused by it.
    from chunkpilot.control.backends.sky_sdk import validate_pool

    with pytest.raises(ConfigError, match="job_recovery is disabled for Pool"):
        validate_pool({**pool.config, "resources": {**pool.config["resources"], "job_recovery": {"strategy": "FAILOVER"}}},
                      pool.envs, pool.secrets, "t.yaml")


def test_pool_up_status_down_through_the_cli(fake_sky, tmp_path):
    result = cli("pool", "up", "p", "--workers", "2", "--gpus", "L4:1")
    assert result.exit_code == 0, result.stderr + result.stdout
    applied = [c for c in fake_sky.calls if c[0] == "pool_apply"]
    assert applied and applied[0][1]["pool_name"] == "p" and fake_sky.pools["p"]["workers"] == 2
    assert "p: READY · 2/2 workers ready" in cli("pool", "status", "p").stdout
    assert cli("pool", "down", "p").exit_code == 0 and "p" not in fake_sky.pools
    dry = cli("pool", "up", "q", "--dry-run")
    assert dry.exit_code == 0 and "workers: 1" in dry.stdout and "q" not in fake_sky.pools


def test_a_dry_run_with_a_pool_shows_the_pool_and_the_num_jobs_launch(sky, tmp_path):
    write_input(tmp_path / "in.jsonl", 40)
    result = cli("submit", str(tmp_path / "in.jsonl"), "--chunks", "8", "--backend", "sky", "--engine", "echo",
                 "--store", str(tmp_path / "runs"), "--run-name", "demo", "--pool", "p", "--workers", "8", "--dry-run")
    assert result.exit_code == 0, result.stderr
    out = flat(result.stdout)
    assert "pool p: the workers run as jobs on its warm workers" in out
    assert "sky.jobs.launch(task, name='demo-w0-a1-x8', pool='p', num_jobs=8)" in out
    assert "CHUNKPILOT_MEMBERS: w0:1,w1:1,w2:1,w3:1,w4:1,w5:1,w6:1,w7:1" in out
    assert "the pool 'p' as `launcher pool up` applies it" in out and "workers: 1" in out


def _pool_run(tmp_path, fake, run: str, records: int, chunks: int, workers: int):
    assert cli("pool", "up", "p", "--workers", str(workers), "--gpus", "L4:1").exit_code == 0
    return submit(tmp_path, run, records, chunks, "--pool", "p", "--workers", str(workers), "--gpus", "L4:1")


def test_eight_pool_workers_go_out_in_one_launch_request(fake_sky, tmp_path):
    fake_sky.step_delay = 600  # jobs stay PENDING: this test looks at the request only
    _pool_run(tmp_path, fake_sky, "eight", 40, 8, 8)
    launches = [c[1] for c in fake_sky.calls if c[0] == "launch"]
    assert launches == [{"name": "eight-w0-a1-x8", "pool": "p", "num_jobs": 8}]
    jobs = sorted(fake_sky.all_jobs, key=lambda j: j.job_id)
    assert [j.rank for j in jobs] == list(range(8)) and {j.pool for j in jobs} == {"p"}
    states = status_of(tmp_path, "eight")
    assert len(states) == 8


def test_a_preempted_pool_worker_re_execs_and_resumes_its_chunk(fake_sky, tmp_path):
    from tests.fakesky import PREEMPT

    fake_sky.faults["pooled-w0-a1-x2"] = PREEMPT  # both jobs of the request: each preempted once mid-chunk
    _pool_run(tmp_path, fake_sky, "pooled", 60, 2, 2)
    result = cli("watch", "pooled", "--store", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.stderr + result.stdout
    jobs = sorted(fake_sky.all_jobs, key=lambda j: j.job_id)
    assert len(jobs) == 2 and all(j.recovery_count == 1 and j.worker_starts == 2 for j in jobs)
    run_dir = tmp_path / "runs" / "pooled"
    for job in jobs:
        claim = json.loads((run_dir / "claims" / f"{job.fault_chunk}.json").read_text())
        # The re-exec'd job is the same worker launch (rank -> slot from CHUNKPILOT_MEMBERS): it took its
        # own claim back and went on from its committed parts; no new attempt of the chunk was needed.
        assert claim["state"] == "done" and claim["attempt"] == 1 and claim["worker_attempt"] == 1
        assert len(list((run_dir / "out" / job.fault_chunk).glob("a1-*.jsonl"))) >= 2
    out = tmp_path / "out.jsonl"
    assert cli("collect", "pooled", "--store", str(tmp_path / "runs"), "-o", str(out)).exit_code == 0
    assert len(out.read_text().splitlines()) == 60


def test_the_dry_run_estimates_cost_from_the_catalog_spot_and_on_demand(sky, sky_catalog, tmp_path):
    write_input(tmp_path / "in.jsonl", 10)
    common = ("submit", str(tmp_path / "in.jsonl"), "--chunks", "1", "--backend", "sky", "--engine", "echo",
              "--store", str(tmp_path / "runs"), "--dry-run", "--max-tokens", "1000", "--tokens-per-second", "10")
    out = flat(cli(*common, "--gpus", "L4:1", "--infra", "aws").stdout)
    # 10 records x 1,000 tokens / 10 tok/s = 1,000 s = 0.278 job-hours on one L4: spot $0.3208/h, on demand $0.8048/h
    assert "time 0.278 engine-hours = 0.278 job-hours on L4:1 (1 engine(s) per job) = 0.278 GPU-hours" in out
    assert "cost $0.089 spot ($0.3208/h) · $0.22 on demand ($0.8048/h) · SkyPilot catalog: aws cheapest region g6.xlarge" in out
    # Four GPUs, two per engine: two engines share the job's hours; no catalog price for L4:4 here, so none is made up.
    sha = "0123456789abcdef0123456789abcdef01234567"
    four = flat(cli(*common, "--gpus", "L4:4", "--infra", "aws", "--engine", "vllm", "--model", f"Qwen/Qwen2.5-7B-Instruct@{sha}",
                    "--engine-option", "tensor_parallel_size=2").stdout)
    assert "0.278 engine-hours = 0.139 job-hours on L4:4 (2 engine(s) per job) = 0.556 GPU-hours" in four
    assert "cost not estimated: no catalog price for L4:4 in aws (pass --price-per-hour)" in four


def test_a_task_and_a_pool_on_a_docker_image_pass_skypilots_validation(sky, tmp_path):
    from chunkpilot.control.backends.sky import plan_tasks
    from chunkpilot.control.pools import plan_pool
    from chunkpilot.control.skytask import TaskOptions

    p = plan(tmp_path, engine="vllm", gpus="H100:8", image="vllm/vllm-openai:v0.32.0")
    planned = plan_tasks(p.spec, p.manifests, str(tmp_path / "runs"))  # SkyPilot's own Dag.validate, offline
    cfg = planned.first[0]
    assert cfg["resources"]["image_id"] == "docker:vllm/vllm-openai:v0.32.0"
    assert "is on the image: not installing" in cfg["setup"]
    pool = plan_pool("fleet", 2, TaskOptions(gpus="H100:8", image="docker:vllm/vllm-openai:v0.32.0"), {}, str(tmp_path / "d"))
    assert pool.config["resources"]["image_id"] == "docker:vllm/vllm-openai:v0.32.0"
    with pytest.raises(ConfigError, match="give a docker image"):
        plan_tasks(plan(tmp_path, engine="vllm", image="docker: ").spec, p.manifests, str(tmp_path / "runs"))
    out = flat(cli("submit", str(write_input(tmp_path / "in.jsonl", 4)), "--chunks", "1", "--backend", "sky",
                   "--engine", "echo", "--store", str(tmp_path / "runs"), "--image", "vllm/vllm-openai:v0.32.0",
                   "--dry-run").stdout)
    assert "image_id: docker:vllm/vllm-openai:v0.32.0" in out


def test_a_pipeline_on_sky_has_every_steps_task_checked_by_skypilot_at_submit(sky, tmp_path):
    """Each model step is a run on the sky backend: its task is rendered and validated offline like a
    single run's, and a step whose own options break the task is refused naming the step."""
    import yaml

    write_input(tmp_path / "in.jsonl", 20)
    steps = [{"name": "first", "prompt_template": "say {{ prompt }}", "output_key": "a"},
             {"name": "second", "prompt_template": "again {{ a }}", "output_key": "b", "gpus": "H10O:1"}]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"input": "in.jsonl", "steps": steps}))
    result = cli("submit", str(tmp_path / "p.yaml"), "--chunks", "2", "--backend", "sky", "--engine", "echo",
                 "--store", str(tmp_path / "runs"), "--dry-run")
    assert result.exit_code == 1 and "step second" in result.stderr and "unknown accelerator 'H10O'" in result.stderr
    steps[1]["gpus"] = "H100:1"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"input": "in.jsonl", "steps": steps}))
    result = cli("submit", str(tmp_path / "p.yaml"), "--chunks", "2", "--backend", "sky", "--engine", "echo",
                 "--store", str(tmp_path / "runs"), "--dry-run")
    assert result.exit_code == 0, result.stderr
