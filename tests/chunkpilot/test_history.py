"""The worker history format: bounded however long an attempt runs, tolerant of a cut write,
and summed up into what a life did and what its end threw away."""

from __future__ import annotations

import json

from chunkpilot.history import MAX_COMMITS, History, parse, parse_key, resources_from_env, summarize


def test_a_long_attempt_keeps_a_bounded_history_with_exact_totals():
    history = History()
    history.add("start", 0.0, resources={})
    history.add("ready", 1.0)
    for i in range(10_000):
        history.commit(2.0 + i, 1.0 + i, records=2, errors=i % 2, prompt_tokens=10, completion_tokens=5, end=(0, i))
        history.add("beat", 2.5 + i, answered=2 * (i + 1), committed=2 * (i + 1), held=0)
    commits = [e for e in history.events if e["event"] == "commit"]
    assert MAX_COMMITS // 2 <= len(commits) <= MAX_COMMITS
    assert len(history.to_bytes()) < 60_000
    assert sum(e["records"] for e in commits) == 20_000 and sum(e["errors"] for e in commits) == 5_000
    assert sum(e["commits"] for e in commits) == 10_000
    assert commits[0]["t0"] == 1.0 and commits[-1]["t"] == 10_001.0 and commits[-1]["end"] == [0, 9999]
    # covering the whole span without gaps or overlaps, in order
    assert all(a["t"] <= b["t0"] + 1 for a, b in zip(commits, commits[1:]))
    assert [e["event"] for e in history.events][-1] == "beat"  # only the latest beat is kept
    assert sum(e["event"] == "beat" for e in history.events) == 1


def test_a_cut_or_foreign_line_is_skipped():
    body = b'{"event":"start","t":1}\n{"event":"ready","t":2}\nnot json\n{"no":"event"}\n{"event":"commit","t":3,"t0'
    assert [e["event"] for e in parse(body)] == ["start", "ready"]


def test_a_killed_life_says_what_it_had_answered_but_not_saved():
    history = History()
    history.add("start", 10.0, resources={"cloud": "AWS"})
    history.add("ready", 15.0)
    history.commit(20.0, 15.0, records=8, errors=0, prompt_tokens=80, completion_tokens=40, end=(0, 800))
    history.add("beat", 22.0, answered=13, committed=8, held=2)
    life = summarize("0003", 2, 1, parse(history.to_bytes()))
    assert (life.chunk, life.attempt, life.life) == ("0003", 2, 1)
    assert (life.started_at, life.ready_at, life.last_commit_at, life.last_seen) == (10.0, 15.0, 20.0, 22.0)
    assert (life.committed, life.answered_uncommitted, life.outcome) == (8, 3, None)
    history.add("end", 23.0, outcome="stopped", exit_code=75, reason="stop requested")
    stopped = summarize("0003", 2, 1, parse(history.to_bytes()))
    assert (stopped.outcome, stopped.exit_code, stopped.answered_uncommitted) == ("stopped", 75, 0)
    assert summarize("0003", 2, 1, []) is None


def test_resources_come_from_skypilot_and_nothing_else():
    env = {"SKYPILOT_CLUSTER_INFO": json.dumps({"cluster_name": "c", "cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a",
                                                "token": "x"}),
           "SKYPILOT_NUM_GPUS_PER_NODE": "4", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    assert resources_from_env(env) == {"cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a", "gpus": 4}
    assert resources_from_env({"SKYPILOT_CLUSTER_INFO": "{broken"}) == {}
    assert parse_key("history/0003/a2.1.jsonl") == ("0003", 2, 1) and parse_key("history/0003/a2.jsonl") is None


def test_a_warm_worker_keeps_each_chunks_commits_apart_however_long_it_runs():
    """Commits are a chunk's by the claim before them: compaction never merges across a claim."""
    history = History()
    history.add("start", 0.0, resources={})
    history.add("claim", 0.5, chunk="0000", chunk_attempt=1)
    history.add("ready", 1.0)
    t = 2.0
    per_chunk = {"0000": 0, "0001": 0, "0002": 0}
    for chunk, n in (("0000", 301), ("0001", 3), ("0002", 400)):
        if chunk != "0000":
            history.add("claim", t, chunk=chunk, chunk_attempt=2)
        for _ in range(n):
            history.commit(t + 1, t, records=1, errors=0, prompt_tokens=1, completion_tokens=1, end=(0, 0))
            per_chunk[chunk] += 1
            t += 1
    life = summarize("w0", 1, 0, parse(history.to_bytes()))
    assert [c["chunk"] for c in life.claims] == ["0000", "0001", "0002"]
    assert len(life.commits) <= MAX_COMMITS + 2
    bounds = [c["commits_before"] for c in life.claims] + [len(life.commits)]
    assert bounds[0] == 0
    found = {c["chunk"]: sum(e["records"] for e in life.commits[a:b]) for c, a, b in zip(life.claims, bounds, bounds[1:])}
    assert found == per_chunk
    for c, a, b in zip(life.claims, bounds, bounds[1:]):  # and in time, each chunk's commits follow its claim
        assert all(e["t0"] >= c["t"] for e in life.commits[a:b])
