"""Chunk claims: which worker answers which chunk, taken and kept with conditional writes.

A warm worker (``worker.loop``) keeps its engine and pulls chunks: it *claims* one, answers
it, claims the next. A claim is one small object per chunk, ``claims/<chunk>.json``:

* **taken** by creating it (put-if-absent), or — once its lease has expired, its holder has
  released it, or the launcher saw its holder's job end — by replacing it with a conditional
  write (``put_if_match`` on the etag just read). Either way only one taker can win.
* **kept** by its holder renewing the lease the same way (``renew``) at every heartbeat and
  before every commit; a renewal that fails means someone took the chunk over, and the holder
  stops feeding it at once (``LostClaim``): it commits nothing more.
* Each taking is a new *attempt* of the chunk (``attempt`` 1, 2, ...): it names the parts the
  attempt writes, and a chunk whose claims reached the run's ``max_attempts`` (plus what pauses
  gave back) is not taken again: it has failed.

Claims are about cost, not correctness: parts are immutable and named by the record interval
they hold, ``_SUCCESS`` is put-if-absent, and collect picks one consistent cover of a chunk,
so two workers that both answer a range (a renewal racing a takeover in the instant between
the holder's last check and its write) waste money but never duplicate or lose a record.

Pure decisions (``decide_take``) are separate from the store calls so the races can be
tested by interleaving calls on purpose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

from chunkpilot import layout
from chunkpilot.errors import ChunkpilotError, NotFoundError
from chunkpilot.spec import ResumeAllowance
from chunkpilot.store import Store

# How long a claim lasts without renewal. A worker renews at every heartbeat (every few
# seconds) and before every commit, so this only decides how soon a vanished worker's chunk is
# taken over when nobody saw its job end; it also absorbs clock skew between machines.
CLAIM_TTL = 60.0

ClaimState = Literal["held", "released", "done", "failed"]


class LostClaim(ChunkpilotError):
    """This worker's claim on a chunk was taken over (its lease expired) or released by the launcher."""


@dataclass(frozen=True)
class Claim:
    """``claims/<chunk>.json``.

    ``state``: ``held`` (worker ``worker``'s launch ``worker_attempt`` answers it until
    ``expires_at``), ``released`` (its holder stopped — a preemption, or the launcher saw the
    holder's job end — anyone may take it), ``done`` (its ``_SUCCESS`` is written) or
    ``failed`` (it stopped for good: ``reason`` says why; not taken again).
    """

    chunk: str
    attempt: int
    worker: str
    worker_attempt: int
    state: ClaimState
    expires_at: float
    claimed_at: float = 0.0  # when this attempt took it
    reason: str = ""

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Claim":
        data = json.loads(raw)
        return cls(**{k: data[k] for k in ("chunk", "attempt", "worker", "worker_attempt", "state", "expires_at")},
                   claimed_at=float(data.get("claimed_at", 0.0)), reason=data.get("reason", ""))

    def live(self, now: float) -> bool:
        """Held, and its lease has not run out."""
        return self.state == "held" and self.expires_at > now


@dataclass(frozen=True)
class Held:
    """A claim this process holds, with the etag of its own last write (what the next one must match)."""

    claim: Claim
    etag: str


Take = tuple[Literal["take"], int] | tuple[Literal["busy", "done", "failed", "exhausted"], str]


def decide_take(current: Claim | None, worker: str, worker_attempt: int, now: float, max_attempts: int) -> Take:
    """Whether worker ``worker``'s launch ``worker_attempt`` may take a chunk whose claim is
    ``current`` now, and as which attempt of the chunk. Pure.

    ``("take", attempt)``; ``("busy", holder)`` while another worker's lease runs; ``("done", "")``
    and ``("failed", reason)`` for a chunk that is finished; ``("exhausted", why)`` when its
    attempts are used up (the chunk has failed too).

    A worker takes back at once a claim held by its own launch (the job restarted in place after
    a preemption: the same attempt goes on) or by an earlier launch of its own worker slot (the
    launcher relaunches a slot only once its job has ended: that holder is gone).
    """
    if current is None:
        return ("take", 1)
    if current.state == "done":
        return ("done", "")
    if current.state == "failed":
        return ("failed", current.reason)
    if current.state == "held" and current.worker == worker:
        if current.worker_attempt == worker_attempt:
            return ("take", current.attempt)
        if current.worker_attempt < worker_attempt:
            current = replace(current, state="released", reason="its worker was relaunched")
    if current.live(now):
        return ("busy", f"{current.worker}-a{current.worker_attempt}")
    if current.attempt >= max_attempts:
        how = "released" if current.state == "released" else "its lease expired"
        return ("exhausted", f"gave up after {current.attempt} attempt(s); the last was {how}"
                             + (f": {current.reason}" if current.reason else ""))
    return ("take", current.attempt + 1)


