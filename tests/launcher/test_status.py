"""status.summarize: counts, errors, rates, elapsed time and ETA from synthetic observations."""

from __future__ import annotations

from datetime import datetime, timezone

from chunkpilot.claims import Claim
from chunkpilot.layout import PartName
from chunkpilot.spec import ChunkSummary, InputPin, RunSpec
from chunkpilot.store import ObjectInfo
from chunkpilot.control.backends.base import JobStatus
from chunkpilot.control.observe import ChunkDetail, ChunkObservation
from chunkpilot.control.reconcile import ChunkState, Decision
from chunkpilot.control.status import chunks_needing_detail, summarize

T0 = 1_800_000_000.0


def spec(chunks=("0000", "0001"), size=1000) -> RunSpec:
    return RunSpec(
        run_id="r", created_at=datetime.fromtimestamp(T0, timezone.utc).isoformat(timespec="seconds"),
        inputs=(InputPin("/in.jsonl", size * len(chunks), "e"),),
        chunks=tuple(ChunkSummary(c, size) for c in chunks), engine="echo", model="echo", model_revision="echo-1",
        sampling={}, backend="local", use_spot=None, max_attempts=3, workers=1, chunkpilot_version="0",
    )


def part(first, end, records, errors=0, at=T0, attempt=1, seq=0, tokens=0) -> tuple[PartName, ObjectInfo]:
    name = PartName((0, first), (0, end), attempt, seq, records, errors, 0, tokens)
    return name, ObjectInfo(f"out/x/{name.filename}", 100, "e", at)


def obs(chunk, base, parts, attempts=1, launched=T0, done_at=None, job=JobStatus.RUNNING) -> ChunkObservation:
    """A chunk claimed at ``launched`` as attempt ``attempts`` (``job``: whether its holder still runs)."""
    live = job is JobStatus.RUNNING
    claim = Claim(chunk, attempts, "w0", 1, "held" if live else "released", launched + 10**6 if live else launched, launched)
    return ChunkObservation(
        chunk, 1000, claim=claim,
        done=ObjectInfo(f"out/{chunk}/_SUCCESS", 10, "e", done_at) if done_at else None,
        parts=[part(base + a, base + b, n, e, at, tokens=t) for a, b, n, e, at, t in parts],
    )


def test_a_running_run_has_a_rate_from_recent_commits_and_an_eta():
    now = T0 + 200
    observed = {
        # Done long ago: counts in the totals, not in the last minute's rate.
        "0000": obs("0000", 0, [(0, 1000, 100, 5, T0 + 50, 1000)], done_at=T0 + 50, job=JobStatus.SUCCEEDED),
        # Running: 40 records committed in the last minute, over 400 of its 1000 bytes.
        "0001": obs("0001", 1000, [(0, 200, 20, 0, now - 30, 300), (200, 400, 20, 2, now - 10, 300)], launched=T0 + 60),
    }
    decision = Decision(states={"0000": ChunkState.DONE, "0001": ChunkState.RUNNING})
    report = summarize(spec(), observed, decision, now)
    t = report.totals
    assert (t["records_done"], t["errors"], t["ok"]) == (140, 7, 133)
    assert t["records_per_s"] == round(40 / 60, 2) and t["tokens_per_s"] == 10.0
    assert t["elapsed_seconds"] == 200 and not t["finished"]
    assert t["eta_seconds"] == 600 / (400 / 60)
    row = report.rows[1]
    assert row.records_per_s == round(40 / 60, 2) and row.tokens_per_s == 10.0 and row.eta_seconds == 90.0
    assert report.rows[0].records_per_s is None and report.rows[0].eta_seconds is None


def test_pending_chunks_still_get_a_run_eta_from_the_measured_rate():
    now = T0 + 100
    observed = {
        "0000": obs("0000", 0, [(0, 500, 50, 0, now - 20, 0)]),
        "0001": ChunkObservation("0001", 1000),
    }
    report = summarize(spec(), observed, Decision(states={"0000": ChunkState.RUNNING, "0001": ChunkState.PENDING}), now)
    assert report.totals["eta_seconds"] == 1500 / (500 / 60)


def test_a_finished_run_reports_its_average_rate_and_elapsed_time_and_no_eta():
    observed = {
        "0000": obs("0000", 0, [(0, 1000, 100, 0, T0 + 40, 50)], done_at=T0 + 41, job=JobStatus.SUCCEEDED),
        "0001": obs("0001", 1000, [(0, 1000, 100, 100, T0 + 80, 0)], done_at=T0 + 81, job=JobStatus.SUCCEEDED),
    }
    decision = Decision(states={"0000": ChunkState.DONE, "0001": ChunkState.DONE})
    t = summarize(spec(), observed, decision, T0 + 5000).totals
    assert t["finished"] and t["elapsed_seconds"] == 81 and t["eta_seconds"] is None
    assert t["records_per_s"] == round(200 / 81, 2) and t["error_rate"] == 0.5


def test_a_failed_run_has_no_eta_and_error_codes_come_from_details():
    observed = {"0000": obs("0000", 0, [(0, 300, 32, 32, T0 + 5, 0)], job=JobStatus.FAILED_CONFIG),
                "0001": obs("0001", 1000, [(0, 100, 10, 1, T0 + 5, 0)])}
    decision = Decision(states={"0000": ChunkState.FAILED, "0001": ChunkState.FAILED},
                        reasons={"0000": "attempt 1: worker exited 2"})
    assert chunks_needing_detail(observed, decision) == ["0000", "0001"]
    details = {"0000": ChunkDetail("failed", "the first 32 records all failed", {"missing_prompt": 32})}
    report = summarize(spec(), observed, decision, T0 + 10, details)
    t = report.totals
    assert t["eta_seconds"] is None and t["error_codes"] == {"missing_prompt": 32}
    assert not t["error_codes_complete"] and report.rows[1].error_codes is None
    assert report.rows[0].reason == "the first 32 records all failed (attempt 1: worker exited 2)"


def test_a_running_chunk_without_commits_shows_it_is_starting_its_engine():
    observed = {"0000": obs("0000", 0, [], attempts=2), "0001": obs("0001", 1000, [(0, 10, 1, 0, T0, 0)])}
    decision = Decision(states={"0000": ChunkState.RUNNING, "0001": ChunkState.RUNNING})
    assert chunks_needing_detail(observed, decision) == ["0000"]
    report = summarize(spec(), observed, decision, T0 + 10, {"0000": ChunkDetail("starting")})
    assert report.rows[0].phase == "starting engine" and report.totals["starting_engine"] == 1
