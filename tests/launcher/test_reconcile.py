"""The relaunch policy as a table: chunks' markers and claims, workers' jobs in; decisions out."""

from __future__ import annotations

import pytest

from chunkpilot.claims import Claim
from chunkpilot.control.backends.base import JobState, JobStatus
from chunkpilot.control.reconcile import Cancel, ChunkState, ChunkView, Launch, Policy, Release, WorkerView, decide, slot_limit

NOW = 1_000_000.0


def chunk(name="0000", done=False, holder=None, attempt=1, state="held", expires_at=NOW + 30, reason=""):
    """A chunk; ``holder`` = (slot, launch) holding its claim, None for a chunk never claimed."""
    if holder is None:
        return ChunkView(name, done)
    return ChunkView(name, done, Claim(name, attempt, holder[0], holder[1], state, expires_at, NOW - 30, reason))


def worker(slot="w0", attempts=1, status=JobStatus.RUNNING, launched_at=NOW - 10, detail=""):
    return WorkerView(slot, attempts, JobState(status, detail) if status is not None else None, launched_at)


def test_a_new_run_launches_one_worker_per_slot_not_per_chunk():
    d = decide([chunk(f"000{i}") for i in range(8)], [], Policy(workers=3), NOW)
    assert d.launches == [Launch("w0", 1), Launch("w1", 1), Launch("w2", 1)]
    assert all(s is ChunkState.PENDING for s in d.states.values()) and not d.finished


def test_no_more_workers_than_unfinished_chunks():
    chunks = [chunk("0000", done=True), chunk("0001")]
    assert decide(chunks, [], Policy(workers=4), NOW).launches == [Launch("w0", 1)]


def test_a_done_chunk_is_done_whatever_its_claim_or_jobs_say():
    d = decide([chunk(done=True, holder=("w0", 1))], [worker(status=JobStatus.FAILED)], Policy(), NOW)
    assert d.states["0000"] is ChunkState.DONE and not d.launches and d.finished


def test_a_held_chunk_is_running_and_names_its_holder():
    d = decide([chunk(holder=("w1", 2))], [worker("w0", status=JobStatus.SUCCEEDED), worker("w1", 2)], Policy(workers=2), NOW)
    assert d.states["0000"] is ChunkState.RUNNING and d.holders["0000"] == "w1-a2"
    assert not d.launches, "the one unfinished chunk has a live worker"


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUCCEEDED])
def test_a_worker_seen_ended_hands_its_chunk_back_at_once_and_is_relaunched(status):
    d = decide([chunk(holder=("w0", 1)), chunk("0001")], [worker(status=status)], Policy(workers=1), NOW)
    assert d.releases == [Release("0000", "w0", 1, d.releases[0].reason)] and "ended" in d.releases[0].reason
    assert d.states["0000"] is ChunkState.RETRYING
    assert d.launches == [Launch("w0", 2)]
    assert d.ended[0].slot == "w0" and d.ended[0].state is status


def test_an_expired_claim_goes_back_to_the_pool():
    d = decide([chunk(holder=("w3", 1), expires_at=NOW - 1)], [worker("w0")], Policy(workers=1), NOW)
    assert d.states["0000"] is ChunkState.RETRYING and not d.releases and not d.launches


def test_a_running_worker_whose_lease_ran_out_is_hung_cancelled_and_relaunched():
    d = decide([chunk(holder=("w0", 1), expires_at=NOW - 5)], [worker("w0")], Policy(workers=1), NOW)
    assert d.cancels == [Cancel("w0", 1, d.cancels[0].reason)] and "hung" in d.cancels[0].reason
    assert d.launches == [Launch("w0", 2)], "its relaunch takes its chunk back at once"