def read_allowance(store: Store) -> ResumeAllowance:
    """The run's ``resumed.json`` (rooted at the run), or no allowance when it has none."""
    try:
        return ResumeAllowance.from_json(store.get(layout.RESUMED))
    except (NotFoundError, ValueError, TypeError):
        return ResumeAllowance()


def read_claim(store: Store, chunk: str) -> tuple[Claim | None, str | None]:
    """The chunk's claim and its etag, or (None, None) when it was never claimed.

    The etag is read *before* the body: a conditional write against it fails if the body
    changed in between, so a decision on a newer body than the etag is never written.
    """
    key = layout.claim(chunk)
    try:
        etag = store.head(key).etag
        return Claim.from_json(store.get(key)), etag
    except NotFoundError:
        return None, None


def try_claim(store: Store, chunk: str, worker: str, worker_attempt: int, now: float, max_attempts: int,
              ttl: float = CLAIM_TTL, known_absent: bool = False) -> tuple[Held | None, Take]:
    """Take ``chunk`` for ``worker``'s launch ``worker_attempt`` if ``decide_take`` allows; returns
    what it holds (None if it lost a race or may not take it) and the decision.
    ``known_absent``: a listing just showed no claim, so creating one is tried without a read."""
    current, etag = (None, None) if known_absent else read_claim(store, chunk)
    decision = decide_take(current, worker, worker_attempt, now, max_attempts)
    if decision[0] != "take":
        return None, decision
    claim = Claim(chunk, decision[1], worker, worker_attempt, "held", now + ttl, now)
    key = layout.claim(chunk)
    wrote = store.put_if_absent(key, claim.to_json()) if etag is None else store.put_if_match(key, claim.to_json(), etag)
    if not wrote:
        return None, ("busy", "another worker took it just now")
    return Held(claim, store.head(key).etag), decision


def renew(store: Store, held: Held, now: float, ttl: float = CLAIM_TTL) -> Held:
    """Extend the lease; raises LostClaim if anyone else wrote the claim since our last write."""
    claim = replace(held.claim, expires_at=now + ttl)
    key = layout.claim(claim.chunk)
    if not store.put_if_match(key, claim.to_json(), held.etag):
        raise LostClaim(f"chunk {claim.chunk}: attempt {claim.attempt} was taken over (its lease expired) or released")
    return Held(claim, store.head(key).etag)


def end(store: Store, held: Held, state: ClaimState, reason: str = "") -> bool:
    """Hand the chunk back (``released``) or stop it for good (``failed``); False if it was no longer ours."""
    claim = replace(held.claim, state=state, reason=reason[:500])
    return store.put_if_match(layout.claim(claim.chunk), claim.to_json(), held.etag)


def release_for_gone_job(store: Store, chunk: str, worker: str, worker_attempt: int, why: str) -> bool:
    """The launcher saw launch ``worker_attempt`` of ``worker`` end: if it still holds ``chunk``,
    release it now instead of waiting for its lease to run out. False if it held nothing (or a
    renewal raced us: then it is alive after all)."""
    current, etag = read_claim(store, chunk)
    if (current is None or etag is None or current.state != "held" or current.worker != worker
            or current.worker_attempt != worker_attempt):
        return False
    return store.put_if_match(layout.claim(chunk), replace(current, state="released", reason=why).to_json(), etag)
