"""The attempt book: a fresh reader takes what the watcher's ledger holds and reads only what changed."""

from __future__ import annotations

import time

from chunkpilot import layout
from chunkpilot.history import History
from chunkpilot.spec import AttemptRecord
from chunkpilot.store.local import LocalStore
from chunkpilot.control.attempts import AttemptBook, list_lives
from chunkpilot.control.observe import Observed, list_attempts

CHUNKS = [f"{i:04d}" for i in range(10)]


def counting(store: LocalStore) -> list[str]:
    """Every key ``store.get`` reads from now on."""
    got: list[str] = []
    get = store.get

    def counted(key: str) -> bytes:
        got.append(key)
        return get(key)

    store.get = counted
    return got


def listed(store: LocalStore) -> tuple[dict[tuple[str, int], float], Observed]:
    every: dict[str, dict[int, float]] = {}
    observed = Observed()
    list_attempts(store, every, observed)
    return {(c, a): m for c, attempts in every.items() for a, m in attempts.items()}, observed


def write_life(store: LocalStore, chunk: str, ended: bool) -> None:
    life = History()
    life.add("start", 100.0, pid=1)
    life.add("ready", 105.0)
    life.commit(110.0, 100.0, records=20, errors=1, prompt_tokens=200, completion_tokens=300, end=(0, 2000))
    life.add("beat", 115.0, answered=30, committed=20, held=0)
    if ended:
        life.add("end", 120.0, outcome="stopped", code=75)
    store.put(layout.history(chunk, 1, 0), life.to_bytes())


def test_a_fresh_reader_takes_the_ledger_and_reads_only_what_was_written_since(tmp_path):
    store = LocalStore(tmp_path)
    watcher = AttemptBook(store, None)
    for chunk in CHUNKS:
        record = AttemptRecord(chunk, 1, "local", f"r-{chunk}-a1", launched_at=100.0)
        store.put_if_absent(layout.attempt_record(chunk, 1), record.to_json())
        watcher.created(record)
    watcher.update("0003", 1, state="DONE", ended_at=200.0)
    write_life(store, "0003", ended=True)
    assert len(watcher.lives_of(list_lives(store))) == 1
    watcher.flush(force=True)
    time.sleep(0.02)
    # Written after the ledger: a record (by a later watcher) and a worker's history.
    store.put(layout.attempt_record("0005", 1),
              AttemptRecord("0005", 1, "local", "r-0005-a1", launched_at=100.0, state="FAILED").to_json())
    write_life(store, "0007", ended=False)

    reader = AttemptBook(store, None)
    got = counting(store)
    mtimes, observed = listed(store)
    assert observed.ledger is not None
    records = {r.chunk: r for r in reader.all(mtimes, 1, observed.ledger)}
    assert got == [layout.LEDGER, layout.attempt_record("0005", 1)]
    assert len(records) == 10 and records["0003"].state == "DONE" and records["0003"].ended_at == 200.0
    assert records["0005"].state == "FAILED"

    got.clear()
    lives = {life.chunk: life for life in reader.lives_of(list_lives(store))}
    assert got == [layout.history("0007", 1, 0)]  # 0003's finished life came with the ledger
    assert lives["0003"].outcome == "stopped" and lives["0003"].committed == 20 and lives["0003"].commits == ()
    assert lives["0007"].outcome is None and lives["0007"].answered_uncommitted == 10

    got.clear()
    reader.all(mtimes, 1, observed.ledger)  # a second look, nothing written since: nothing read
    assert got == []


def test_the_watcher_reads_nothing_back_and_writes_the_ledger_only_when_something_changed(tmp_path):
    store = LocalStore(tmp_path)
    watcher = AttemptBook(store, None)
    record = AttemptRecord("0000", 1, "local", "r-0000-a1", launched_at=100.0)
    store.put_if_absent(layout.attempt_record("0000", 1), record.to_json())
    watcher.created(record)
    watcher.update("0000", 1, state="LAUNCHED", job_id="7")
    got = counting(store)
    mtimes, observed = listed(store)
    assert watcher.all(mtimes, 1, observed.ledger)[0].job_id == "7"
    assert got == []  # its own writes are the latest: the lease makes it the only writer

    watcher.flush()
    first = store.head(layout.LEDGER).mtime
    time.sleep(0.02)
    watcher.flush(force=True)  # nothing changed since
    assert store.head(layout.LEDGER).mtime == first
    watcher.update("0000", 1, state="DONE", ended_at=150.0)
    watcher.flush()  # changed, but the last write was less than LEDGER_SECONDS ago
    assert store.head(layout.LEDGER).mtime == first
    watcher.flush(force=True)
    assert store.head(layout.LEDGER).mtime > first


def test_a_broken_ledger_costs_reads_not_answers(tmp_path):
    store = LocalStore(tmp_path)
    for chunk in CHUNKS[:3]:
        store.put(layout.attempt_record(chunk, 1), AttemptRecord(chunk, 1, "local", f"r-{chunk}-a1", 100.0).to_json())
    store.put(layout.LEDGER, b"not gzip")
    mtimes, observed = listed(store)
    got = counting(store)
    records = AttemptBook(store, None).all(mtimes, 1, observed.ledger)
    assert [r.chunk for r in records] == CHUNKS[:3]
    assert sorted(got) == sorted([layout.LEDGER] + [layout.attempt_record(c, 1) for c in CHUNKS[:3]])


def test_a_running_life_seen_ready_is_not_read_again_until_its_attempt_ends(tmp_path):
    store = LocalStore(tmp_path)
    watcher = AttemptBook(store, None)
    write_life(store, "0001", ended=False)  # a1.0: running, ready
    key = ("0001", 1, 0)
    got = counting(store)
    first = watcher.lives_of(list_lives(store), running={key})
    assert got == [layout.history(*key)] and first[0].ready_at == 105.0
    watcher.flush(force=True)
    write_life(store, "0001", ended=False)  # it commits on: its history changes

    got.clear()
    assert watcher.lives_of(list_lives(store), running={key})[0].ready_at == 105.0
    assert got == []  # the watcher does not read it again while it runs
    reader = AttemptBook(store, None)
    mtimes, observed = listed(store)
    reader.all(mtimes, 1, observed.ledger)
    got.clear()
    reader.lives_of(list_lives(store), running={key})
    assert got == []  # the ledger's copy stands in for it, as for the watcher
    reader.lives_of(list_lives(store), running=set())  # its attempt ended: it may be an interruption now
    assert got == [layout.history(*key)]
