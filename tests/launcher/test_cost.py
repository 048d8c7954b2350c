"""Cost accounting and pricing, pure: attempt records and worker lives in, dollars out."""

from __future__ import annotations

import pytest

from chunkpilot.history import Life
from chunkpilot.spec import AttemptRecord
from chunkpilot.control.cost import interruptions, run_cost
from chunkpilot.control.pricing import Price, price_for, user_price


def record(chunk, attempt, launched, ended=None, price=1.0, on_demand=3.0, state="DONE"):
    return AttemptRecord(chunk, attempt, "sky", f"r-{chunk}-a{attempt}", launched, ended_at=ended, state=state,
                         price_per_hour=price, on_demand_per_hour=on_demand, price_source="test")


def life(chunk, attempt, n, start, ready, last_seen, last_commit, committed, uncommitted=0, outcome=None):
    return Life(chunk, attempt, n, start, ready, last_seen, last_commit, committed, 0, 0, 0, uncommitted, outcome)


def test_a_preempted_chunk_costs_its_lost_work_and_on_demand_would_cost_the_useful_rest():
    # Chunk 0000: one attempt, 0 -> 3600 s. Chunk 0001: attempt 1 killed at 1800 s (last save at 1500 s,
    # 40 records answered but not saved), attempt 2 launched at 1900 s, engine ready at 2000 s, done at 3700 s.
    records = [record("0000", 1, 0, 3600), record("0001", 1, 0, 1800, state="FAILED"), record("0001", 2, 1900, 3700)]
    lives = [life("0000", 1, 0, 10, 100, 3600, 3590, 500, outcome="done"),
             life("0001", 1, 0, 10, 100, 1795, 1500, 300, uncommitted=40),
             life("0001", 2, 0, 1910, 2000, 3700, 3690, 200, outcome="done")]
    cost = run_cost(records, lives, now=5000, eta_seconds=None, finished=True)
    assert cost.gpu_seconds == 3600 + 1800 + 1800
    assert cost.so_far == pytest.approx(2.0)  # 7200 s at $1/h
    (it,) = cost.interruptions
    assert (it.chunk, it.attempt, it.how, it.regenerated) == ("0001", 1, "killed", 40)
    assert it.lost_seconds == 300 and it.restart_seconds == 100  # 1500 -> 1800, then 1900 -> 2000
    assert cost.lost_records == 40 and cost.lost_seconds == 400
    assert cost.lost_cost == pytest.approx(400 / 3600)
    assert cost.on_demand == pytest.approx((7200 - 400) / 3600 * 3.0)
    assert cost.saving == pytest.approx(cost.on_demand - 2.0)
    assert cost.projected == cost.so_far


def test_a_run_in_progress_is_projected_at_what_runs_now():
    records = [record("0000", 1, 0, None, price=2.0), record("0001", 1, 0, 600, price=2.0)]
    cost = run_cost(records, [], now=1800, eta_seconds=3600, finished=False)
    assert cost.so_far == pytest.approx((1800 + 600) / 3600 * 2.0)
    assert cost.per_hour_now == 2.0 and cost.projected == pytest.approx(cost.so_far + 2.0)
    assert run_cost(records, [], now=1800, eta_seconds=None, finished=False).projected is None


def test_an_unpriced_attempt_is_counted_not_guessed():
    records = [record("0000", 1, 0, 3600), record("0001", 1, 0, None, price=None, on_demand=None)]
    cost = run_cost(records, [], now=3600, eta_seconds=None, finished=False)
    assert cost.so_far == pytest.approx(1.0) and cost.unpriced_attempts == 1 and cost.on_demand is None
    nothing = run_cost([record("0000", 1, 0, 60, price=None, on_demand=None)], [], now=60, eta_seconds=None, finished=True)
    assert nothing.so_far is None and nothing.projected is None and nothing.gpu_seconds == 60
    overridden = run_cost(records, [], now=3600, eta_seconds=None, finished=False, override=Price(0.5, None, "--price-per-hour"))
    assert overridden.so_far == pytest.approx(1.0) and overridden.unpriced_attempts == 0 and overridden.on_demand is None


def test_a_restart_in_place_and_a_running_life_are_told_apart():
    records = [record("0000", 1, 0, None)]
    restarted = [life("0000", 1, 0, 10, 50, 900, 880, 100, uncommitted=7),
                 life("0000", 1, 1, 1000, 1060, 1500, 1490, 50)]
    (it,) = interruptions(records, restarted, now=1600)  # the running second life is no interruption
    assert (it.life, it.at, it.lost_seconds, it.restart_seconds, it.regenerated) == (0, 900, 20, 160, 7)
    # A worker that stopped on SIGTERM (a pause) committed what it had: nothing answered twice.
    stopped = [life("0000", 1, 0, 10, 50, 900, 890, 100, outcome="stopped")]
    (it,) = interruptions([record("0000", 1, 0, 905, state="CANCELLED")], stopped, now=1600)
    assert it.how == "stopped" and it.regenerated == 0 and it.lost_seconds == 15


def catalog(cloud, spot, *, instance_type=None, accelerators=None, region=None, zone=None):
    """A price table standing in for SkyPilot's (the real one is tested in tests/launcher/backends)."""
    table = {("g6.xlarge", True): 0.32, ("g6.xlarge", False): 0.80}
    if zone == "us-east-1a":
        raise LookupError("zone not in the catalog by that name")
    if instance_type is None:
        if accelerators != {"L4": 1}:
            raise LookupError(f"{cloud} offers no {accelerators}")
        instance_type = "g6.xlarge"
    return table[(instance_type, spot)], instance_type


def test_prices_come_from_the_user_first_then_the_catalog():
    job = {"cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a", "accelerators": {"L4": 1}, "spot": True}
    assert price_for(job, None, None, catalog) == Price(0.32, 0.80, "SkyPilot catalog: AWS us-east-1 g6.xlarge spot")
    assert price_for({**job, "spot": False}, None, None, catalog) == Price(0.80, 0.80, "SkyPilot catalog: AWS us-east-1 g6.xlarge")
    mine = user_price(0.25, None)
    assert price_for(job, None, mine, catalog) == Price(0.25, 0.80, "--price-per-hour; on-demand from SkyPilot's catalog")
    assert price_for(job, None, user_price(0.25, 0.6), catalog) == Price(0.25, 0.6, "--price-per-hour")
    assert price_for({"cloud": "local"}, None, mine, None) == Price(0.25, None, "--price-per-hour")
    assert price_for({"cloud": "local"}, None, None, None).per_hour is None
    assert "offers no" in price_for({**job, "accelerators": {"H100": 1}}, None, None, catalog).source
    assert price_for({}, True, None, catalog) == Price(None, None, "resources not known yet")
