"""The dry run's cost estimate: the pure arithmetic, and the real CLI (local runs; sky: tests/launcher/backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chunkpilot.requests import RecordError, Request
from chunkpilot.control.estimate import (HourlyPrice, JobShape, Throughput, TokenSample, estimate, measured_rate,
                               prompt_chars, sample_tokens)
from tests.conftest import write_jsonl


def request(prompt: str | None = None, messages=None, max_tokens: int = 100) -> Request:
    return Request((0, 0), "x", "chat" if messages else "completion", {"max_tokens": max_tokens}, prompt=prompt,
                   messages=tuple(messages) if messages else None)


def test_prompt_characters_count_every_message_and_text_part():
    assert prompt_chars(request("abcd")) == 4
    msgs = [{"role": "system", "content": "ab"}, {"role": "user", "content": [{"type": "text", "text": "cde"},
                                                                             {"type": "image_url", "image_url": {}}]}]
    assert prompt_chars(request(messages=msgs)) == 5


def test_a_sample_counts_error_records_but_not_their_tokens():
    sample = sample_tokens([(request("a" * 40, max_tokens=10), 50), (request("b" * 8, max_tokens=30), 20),
                            (RecordError((0, 70), "x", "invalid_json", "no"), 5)], embed=False)
    assert sample == TokenSample(records=3, units=75, prompt_chars=48, output_tokens=40, errors=1)
    assert sample_tokens([(request("a" * 40, max_tokens=10), 50)], embed=True).output_tokens == 0


def test_the_estimate_scales_the_sample_to_the_input_and_prices_job_hours():
    sample = TokenSample(records=100, units=10_000, prompt_chars=40_000, output_tokens=25_600, errors=0)
    shape = JobShape("H100:8", 8, 8, workers=4)
    est = estimate(sample, 1_000_000, Throughput(2000.0, "given"), shape, HourlyPrice(2.0, 6.0, "x"), embed=False)
    assert est.records == 10_000 and est.prompt_tokens == 1_000_000 and est.output_tokens == 2_560_000
    assert est.engine_hours == pytest.approx(2_560_000 / 2000 / 3600)
    assert est.job_hours == pytest.approx(est.engine_hours / 8)  # eight engines share one job's hours
    assert est.gpu_hours == pytest.approx(est.job_hours * 8)
    assert est.wall_hours == pytest.approx(est.job_hours / 4)
    assert est.spot_cost == pytest.approx(est.job_hours * 2.0) and est.on_demand_cost == pytest.approx(est.job_hours * 6.0)
    embed = estimate(sample, 1_000_000, Throughput(2000.0, "given"), shape, None, embed=True)
    assert embed.rated_tokens == 1_000_000 and embed.spot_cost is None  # embeddings are rated on their input


def test_without_a_throughput_no_time_or_money_is_made_up():
    sample = TokenSample(10, 100, 400, 1000, 0)
    est = estimate(sample, 100, None, JobShape("L4:1", 1, 1, 1), HourlyPrice(1.0, 2.0, "x"), embed=False)
    assert est.records == 10 and est.engine_hours is None and est.spot_cost is None and est.on_demand_cost is None


def test_a_measured_rate_is_tokens_over_the_seconds_chunks_took():
    assert measured_rate([(10, 300, 2.0), (10, 100, 2.0)], embed=False) == pytest.approx(100.0)
    assert measured_rate([(400, 0, 2.0)], embed=True) == pytest.approx(200.0)
    assert measured_rate([], embed=False) is None and measured_rate([(1, 0, 0.0)], embed=False) is None


# -- the real CLI ----------------------------------------------------------------------------

def prompts_file(tmp_path: Path, n: int = 8, chars: int = 40) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"custom_id": f"r{i}", "prompt": "p" * chars, "max_tokens": 50}
                                               for i in range(n)])


def estimate_block(stdout: str) -> str:
    return stdout[stdout.index("cost estimate"):]


def test_the_dry_run_estimates_tokens_hours_and_dollars_from_a_given_rate(tmp_path, store_uri, cli):
    path = prompts_file(tmp_path)
    out = cli("submit", path, "--chunks", 2, "--workers", 2, "--engine", "echo", "--store", store_uri, "--dry-run",
              "--tokens-per-second", 10, "--price-per-hour", 3.6).stdout
    block = estimate_block(out)
    assert "records      ~8 (from 8 sampled records" in block
    assert "~80 prompt (characters / 4)" in block  # 8 x 40 characters / 4
    assert "<= 400 output (max_tokens per record)" in block  # each record's own max_tokens, 50
    # 400 tokens / 10 tok/s = 40 engine-seconds = 0.0111 h; one engine per local job; two workers
    assert "0.0111 engine-hours = 0.0111 job-hours on this machine (1 engine(s) per job); ~0.00556 h wall with 2 worker(s)" in block
    assert "cost         $0.04 on demand ($3.6/h) · --price-per-hour" in block  # 0.0111 h x $3.6
    assert "model        output tokens = max_tokens per record (an upper bound)" in block
    assert not (Path(store_uri)).exists() or not any(Path(store_uri).iterdir()), "a dry run wrote to the store"


def test_without_a_rate_the_dry_run_says_what_is_missing(tmp_path, store_uri, cli):
    out = cli("submit", prompts_file(tmp_path), "--chunks", 1, "--engine", "echo", "--store", store_uri, "--dry-run",
              "--price-per-hour", 1).stdout
    block = estimate_block(out)
    assert "time, cost   not estimated: no throughput figure: pass --tokens-per-second N" in block
    assert "$" not in block.split("model ")[0] and "engine-hours =" not in block.split("model ")[0]


def test_tokens_per_second_without_dry_run_is_refused(tmp_path, store_uri, cli):
    result = cli("submit", prompts_file(tmp_path), "--chunks", 1, "--engine", "echo", "--store", store_uri,
                 "--tokens-per-second", 10, expect=2)
    assert "--tokens-per-second is for --dry-run's cost estimate" in result.output


def test_an_earlier_run_of_the_same_setup_gives_its_measured_rate(tmp_path, store_uri, cli):
    path = prompts_file(tmp_path, n=40)
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "first", "--watch")
    markers = [json.loads(p.read_bytes()) for p in sorted(Path(store_uri, "first", "out").glob("*/_SUCCESS"))]
    rate = sum(m["completion_tokens"] for m in markers) / sum(m["seconds"] for m in markers)
    out = cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--dry-run").stdout
    block = estimate_block(out)
    assert f"throughput   {rate:,.4g} output tok/s per engine (measured in run first: {len(markers)} chunk(s)" in block
    # Another model: the earlier run's rate says nothing about it.
    model = tmp_path / "other-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    other = cli("submit", path, "--chunks", 2, "--engine", "echo", "--model", model, "--store", store_uri,
                "--dry-run").stdout
    assert "not estimated: no throughput figure" in estimate_block(other)