def test_a_job_the_backend_is_recovering_is_not_hung_and_its_chunk_goes_to_another_worker():
    """SkyPilot restarting a preempted job in place outlasts a claim's lease: cancelling it would
    throw the recovery away for a cold start. Its expired claim is takeable meanwhile."""
    d = decide([chunk(holder=("w0", 1), expires_at=NOW - 5), chunk("0001", holder=("w1", 1))],
               [worker("w0", status=JobStatus.RECOVERING), worker("w1")], Policy(workers=2), NOW)
    assert not d.cancels and not d.launches and not d.releases
    assert d.states["0000"] is ChunkState.RETRYING and d.worker_states["w0"] == "RECOVERING"


def test_a_job_recovered_a_moment_ago_is_not_hung_while_its_setup_runs_but_is_after_the_grace():
    """After a recovery SkyPilot runs the task's setup in RUNNING, minutes before the worker can renew
    the claim it held: within ``restart_grace_seconds`` of the recovery that is no hang."""
    expired = [chunk(holder=("w0", 1), expires_at=NOW - 5)]
    recovered = [WorkerView("w0", 1, JobState(JobStatus.RUNNING, recoveries=1, running_since=NOW - 120), NOW - 3600)]
    d = decide(expired, recovered, Policy(workers=1), NOW)
    assert not d.cancels and d.states["0000"] is ChunkState.RETRYING
    d = decide(expired, recovered, Policy(workers=1, restart_grace_seconds=60), NOW)
    assert [c.slot for c in d.cancels] == ["w0"] and "hung" in d.cancels[0].reason
    # A job never recovered gets no grace: its claim expiring is a hang at once.
    fresh = [WorkerView("w0", 1, JobState(JobStatus.RUNNING, running_since=NOW - 120), NOW - 130)]
    assert [c.slot for c in decide(expired, fresh, Policy(workers=1), NOW).cancels] == ["w0"]


def test_a_configuration_failure_is_not_relaunched_and_fails_what_nobody_can_run():
    d = decide([chunk("0000"), chunk("0001")], [worker(status=JobStatus.FAILED_CONFIG, detail="setup failed: pip")],
               Policy(workers=1), NOW)
    assert not d.launches
    assert {d.states["0000"], d.states["0001"]} == {ChunkState.FAILED}
    assert "no worker can run" in d.reasons["0000"] and "setup failed" in d.reasons["0000"] and d.finished


def test_a_chunk_fails_for_good_when_its_claim_says_so():
    d = decide([chunk(holder=("w0", 1), state="failed", reason="the first 32 records all failed")],
               [worker(status=JobStatus.SUCCEEDED)], Policy(workers=1), NOW)
    assert d.states["0000"] is ChunkState.FAILED and "first 32 records" in d.reasons["0000"] and d.finished


def test_a_chunk_gives_up_after_max_attempts_and_pauses_give_attempts_back():
    released = chunk(holder=("w0", 1), attempt=3, state="released")
    d = decide([released], [worker(status=JobStatus.FAILED)], Policy(max_attempts=3), NOW)
    assert d.states["0000"] is ChunkState.FAILED and "gave up after 3 attempt(s)" in d.reasons["0000"]
    d = decide([released], [worker(status=JobStatus.FAILED)], Policy(max_attempts=3, extra_attempts={"0000": 1}), NOW)
    assert d.states["0000"] is ChunkState.RETRYING and d.launches == [Launch("w0", 2)]


def test_a_slot_is_launched_at_most_its_limit():
    policy = Policy(max_attempts=2, workers=2)
    chunks = [chunk(f"000{i}") for i in range(4)]
    assert slot_limit(policy, 4) == 4
    d = decide(chunks, [worker("w0", 4, JobStatus.FAILED), worker("w1", 1)], policy, NOW)
    assert not d.launches and d.worker_states["w0"].startswith("FAILED")
    d = decide(chunks, [worker("w0", 4, JobStatus.FAILED), worker("w1", 1, JobStatus.FAILED)], policy, NOW)
    assert d.launches == [Launch("w1", 2)]


