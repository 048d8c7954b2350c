"""The relaunch policy as a table: observations in, decisions out."""

from __future__ import annotations

import pytest

from launcher.backends.base import JobState, JobStatus
from launcher.reconcile import ChunkState, ChunkView, Launch, Policy, decide

NOW = 1_000_000.0


def view(chunk="0000", done=False, attempts=1, status=None, launched_at=NOW - 10, heartbeat_at=None, detail=""):
    job = JobState(status, detail) if status is not None else None
    return ChunkView(chunk, done, attempts, job, launched_at, heartbeat_at)


def test_done_chunk_is_done_whatever_its_job_says():
    d = decide([view(done=True, status=JobStatus.FAILED)], Policy(), NOW)
    assert d.states["0000"] is ChunkState.DONE and not d.launches and d.finished


def test_never_launched_chunks_launch_in_order_within_parallel_limit():
    views = [view(chunk=f"000{i}", attempts=0) for i in range(4)]
    d = decide(views, Policy(parallel=2), NOW)
    assert d.launches == [Launch("0000", 1), Launch("0001", 1)]
    assert not d.finished


def test_running_jobs_use_up_the_parallel_slots():
    views = [view(chunk="0000", status=JobStatus.RUNNING), view(chunk="0001", attempts=0)]
    assert decide(views, Policy(parallel=1), NOW).launches == []
    assert decide(views, Policy(parallel=0), NOW).launches == [Launch("0001", 1)]


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.CANCELLED])
def test_ended_without_marker_is_relaunched(status):
    d = decide([view(status=status)], Policy(max_attempts=3), NOW)
    assert d.launches == [Launch("0000", 2)]
    assert d.states["0000"] is ChunkState.RETRYING
    assert d.ended[0].state is status


def test_config_failure_is_not_retried():
    d = decide([view(status=JobStatus.FAILED_CONFIG, detail="setup failed: pip")], Policy(), NOW)
    assert not d.launches and d.states["0000"] is ChunkState.FAILED
    assert "setup failed" in d.reasons["0000"] and d.finished


def test_gives_up_after_max_attempts():
    d = decide([view(attempts=3, status=JobStatus.FAILED)], Policy(max_attempts=3), NOW)
    assert not d.launches and d.states["0000"] is ChunkState.FAILED
    assert "gave up after 3" in d.reasons["0000"]


def test_missing_job_waits_for_grace_then_relaunches():
    fresh = view(status=JobStatus.MISSING, launched_at=NOW - 5)
    assert decide([fresh], Policy(missing_grace_seconds=60), NOW).launches == []
    old = view(status=JobStatus.MISSING, launched_at=NOW - 600)
    assert decide([old], Policy(missing_grace_seconds=60), NOW).launches == [Launch("0000", 2)]


def test_stuck_job_is_cancelled_and_replaced():
    stuck = view(status=JobStatus.RUNNING, launched_at=NOW - 500, heartbeat_at=NOW - 400)
    d = decide([stuck], Policy(stuck_seconds=300), NOW)
    assert [c.attempt for c in d.cancels] == [1] and d.launches == [Launch("0000", 2)]
    alive = view(status=JobStatus.RUNNING, launched_at=NOW - 500, heartbeat_at=NOW - 10)
    assert not decide([alive], Policy(stuck_seconds=300), NOW).cancels


def test_recovering_job_is_left_to_the_backend():
    d = decide([view(status=JobStatus.RECOVERING)], Policy(), NOW)
    assert not d.launches and d.states["0000"] is ChunkState.RUNNING


def test_cancelled_run_cancels_active_jobs_and_launches_nothing():
    views = [view(chunk="0000", status=JobStatus.RUNNING), view(chunk="0001", attempts=0)]
    d = decide(views, Policy(run_cancelled=True), NOW)
    assert [c.chunk for c in d.cancels] == ["0000"] and not d.launches
    assert set(d.states.values()) == {ChunkState.CANCELLED}
