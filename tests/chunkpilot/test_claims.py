"""Chunk claims: the pure decision, and the races on a real local folder and a real S3 server,
interleaved on purpose (a store wrapper stops a taker between its read and its conditional write)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chunkpilot import claims, layout
from chunkpilot.claims import Claim, LostClaim, decide_take
from chunkpilot.store import Store, open_store

NOW = 1_000_000.0


def held(attempt=1, worker="w1", worker_attempt=1, expires_at=NOW + 30, state="held") -> Claim:
    return Claim("0003", attempt, worker, worker_attempt, state, expires_at, NOW - 30)


@pytest.mark.parametrize("current, me, expected", [
    (None, ("w0", 1), ("take", 1)),
    (held(), ("w0", 1), ("busy", "w1-a1")),
    (held(expires_at=NOW - 1), ("w0", 1), ("take", 2)),  # lease ran out
    (held(state="released"), ("w0", 1), ("take", 2)),
    (held(state="done"), ("w0", 1), ("done", "")),
    (held(state="failed"), ("w0", 1), ("failed", "")),
    (held(), ("w1", 1), ("take", 1)),  # its own launch, restarted in place: the same attempt goes on
    (held(), ("w1", 2), ("take", 2)),  # a relaunch of its slot: the holder is gone, a new attempt
    (held(worker_attempt=3), ("w1", 2), ("busy", "w1-a3")),  # an older launch never takes from a newer one
])
def test_who_may_take_a_chunk(current, me, expected):
    assert decide_take(current, *me, NOW, max_attempts=3) == expected


def test_a_chunk_whose_attempts_are_used_up_is_not_taken_again():
    decision = decide_take(held(attempt=3, expires_at=NOW - 1), "w0", 1, NOW, max_attempts=3)
    assert decision[0] == "exhausted" and "gave up after 3 attempt(s)" in decision[1]
    assert decide_take(held(attempt=3, expires_at=NOW - 1), "w0", 1, NOW, max_attempts=4) == ("take", 4)


def test_the_claim_json_is_pinned():
    claim = Claim("0003", 2, "w1", 4, "held", 1000.5, 940.5, "")
    assert claim.to_json() == (b'{"attempt": 2, "chunk": "0003", "claimed_at": 940.5, "expires_at": 1000.5, '
                               b'"reason": "", "state": "held", "worker": "w1", "worker_attempt": 4}\n')
    assert Claim.from_json(claim.to_json()) == claim


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "run"))
    return open_store(request.getfixturevalue("s3_store_uri"))


class PausingStore:
    """A store whose first conditional write (put_if_absent / put_if_match) waits until told to go on:
    the caller has read the claim and decided, and is stopped right before it writes."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.reached = threading.Event()
        self.go_on = threading.Event()
        self._paused = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.reached.set()
            assert self.go_on.wait(30)

    def put_if_absent(self, key, data):
        self._pause()
        return self.inner.put_if_absent(key, data)

    def put_if_match(self, key, data, etag):
        self._pause()
        return self.inner.put_if_match(key, data, etag)


def race(store: Store, first, second):
    """Run ``first(paused_store)`` up to its conditional write, all of ``second(store)``, then the
    rest of ``first``; returns (first's result, second's result)."""
    paused = PausingStore(store)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("first", first(paused)))
    thread.start()
    assert paused.reached.wait(30)
    out["second"] = second(store)
    paused.go_on.set()
    thread.join(30)
    return out["first"], out["second"]


def test_two_workers_racing_for_a_new_chunk_one_wins(store):
    a, b = race(store, lambda s: claims.try_claim(s, "0003", "w0", 1, NOW, 3),
                lambda s: claims.try_claim(s, "0003", "w1", 1, NOW, 3))
    assert a[0] is None and a[1][0] == "busy"  # it had decided to take it; its write lost
    assert b[0] is not None and b[0].claim.worker == "w1"
    assert claims.read_claim(store, "0003")[0].worker == "w1"


def test_two_workers_racing_to_take_over_an_expired_claim_one_wins(store):
    store.put(layout.claim("0003"), held(expires_at=NOW - 5).to_json())
    a, b = race(store, lambda s: claims.try_claim(s, "0003", "w0", 1, NOW, 3),
                lambda s: claims.try_claim(s, "0003", "w2", 1, NOW, 3))
    assert a[0] is None and b[0].claim.attempt == 2
    assert claims.read_claim(store, "0003")[0].worker == "w2"


def test_a_holder_stopped_past_its_lease_cannot_renew_once_taken_over(store):
    mine, _ = claims.try_claim(store, "0003", "w0", 1, NOW, 3, ttl=60)
    mine = claims.renew(store, mine, NOW + 30, ttl=60)
    assert mine.claim.expires_at == NOW + 90 and mine.claim.claimed_at == NOW
    with pytest.raises(LostClaim):  # only the etag of our own last write matches
        claims.renew(store, claims.Held(mine.claim, "stale-etag"), NOW + 31, ttl=60)
    # Stopped (SIGSTOP) for longer than its lease: another worker takes the chunk over...
    theirs, decision = claims.try_claim(store, "0003", "w1", 1, NOW + 200, 3, ttl=60)
    assert decision == ("take", 2) and theirs is not None
    # ...and when the first wakes up its renewal fails, so it commits nothing more.
    with pytest.raises(LostClaim):
        claims.renew(store, mine, NOW + 201, ttl=60)
    assert not claims.end(store, mine, "done")
    assert claims.read_claim(store, "0003")[0] == theirs.claim


def test_a_renewal_racing_a_takeover_loses_or_wins_whole(store):
    """The holder's renewal read its etag before the taker wrote: the renewal's conditional write fails."""
    mine, _ = claims.try_claim(store, "0003", "w0", 1, NOW, 3, ttl=60)
    store.put(layout.claim("0003"), Claim("0003", 1, "w0", 1, "held", NOW - 1, NOW).to_json())  # lease ran out
    mine = claims.Held(mine.claim, store.head(layout.claim("0003")).etag)

    def renew(s):
        try:
            return claims.renew(s, mine, NOW + 100, ttl=60)
        except LostClaim:
            return None

    renewed, (taken, _) = race(store, renew, lambda s: claims.try_claim(s, "0003", "w1", 1, NOW + 100, 3))
    assert renewed is None and taken is not None
    assert claims.read_claim(store, "0003")[0].worker == "w1"


def test_the_launcher_releases_only_the_claim_of_the_job_it_saw_end(store):
    store.put(layout.claim("0003"), held(worker="w1", worker_attempt=2).to_json())
    assert not claims.release_for_gone_job(store, "0003", "w1", 1, "ended")  # an older launch of the slot
    assert not claims.release_for_gone_job(store, "0003", "w0", 2, "ended")
    assert claims.release_for_gone_job(store, "0003", "w1", 2, "its job failed")
    released = claims.read_claim(store, "0003")[0]
    assert released.state == "released" and released.reason == "its job failed"
    assert decide_take(released, "w0", 1, NOW, 3) == ("take", 2)