def test_a_launch_not_yet_visible_waits_for_its_grace_then_is_relaunched():
    fresh = worker(status=JobStatus.MISSING, launched_at=NOW - 10)
    old = worker(status=JobStatus.MISSING, launched_at=NOW - 120)
    assert decide([chunk()], [fresh], Policy(missing_grace_seconds=60), NOW).launches == []
    assert decide([chunk()], [old], Policy(missing_grace_seconds=60), NOW).launches == [Launch("w0", 2)]


def test_a_recovering_worker_is_left_to_the_backend():
    d = decide([chunk(holder=("w0", 1))], [worker(status=JobStatus.RECOVERING)], Policy(), NOW)
    assert not d.launches and not d.cancels and d.states["0000"] is ChunkState.RUNNING


def test_once_every_chunk_is_final_workers_get_a_grace_to_end_then_are_stopped():
    workers = [worker("w0"), worker("w1", status=JobStatus.CANCELLING)]
    just_done = ChunkView("0000", True, done_at=NOW - 5)
    d = decide([just_done], workers, Policy(workers=2, finish_grace_seconds=30), NOW)
    assert not d.cancels and d.finished, "a worker finds nothing left and ends by itself"
    d = decide([just_done], workers, Policy(workers=2, finish_grace_seconds=30), NOW + 30)
    assert d.cancels == [Cancel("w0", 1, "every chunk is finished")], "one still running then (hung) is stopped"
    assert not d.finished, "finished once the stops are out"


def test_a_paused_run_stops_its_workers_and_launches_nothing():
    d = decide([chunk(holder=("w0", 1)), chunk("0001")], [worker()], Policy(run_cancelled=True, workers=2), NOW)
    assert not d.launches and d.cancels == [Cancel("w0", 1, "run paused")]
    assert set(d.states.values()) == {ChunkState.CANCELLED}


# -- several engines on one machine: claims by w0e1 count for slot w0 -----------------------------


def test_an_engine_of_a_several_gpu_job_counts_for_its_slot():
    # w0's job runs two engines (w0, w0e1), each holding a chunk: the slot is busy, nothing to launch.
    chunks = [chunk("0000", holder=("w0", 1)), chunk("0001", holder=("w0e1", 1)), chunk("0002")]
    d = decide(chunks, [worker("w0")], Policy(workers=1), NOW)
    assert d.states["0001"] is ChunkState.RUNNING and d.holders["0001"] == "w0e1-a1" and not d.launches
    # The job ended: both engines' claims go back at once, by their own ids, and the slot is relaunched.
    d = decide(chunks, [worker("w0", status=JobStatus.FAILED)], Policy(workers=1), NOW)
    assert sorted((r.chunk, r.slot) for r in d.releases) == [("0000", "w0"), ("0001", "w0e1")]
    assert d.launches == [Launch("w0", 2)]
    # An engine whose lease ran out makes the whole machine hung: it is the unit that is relaunched.
    stuck = [chunk("0000", holder=("w0", 1)), chunk("0001", holder=("w0e1", 1), expires_at=NOW - 1)]
    d = decide(stuck, [worker("w0")], Policy(workers=1), NOW)
    assert d.cancels == [Cancel("w0", 1, d.cancels[0].reason)] and "chunk 0001 expired" in d.cancels[0].reason


def test_launches_go_out_in_bounded_batches():
    chunks = [chunk(f"{i:04d}") for i in range(50)]
    d = decide(chunks, [], Policy(workers=50, max_launches_per_cycle=16), NOW)
    assert d.launches == [Launch(f"w{i}", 1) for i in range(16)]
    assert sum(s == "WAITING" for s in d.worker_states.values()) == 34
    launched = [worker(f"w{i}", status=JobStatus.PENDING) for i in range(16)]
    d = decide(chunks, launched, Policy(workers=50, max_launches_per_cycle=16), NOW)
    assert d.launches == [Launch(f"w{i}", 1) for i in range(16, 32)]
    assert decide(chunks, [], Policy(workers=50), NOW).launches[-1] == Launch("w49", 1)  # no bound: all at once
