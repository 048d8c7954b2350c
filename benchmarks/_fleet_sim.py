"""A discrete-event model of a cloud fleet answering one run, driven by the launcher's own decisions.

No process, machine or store is real; the clock is modelled. What is real: every reconcile cycle
calls ``chunkpilot.control.reconcile.decide`` (what to launch, cancel, release), every worker takes chunks
with ``chunkpilot.claims.decide_take``, and an idle worker picks the chunk to split with
``chunkpilot.splits.slowest_first`` and cuts it with ``split_target`` — the functions the launcher
and the workers run. The simulator plays the cloud (a quota of GPUs, cold starts, spot
preemptions) and the engines (a fixed rate), and keeps the GPU-time books.

Modes:

* ``per-chunk`` — the old model: one managed job per chunk, each job answers one chunk and ends
  (``--workers`` = chunks); at most ``gpus`` run at once, the rest wait (not billed).
* ``pulling`` — ``workers`` managed jobs that pull chunks until none is left (then end), and split
  the slowest chunk when idle.
* ``pool`` — the same workers as jobs exec'd onto a SkyPilot pool of ``gpus`` warm machines,
  up (setup done) when the run starts and brought down when it ends: billed the whole run.

The books, per machine-second billed (disjoint; they add up to the total):

* **cold** — a launch's start: machine setup (install, model download) and engine build, until
  its first chunk can be claimed;
* **working** — an engine answering a chunk;
* **lost to preemption** — the cold start again after a preemption (a new machine), plus the work
  thrown away (``lost_seconds`` of the in-flight answers per preemption);
* **idle** — billed with nothing to answer: a pool machine between jobs or in the tail.

A preemption comes with a notice (the worker commits and releases its claim, exit 75) unless
``notice`` is off: then the claim stays held until its lease runs out and the launcher decides.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field, replace

from chunkpilot.claims import CLAIM_TTL, Claim, decide_take
from chunkpilot.names import worker_id
from chunkpilot.spec import Progress
from chunkpilot.splits import slowest_first, split_target
from chunkpilot.control.backends.base import JobState, JobStatus
from chunkpilot.control.reconcile import ChunkView, Policy, WorkerView, decide

INF = float("inf")


@dataclass(frozen=True)
class Fleet:
    """Everything the model assumes (the benchmark prints it)."""

    mode: str  # per-chunk | pulling | pool
    chunks: int = 1000
    gpus: int = 20
    workers: int = 20
    tokens_per_chunk: float = 256_000  # output tokens a chunk needs (1,000 records x 256)
    chunk_spread: float = 0.25  # each chunk's tokens drawn uniformly within +-25%
    tokens_per_second: float = 1500.0  # one engine (one GPU)
    cold_seconds: float = 360.0  # managed job on a fresh machine: setup + model download + engine build
    exec_cold_seconds: float = 90.0  # a job exec'd onto a warm pool worker: engine build from the cached model
    provision_seconds: float = 60.0  # asking for a machine until it is billed (not billed)
    preemptions_per_gpu_hour: float = 0.1
    lost_seconds: float = 60.0  # work thrown away per preemption (the in-flight answers)
    notice: bool = True
    poll_seconds: float = 30.0  # reconcile cycle (watch polls every 5 s: this only delays launches, which are not billed)
    launch_batch: int = 16
    max_attempts: int = 10
    splits: bool = True
    seed: int = 0


@dataclass
class Books:
    cold: float = 0.0
    working: float = 0.0
    lost: float = 0.0
    idle: float = 0.0
    cold_starts: int = 0  # first starts of a launch
    restarts: int = 0  # cold starts again after a preemption (their time is on the lost line)
    preemptions: int = 0
    launches: int = 0
    splits: int = 0
    hung_cancels: int = 0
    wall: float = 0.0

    @property
    def total(self) -> float:
        return self.cold + self.working + self.lost + self.idle


@dataclass
class Job:
    slot: str
    attempt: int
    launched_at: float
    status: JobStatus = JobStatus.PENDING
    machine: int | None = None  # a pool machine, or a managed job's own (an id)
    ready_at: float = INF
    chunk: str | None = None
    since: float = 0.0  # when it started answering its chunk (or the work was last accounted)
    answered: int = 0  # chunks this launch finished
    recovering: bool = False  # its cold start is a restart after a preemption
    recoveries: int = 0  # preemptions recovered from (SkyPilot's recovery_count)
    running_since: float | None = None  # when it last became RUNNING (SkyPilot: start_at / last_recovered_at)
    token: int = 0  # invalidates scheduled events of an earlier phase


@dataclass
class Chunk:
    id: str
    left: float  # tokens still to answer (as of ``Job.since`` when held)
    claim: Claim | None = None
    done_at: float | None = None
    children: int = 0


@dataclass
class Machine:
    id: int
    billed_since: float
    job: str | None = None  # slot whose job runs on it
    idle_since: float | None = None
    setup_until: float = 0.0  # a replacement pool machine: its setup runs until then


@dataclass
class Sim:
    fleet: Fleet
    now: float = 0.0
    books: Books = field(default_factory=Books)
    chunks: dict[str, Chunk] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)  # slot -> latest launch
    attempts: dict[str, int] = field(default_factory=dict)
    machines: dict[int, Machine] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # slots whose job waits for a GPU
    events: list = field(default_factory=list)
    seq: int = 0
    next_machine: int = 0
    dirty: bool = True  # an event since the last reconcile cycle
    acted: bool = True  # the last cycle launched, cancelled or released something

    def __post_init__(self) -> None:
        f = self.fleet
        self.rng = random.Random(f.seed)
        for i in range(f.chunks):
            tokens = f.tokens_per_chunk * (1 + self.rng.uniform(-f.chunk_spread, f.chunk_spread))
            self.chunks[f"{i:04d}"] = Chunk(f"{i:04d}", tokens)
        if f.mode == "pool":  # warm machines, setup done before the run: billed from its start
            for _ in range(f.gpus):
                m = self._machine()
                m.idle_since = 0.0

    # -- the event queue -----------------------------------------------------------------

    def at(self, t: float, kind: str, *data) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def run(self, limit_hours: float = 200.0) -> Books:
        self.at(0.0, "reconcile")
        while self.events:
            t, _, kind, data = heapq.heappop(self.events)
            if t > limit_hours * 3600:
                raise RuntimeError(f"{self.fleet.mode}: not finished after {limit_hours} modelled hours")
            self.now = t
            if kind != "reconcile":
                self.dirty = True
            if kind == "reconcile" and self._reconcile():
                break
            elif kind == "ready":
                self._ready(*data)
            elif kind == "chunk_done":
                self._chunk_done(*data)
            elif kind == "preempt":
                self._preempt(*data)
            elif kind == "machine_up":
                self._machine_up(*data)
            elif kind == "pool_machine_up":
                self._pool_machine_up(*data)
            elif kind == "pool_setup_done":
                self._pool_setup_done(*data)
        self._close_books()
        return self.books

    # -- the launcher: decide() every poll ---------------------------------------------------

    def _reconcile(self) -> bool:
        f = self.fleet
        # Nothing happened since a cycle that did nothing, and no lease can run out: decide() would
        # answer the same (with notice every claim is released or held open-ended). Skipped for speed.
        if not self.dirty and not self.acted and f.notice:
            self.at(self.now + f.poll_seconds, "reconcile")
            return False
        self.dirty = False
        views = [ChunkView(c.id, c.done_at is not None, c.claim, done_at=c.done_at) for c in self.chunks.values()]
        workers = [WorkerView(slot, self.attempts[slot], JobState(job.status, recoveries=job.recoveries,
                                                                   running_since=job.running_since), job.launched_at)
                   for slot, job in self.jobs.items()]
        policy = Policy(max_attempts=f.max_attempts, workers=f.workers, max_launches_per_cycle=f.launch_batch,
                        finish_grace_seconds=0.0)
        d = decide(views, workers, policy, self.now)
        for r in d.releases:
            c = self.chunks[r.chunk]
            c.claim = replace(c.claim, state="released", reason=r.reason)
        for cancel in d.cancels:
            job = self.jobs[cancel.slot]
            if cancel.reason.startswith("hung"):
                self.books.hung_cancels += 1
            self._end_job(job, JobStatus.CANCELLED)
        for launch in d.launches:
            self.attempts[launch.slot] = launch.attempt
            self.jobs[launch.slot] = Job(launch.slot, launch.attempt, self.now)
            self.books.launches += 1
            self.waiting.append(launch.slot)
        self._place_waiting()
        self.acted = bool(d.launches or d.cancels or d.releases)
        if d.finished:
            self.books.wall = self.now
            return True
        self.at(self.now + f.poll_seconds, "reconcile")
        return False

    # -- the cloud ---------------------------------------------------------------------------

    def _machine(self) -> Machine:
        m = Machine(self.next_machine, self.now)
        self.machines[m.id] = m
        self.next_machine += 1
        rate = self.fleet.preemptions_per_gpu_hour / 3600
        if rate > 0:
            self.at(self.now + self.rng.expovariate(rate), "preempt", m.id)
        return m

    def _place_waiting(self) -> None:
        """Start waiting jobs: on a free pool machine, or (managed) on a new machine within the quota."""
        f = self.fleet
        busy = sum(1 for j in self.jobs.values() if j.machine is not None and j.status.active) if f.mode != "pool" else 0
        while self.waiting:
            job = self.jobs[self.waiting[0]]
            if job.status is not JobStatus.PENDING:
                self.waiting.pop(0)
                continue
            if f.mode == "pool":
                free = next((m for m in self.machines.values() if m.job is None and m.setup_until <= self.now), None)
                if free is None:
                    return
                self.waiting.pop(0)
                self._idle_until_now(free)
                free.job = job.slot
                self._start(job, free, f.exec_cold_seconds)
            else:
                if busy >= f.gpus:
                    return
                self.waiting.pop(0)
                busy += 1
                job.machine = -1  # asked for: billed from machine_up
                self.at(self.now + f.provision_seconds, "machine_up", job.slot, job.attempt, job.token)

    def _machine_up(self, slot: str, attempt: int, token: int) -> None:
        job = self.jobs.get(slot)
        if job is None or job.attempt != attempt or job.token != token or not job.status.active:
            return
        m = self._machine()
        m.job = slot
        self._start(job, m, self.fleet.cold_seconds)

    def _start(self, job: Job, machine: Machine, cold: float) -> None:
        job.machine, job.status, job.running_since = machine.id, JobStatus.RUNNING, self.now
        job.recoveries += job.recovering
        job.token += 1
        job.ready_at = self.now + cold
        if job.recovering:
            self.books.lost += cold
            self.books.restarts += 1
        else:
            self.books.cold += cold
            self.books.cold_starts += 1
        self.at(job.ready_at, "ready", job.slot, job.attempt, job.token)

    def _preempt(self, machine_id: int) -> None:
        m = self.machines.get(machine_id)
        if m is None:
            return
        f = self.fleet
        self.books.preemptions += 1
        self._idle_until_now(m)
        if m.setup_until > self.now:  # a replacement pool machine preempted during its setup
            self.books.lost -= m.setup_until - self.now
        del self.machines[machine_id]
        job = self.jobs.get(m.job) if m.job is not None else None
        if job is not None and job.status is JobStatus.RUNNING:
            if self.now < job.ready_at:  # preempted during its cold start: the rest of it was never spent
                if job.recovering:
                    self.books.lost -= job.ready_at - self.now
                else:
                    self.books.cold -= job.ready_at - self.now
            if job.chunk is not None:
                c = self.chunks[job.chunk]
                worked = self.now - job.since
                thrown = min(worked, f.lost_seconds)
                self.books.working += worked - thrown
                self.books.lost += thrown
                c.left = max(0.0, c.left - (worked - thrown) * f.tokens_per_second)
                if f.notice:
                    c.claim = replace(c.claim, state="released", reason="stopped: preempted")
                else:  # killed outright: its last renewal was just now
                    c.claim = replace(c.claim, expires_at=self.now + CLAIM_TTL)
                job.chunk = None
            # SkyPilot recovers the job in place (the same job, the same worker identity) on a new machine.
            job.status, job.recovering, job.ready_at = JobStatus.RECOVERING, True, INF
            job.token += 1
            job.machine = -1
            if f.mode != "pool":
                self.at(self.now + f.provision_seconds, "machine_up", job.slot, job.attempt, job.token)
        if f.mode == "pool":  # the pool replaces its worker: a new machine whose setup runs again
            self.at(self.now + f.provision_seconds, "pool_machine_up", job.slot if job is not None else None)

    def _pool_machine_up(self, slot: str | None) -> None:
        m = self._machine()
        m.setup_until = self.now + self.fleet.cold_seconds
        self.books.lost += self.fleet.cold_seconds
        job = self.jobs.get(slot) if slot is not None else None
        if job is not None and job.status is JobStatus.RECOVERING:
            m.job = slot
        self.at(m.setup_until, "pool_setup_done", m.id, job.token if job is not None else -1)

    def _pool_setup_done(self, machine_id: int, token: int) -> None:
        m = self.machines.get(machine_id)
        if m is None:
            return
        job = self.jobs.get(m.job) if m.job is not None else None
        if job is not None and job.token == token and job.status is JobStatus.RECOVERING:
            self._start(job, m, self.fleet.exec_cold_seconds)  # re-exec'd: the engine is built again
        else:
            m.job, m.idle_since = None, self.now
            self._place_waiting()

    # -- the workers -------------------------------------------------------------------------

    def _ready(self, slot: str, attempt: int, token: int) -> None:
        job = self.jobs.get(slot)
        if job is None or job.attempt != attempt or job.token != token or job.status is not JobStatus.RUNNING:
            return
        job.recovering = False
        self._next_chunk(job)

    def _next_chunk(self, job: Job) -> None:
        f = self.fleet
        if f.mode == "per-chunk" and job.answered >= 1:
            self._end_job(job, JobStatus.SUCCEEDED)
            return
        for c in self.chunks.values():
            if c.done_at is not None:
                continue
            verdict = decide_take(c.claim, job.slot, job.attempt, self.now, f.max_attempts)
            if verdict[0] != "take":
                continue
            c.claim = Claim(c.id, verdict[1], job.slot, job.attempt, "held", INF, self.now)
            self._work(job, c)
            return
        if f.splits and f.mode != "per-chunk" and self._split_for(job):
            return
        self._end_job(job, JobStatus.SUCCEEDED)

    def _work(self, job: Job, c: Chunk) -> None:
        job.chunk, job.since = c.id, self.now
        job.token += 1
        self.at(self.now + c.left / self.fleet.tokens_per_second, "chunk_done", job.slot, job.attempt, job.token)

    def _held_left(self, job: Job) -> float:
        c = self.chunks[job.chunk]
        return max(0.0, c.left - (self.now - job.since) * self.fleet.tokens_per_second)

    def _split_for(self, asker: Job) -> bool:
        """``slowest_first`` over the holders' beats, then ``split_target``: the asker takes the rest."""
        f = self.fleet
        holders = {j.chunk: j for j in self.jobs.values() if j.chunk is not None and j.status is JobStatus.RUNNING}
        beats = [Progress(cid, 1, "running", units_done=0, units_total=math.ceil(self._held_left(j)),
                          updated_at=self.now, units_per_s=f.tokens_per_second) for cid, j in holders.items()]
        worth = 2 * 5.0  # two heartbeats, as worker.loop asks
        for cid in slowest_first(beats, self.now, stale_after=CLAIM_TTL, min_seconds=worth):
            holder = holders[cid]
            left = self._held_left(holder)
            at = split_target(0, math.ceil(left), f.tokens_per_second, f.tokens_per_second,
                              min_units=int(worth * f.tokens_per_second))
            if at is None:
                continue
            parent = self.chunks[cid]
            self.books.working += self.now - holder.since
            parent.left = float(at)
            parent.children += 1
            child = Chunk(f"{cid}_{parent.children:02d}", left - at)
            self.chunks[child.id] = child
            self._work(holder, parent)  # the holder goes on with what it kept
            child.claim = Claim(child.id, 1, asker.slot, asker.attempt, "held", INF, self.now)
            self.books.splits += 1
            self._work(asker, child)
            return True
        return False

    def _chunk_done(self, slot: str, attempt: int, token: int) -> None:
        job = self.jobs.get(slot)
        if job is None or job.attempt != attempt or job.token != token or job.chunk is None:
            return
        c = self.chunks[job.chunk]
        self.books.working += self.now - job.since
        c.left, c.done_at = 0.0, self.now
        c.claim = replace(c.claim, state="done")
        job.chunk = None
        job.answered += 1
        self._next_chunk(job)

    def _end_job(self, job: Job, status: JobStatus) -> None:
        if job.chunk is not None:  # cancelled while answering
            c = self.chunks[job.chunk]
            self.books.working += self.now - job.since
            c.left = self._held_left(job)
            c.claim = replace(c.claim, state="released", reason="cancelled")
            job.chunk = None
        if self.now < job.ready_at < INF:  # cancelled during its cold start
            if job.recovering:
                self.books.lost -= job.ready_at - self.now
            else:
                self.books.cold -= job.ready_at - self.now
        job.status, job.ready_at = status, INF
        job.token += 1
        m = self.machines.get(job.machine) if job.machine is not None and job.machine >= 0 else None
        job.machine = None
        if m is not None:
            if self.fleet.mode == "pool":
                m.job, m.idle_since = None, self.now
            else:
                del self.machines[m.id]
        self._place_waiting()

    def _idle_until_now(self, m: Machine) -> None:
        if m.idle_since is not None:
            self.books.idle += self.now - m.idle_since
            m.idle_since = None

    def _close_books(self) -> None:
        for m in self.machines.values():
            if self.fleet.mode == "pool":
                self._idle_until_now(m)  # pool down when the run ends
