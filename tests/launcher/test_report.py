"""Run history, cost and the report, on a real local run: six chunks answered by two warm workers
with the echo engine, the worker holding chunk 0001 SIGKILLed after that chunk's first commit
(its slot is relaunched), one line that is not JSON, priced by the user.

The page is checked in a real headless Chromium (Debian's package, driven by Playwright): it
makes no network request, draws one timeline row per worker — chunk after chunk on one engine,
the kill visible — shows the error code and the cost, and a screenshot is saved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

RUN = "rep"
CHUNKS = 6  # two workers start at chunks 0000 and 0003: the kill on chunk 0001 leaves work for a relaunch
WORKERS = 2
RECORDS = 161  # 160 and one line that is not JSON
PRICE, ON_DEMAND = 2.0, 6.0
CHROMIUM_CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser")


def launcher(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True, timeout=300, **kw)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(path: Path) -> list[dict]:
    from chunkpilot.history import parse

    return parse(path.read_bytes()) if path.exists() else []


def committed_after_claim(path: Path, chunk: str) -> bool:
    """The history at ``path`` has a commit after its claim of ``chunk``."""
    seen = False
    for e in events(path):
        seen = seen or (e["event"] == "claim" and e.get("chunk") == chunk)
        if seen and e["event"] == "commit":
            return True
    return False


@pytest.fixture(scope="module")
def preempted_run(tmp_path_factory):
    """(store, run folder, status --json while the run was going, stderr of watch, the report's page
    while the run was going, the killed worker launch: (slot, launch))."""
    root = tmp_path_factory.mktemp("report")
    records = [{"custom_id": f"r{i}", "prompt": f"tell me about {i}"} for i in range(160)]
    data = write_jsonl(root / "in.jsonl", records[:70], extra_lines=[b'{"custom_id": "broken", "prompt": \n'])
    with open(data, "ab") as f:
        for r in records[70:]:
            f.write(json.dumps(r).encode() + b"\n")
    store = root / "runs"
    # One interruption, of one chunk: no splits, and a read-ahead of 8 records (of ~27 a chunk), so the
    # worker killed right after chunk 0001's first commit has not taken the next chunk yet.
    env = {**os.environ, "CHUNKPILOT_POLL_SECONDS": "0.2", "CHUNKPILOT_SPLITS": "0"}
    submitted = launcher("submit", str(data), "--chunks", str(CHUNKS), "--engine", "echo", "--store", str(store),
                         "--run-name", RUN, "--engine-option", "delay=0.15", "--engine-option", "batch=4",
                         "--engine-option", "max_in_flight=8",
                         "--commit-seconds", "0.3", "--workers", str(WORKERS), "--price-per-hour", str(PRICE),
                         "--on-demand-price-per-hour", str(ON_DEMAND), env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_dir = store / RUN
    watch = subprocess.Popen([sys.executable, "-m", "launcher.cli", "watch", RUN, "--store", str(store)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from chunkpilot.claims import Claim

        claim_file = run_dir / "claims" / "0001.json"
        claim = wait_for(lambda: claim_file.exists() and Claim.from_json(claim_file.read_bytes()), 120,
                         "chunk 0001's claim")
        victim = (claim.worker, claim.worker_attempt)  # the warm worker launch answering chunk 0001
        history = run_dir / "history" / claim.worker / f"a{claim.worker_attempt}.0.jsonl"
        wait_for(lambda: committed_after_claim(history, "0001"), 120, "chunk 0001's first commit")
        pid = int((run_dir / "logs" / f"{RUN}-{claim.worker}-a{claim.worker_attempt}.pid").read_text())
        # The run is frozen while it is looked at midway — the watcher (no relaunch) and the other
        # workers (no chunk finishes) — so on a loaded machine the look cannot land after the end.
        frozen = [watch.pid] + [p for p in worker_pids(run_dir) if p != pid]
        for p in frozen:
            os.kill(p, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGKILL)  # a reclaimed spot machine: no chance to commit
            during = launcher("status", RUN, "--store", str(store), "--json", env=env)
            assert during.returncode == 0, during.stderr
            midway = launcher("report", RUN, "--store", str(store), "-o", str(root / "midway.html"), env=env)
            assert midway.returncode == 0, midway.stderr
        finally:
            for p in frozen:
                os.kill(p, signal.SIGCONT)
        _, err = watch.communicate(timeout=240)
        assert watch.returncode == 0, err
    finally:
        if watch.poll() is None:
            watch.kill()
    return store, run_dir, json.loads(during.stdout), err, (root / "midway.html").read_text(), victim


def worker_pids(run_dir: Path) -> list[int]:
    """The worker processes of the run still alive (from the local backend's pid files)."""
    alive = []
    for pid_file in (run_dir / "logs").glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
        except (ValueError, OSError):
            continue
        alive.append(pid)
    return alive


def page_data(html: str) -> dict:
    return json.loads(html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0])


def slots() -> list[str]:
    return [f"w{i}" for i in range(WORKERS)]


def chunk_ids() -> list[str]:
    return [f"{i:04d}" for i in range(CHUNKS)]


def final_claims(run_dir: Path) -> dict:
    from chunkpilot.claims import Claim

    return {c: Claim.from_json((run_dir / "claims" / f"{c}.json").read_bytes()) for c in chunk_ids()}


def test_the_workers_and_watcher_write_the_run_history(preempted_run):
    from chunkpilot.history import summarize
    from chunkpilot.spec import AttemptRecord, WorkerBeat

    store, run_dir, _, _, _, (slot, launch) = preempted_run
    (other,) = set(slots()) - {slot}
    assert launch == 1
    # Histories and attempt records are per worker launch: the killed one, its relaunch, the other worker.
    lives = sorted(p.relative_to(run_dir / "history").as_posix() for p in (run_dir / "history").rglob("*.jsonl"))
    assert lives == sorted([f"{slot}/a1.0.jsonl", f"{slot}/a2.0.jsonl", f"{other}/a1.0.jsonl"])
    jobs = sorted(p.relative_to(run_dir / "jobs").as_posix() for p in (run_dir / "jobs").rglob("a*.json"))
    assert jobs == sorted([f"{slot}/a1.json", f"{slot}/a2.json", f"{other}/a1.json"])
    killed_events = events(run_dir / f"history/{slot}/a1.0.jsonl")
    killed = summarize(slot, 1, 0, killed_events)
    assert killed.outcome is None and killed.committed > 0 and killed.ready_at is not None  # no end event: killed
    # warm: chunk after chunk on one engine, chunk 0001 (its first attempt) the last it took
    assert [e["event"] for e in killed_events].count("ready") == 1 and len(killed.claims) >= 2
    assert (killed.claims[-1]["chunk"], killed.claims[-1]["chunk_attempt"]) == ("0001", 1)
    assert killed.claims[-1]["commits_before"] < len(killed.commits), "it committed part of chunk 0001"
    finished = summarize(slot, 2, 0, events(run_dir / f"history/{slot}/a2.0.jsonl"))
    assert finished.outcome == "done" and finished.exit_code == 0
    record = AttemptRecord.from_json((run_dir / f"jobs/{slot}/a1.json").read_bytes())
    assert record.chunk == slot and record.name == f"{RUN}-{slot}-a1"
    assert record.ended_at is not None and record.started_at is not None and record.state == "FAILED"
    assert "signal 9" in record.reason
    assert (record.price_per_hour, record.on_demand_per_hour, record.resources) == (PRICE, ON_DEMAND, {"cloud": "local"})
    relaunch = AttemptRecord.from_json((run_dir / f"jobs/{slot}/a2.json").read_bytes())
    assert relaunch.launched_at >= record.ended_at - 1 and relaunch.state == "SUCCEEDED"
    assert relaunch.ended_at >= relaunch.launched_at
    beats = {(s, a): WorkerBeat.from_json((run_dir / f"workers/{s}/a{a}.json").read_bytes())
             for s, a in ((slot, 1), (slot, 2), (other, 1))}
    assert beats[(slot, 1)].state == "running" and beats[(slot, 1)].chunk == "0001"  # its last word, before the kill
    assert all(b.engine_starts <= 1 for b in beats.values()) and beats[(other, 1)].state == "done"
    assert sum(b.chunks_done for b in beats.values()) == CHUNKS
    claims = final_claims(run_dir)
    assert {c: x.state for c, x in claims.items()} == {c: "done" for c in chunk_ids()}
    assert claims["0001"].attempt == 2 and (claims["0001"].worker, claims["0001"].worker_attempt) != (slot, 1)
    assert all(x.attempt == 1 for c, x in claims.items() if c != "0001")


def test_status_carries_cost_so_far_and_projected(preempted_run, cli):
    from chunkpilot.spec import WorkerBeat

    store, run_dir, during, _, _, (slot, _) = preempted_run
    cost = during["totals"]["cost"]
    assert cost["so_far"] > 0 and cost["per_hour_now"] > 0 and cost["currency"] == "USD"
    assert cost["projected"] is None or cost["projected"] >= cost["so_far"]
    status = json.loads(cli("status", RUN, "--store", str(store), "--json").output)
    after = status["totals"]["cost"]
    assert {r["chunk"]: r["attempts"] for r in status["chunks"]} == {c: 2 if c == "0001" else 1 for c in chunk_ids()}
    assert {w["worker"]: w["launches"] for w in status["workers"]} == {s: 2 if s == slot else 1 for s in slots()}
    # Finished: every launch's launch-to-end time at the user's price; the projection is what was spent.
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "jobs").rglob("a*.json"))]
    gpu_seconds = sum(r["ended_at"] - r["launched_at"] for r in records)
    assert len(records) == WORKERS + 1
    assert after["gpu_seconds"] == pytest.approx(gpu_seconds, abs=0.1)
    usd = 2e-6  # money is rounded to millionths of a dollar
    assert after["so_far"] == pytest.approx(gpu_seconds / 3600 * PRICE, abs=usd)
    assert after["projected"] == after["so_far"] and after["per_hour_now"] == 0
    assert after["interruptions"] == 1 and after["lost_seconds"] > 0
    assert after["lost_cost"] == pytest.approx(after["lost_seconds"] / 3600 * PRICE, abs=usd)
    useful = gpu_seconds - after["lost_seconds"]
    assert after["on_demand"] == pytest.approx(useful / 3600 * ON_DEMAND, abs=usd)
    assert after["saving"] == pytest.approx(after["on_demand"] - after["so_far"], abs=usd)
    # cold starts: each launch from its launch to its first answer (its end if it never answered)
    cold = 0.0
    for r in records:
        beat = WorkerBeat.from_json((run_dir / f"workers/{r['chunk']}/a{r['attempt']}.json").read_bytes())
        until = r["ended_at"] if beat.first_answer_at is None else min(beat.first_answer_at, r["ended_at"])
        cold += max(0.0, until - r["launched_at"])
    assert 0 < after["cold_seconds"] == pytest.approx(cold, abs=0.01)
    assert after["cold_cost"] == pytest.approx(cold / 3600 * PRICE, abs=usd)
    text = cli("status", RUN, "--store", str(store)).output
    assert "cost $" in text and "lost to 1 interruption(s)" in text and "on demand $" in text
    overridden = json.loads(cli("status", RUN, "--store", str(store), "--json", "--price-per-hour", "4").output)
    assert overridden["totals"]["cost"]["so_far"] == pytest.approx(2 * after["so_far"], abs=2 * usd)


def test_collect_has_every_record_exactly_once(preempted_run, cli, tmp_path):
    store, *_ = preempted_run
    out = tmp_path / "results.jsonl"
    cli("collect", RUN, "--store", str(store), "-o", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == RECORDS
    failed = [x for x in lines if x.get("error")]
    assert len(failed) == 1 and failed[0]["error"]["code"] == "invalid_json"
    assert sorted(x["custom_id"] for x in lines if not x.get("error")) == sorted(f"r{i}" for i in range(160))


def test_report_data_shows_warm_workers_the_kill_the_error_and_the_cost(preempted_run, cli, tmp_path):
    store, run_dir, _, _, _, (slot, _) = preempted_run
    out = tmp_path / "report.html"
    result = cli("report", RUN, "--store", str(store), "-o", str(out))
    assert "wrote" in result.output and f"{WORKERS} worker rows, {CHUNKS} chunks" in result.output
    html = out.read_text()
    data = page_data(html)
    claims = final_claims(run_dir)
    timeline = data["timeline"]
    assert timeline["workers"] == slots() and timeline["total_workers"] == WORKERS
    segments = timeline["segments"]
    assert {s["worker"] for s in segments} == set(slots())
    # each chunk answered to its end once, by the worker launch its claim names, as that attempt
    done = sorted((s["chunk"], s["worker"], s["launch"], s["chunk_attempt"]) for s in segments if s["kind"] == "done")
    assert done == sorted((c, x.worker, x.worker_attempt, x.attempt) for c, x in claims.items())
    # the killed launch was answering chunk 0001 (attempt 1); nothing else was interrupted
    assert [(s["worker"], s["launch"], s["chunk"], s["chunk_attempt"]) for s in segments if s["kind"] == "interrupted"] \
        == [(slot, 1, "0001", 1)]
    assert {s["kind"] for s in segments} <= {"starting", "done", "interrupted", "idle"}
    # warm: one start per launch, then chunk after chunk, each starting where the one before ended
    for key in {(s["worker"], s["launch"]) for s in segments}:
        mine = [s for s in segments if (s["worker"], s["launch"]) == key]
        assert [s["kind"] for s in mine].count("starting") == 1 and mine[0]["kind"] == "starting"
        assert all(a["x1"] <= b["x0"] + 0.002 for a, b in zip(mine, mine[1:]))
        assert all(s["committed"] > 0 for s in mine if s["kind"] == "done")
    assert max(sum(1 for s in segments if (s["worker"], s["launch"]) == k and s["chunk"]) for k in
               {(s["worker"], s["launch"]) for s in segments}) >= 2
    assert sum(s["committed"] for s in segments) <= RECORDS
    assert [(m["worker"], m["launch"], m["kind"], m["chunk"]) for m in timeline["markers"]] == [(slot, 1, "killed", "0001")]
    (err,) = data["errors"]
    assert err["code"] == "invalid_json" and err["count"] == 1
    assert err["examples"][0]["record"] == '{"custom_id": "broken", "prompt": '
    assert data["cost"]["so_far"] > 0
    assert [(i["worker"], i["launch"], i["chunk"], i["chunk_attempt"]) for i in data["interruptions"]] == [(slot, 1, "0001", 1)]
    cost = data["cost"]
    assert cost["cold_seconds"] > 0 and cost["cold_cost"] == pytest.approx(cost["cold_seconds"] / 3600 * PRICE, abs=2e-6)
    # workers: every launch's GPU time and cost is its slot's
    workers = {w["worker"]: w for w in data["workers"]}
    assert list(workers) == slots()
    assert workers[slot]["launches"] == 2 and workers[slot]["name"] == f"{RUN}-{slot}-a2" and workers[slot]["interruptions"] == 1
    assert sum(w["chunks_done"] for w in workers.values()) == CHUNKS
    assert all(w["engine_starts"] >= 1 and w["first_answer_seconds"] is not None for w in workers.values())
    assert sum(w["gpu_seconds"] for w in workers.values()) == pytest.approx(cost["gpu_seconds"], abs=0.2)
    assert sum(w["cost"] for w in workers.values()) == pytest.approx(cost["so_far"], abs=1e-5)
    # each launch's start-up: launch -> its first worker process's start event, then -> its ready event
    for w in workers.values():
        assert [t["launch"] for t in w["launch_times"]] == list(range(1, w["launches"] + 1))
        for t in w["launch_times"]:
            events = [json.loads(x) for x in (run_dir / "history" / w["worker"] / f"a{t['launch']}.0.jsonl").read_text().splitlines()]
            start = next(e["t"] for e in events if e["event"] == "start")
            ready = next((e["t"] for e in events if e["event"] == "ready"), None)
            launched = json.loads((run_dir / "jobs" / w["worker"] / f"a{t['launch']}.json").read_text())["launched_at"]
            assert t["to_worker_start"] == pytest.approx(start - launched, abs=0.06)
            assert t["engine_build"] == (None if ready is None else pytest.approx(ready - start, abs=0.06))
    # chunks: who finished each, its attempts, and the GPU time workers held it (engines ready)
    chunks = {c["chunk"]: c for c in data["chunks"]}
    assert list(chunks) == chunk_ids() and all(c["state"] == "DONE" for c in chunks.values())
    assert {c: r["attempts"] for c, r in chunks.items()} == {c: 2 if c == "0001" else 1 for c in chunk_ids()}
    assert {c: r["worker"] for c, r in chunks.items()} == {c: f"{x.worker}-a{x.worker_attempt}" for c, x in claims.items()}
    assert {c: r["interruptions"] for c, r in chunks.items()} == {c: int(c == "0001") for c in chunk_ids()}
    assert sum(c["records"] for c in chunks.values()) == RECORDS
    held = {c: sum(s["x1"] - s["x0"] for s in segments if s["chunk"] == c) for c in chunk_ids()}
    for c, row in chunks.items():
        assert row["gpu_seconds"] == pytest.approx(held[c], abs=0.1) and row["gpu_seconds"] > 0
        assert row["cost"] == pytest.approx(held[c] / 3600 * PRICE, abs=2e-6)
    assert sum(c["gpu_seconds"] for c in chunks.values()) < cost["gpu_seconds"]  # cold starts are no chunk's
    assert sum(data["throughput"]["records_per_s"]) * data["throughput"]["bin_seconds"] == pytest.approx(RECORDS, abs=0.01)
    assert data["totals"]["launches"] == WORKERS + 1 and data["run"]["workers"] == WORKERS
    assert len(html.encode()) < 1_000_000  # self-contained, and small


def test_a_report_of_a_run_in_progress_shows_what_runs_and_the_cost_so_far(preempted_run):
    *_, midway, _ = preempted_run
    data = page_data(midway)
    assert data["totals"]["finished"] is False
    timeline = data["timeline"]
    assert timeline["workers"] == slots()
    kinds = {s["kind"] for s in timeline["segments"]}
    assert kinds & {"running", "starting"}, "what still runs is on the page"
    assert any(s["kind"] == "done" and s["chunk"] for s in timeline["segments"]), "a chunk was done before the kill"
    assert data["cost"]["so_far"] > 0 and data["cost"]["projected"] >= data["cost"]["so_far"]
    assert data["end"] == data["now"], "a run in progress: the time axes end now"


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (no browser download: pointed at the installed one)."""
    how = ("install Debian's browser and the driver: `sudo apt-get install -y chromium` and "
           "`pip install playwright` (.ci/run does both)")
    executable = find_chromium()
    if executable is None:
        pytest.skip(f"no Chromium on this machine: {how}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"Playwright is not installed: {how}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_report_in_headless_chromium(preempted_run, cli, tmp_path, browser, scheme):
    store, _, _, _, _, (slot, _) = preempted_run
    out = tmp_path / "report.html"
    cli("report", RUN, "--store", str(store), "-o", str(out))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(out.as_uri())
    page.wait_for_function("window.chunkpilotReport && window.chunkpilotReport.charts.length === 2")
    assert requests == [out.as_uri()] and problems == []

    drawn = page.evaluate("""() => {
        const chart = Chart.getChart('timeline');
        const bars = (kind) => chart.data.datasets.find(d => d.kind === kind).data.map(p => p.y);
        const chunks = (kind) => chart.data.datasets.find(d => d.kind === kind).data.map(p => p.s.chunk);
        return {labels: chart.data.labels, rows: chart.scales.y.ticks.length, interrupted: bars('interrupted'),
                interruptedChunks: chunks('interrupted'), done: bars('done'), doneChunks: chunks('done'),
                markers: bars('marker'), visible: chart.getSortedVisibleDatasetMetas().length};
    }""")
    assert drawn["labels"] == slots() and drawn["rows"] == WORKERS
    assert drawn["interrupted"] == [slot] and drawn["interruptedChunks"] == ["0001"] and drawn["markers"] == [slot]
    assert sorted(drawn["doneChunks"]) == chunk_ids() and set(drawn["done"]) == set(slots())
    assert drawn["visible"] == 7  # six segment kinds and the interruption markers
    assert page.locator("#errors-table [data-code=invalid_json]").count() == 1
    assert page.locator("#workers-table tbody tr").count() == WORKERS
    assert page.locator(f"#workers-table [data-worker='{slot}']").inner_text().count(f"{RUN}-{slot}-a2") == 1
    startup = page.locator(f"#workers-table [data-worker='{slot}'] .startup").inner_text()
    assert startup.startswith("a1: ") and "; a2: " in startup and " + " in startup  # each launch: to worker start + engine build
    assert page.locator("#chunks-table tbody tr").count() == CHUNKS
    assert page.locator(f"#interruptions-table [data-worker='{slot}'][data-chunk='0001']").count() == 1
    cost_card = page.locator("[data-card=cost] .v").inner_text()
    assert cost_card.startswith("$")
    assert page.locator("[data-card='cold starts'] .v").inner_text().startswith("$")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(13, 17, 23)")
    shot = tmp_path / f"report-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("CHUNKPILOT_SCREENSHOT_DIR"):  # how docs/report-*.png are made
        shutil.copy(shot, Path(os.environ["CHUNKPILOT_SCREENSHOT_DIR"]) / shot.name)
    context.close()


def test_a_report_of_a_run_in_progress_opens_in_headless_chromium(preempted_run, tmp_path, browser):
    *_, midway, _ = preempted_run
    page_file = tmp_path / "midway.html"
    page_file.write_text(midway)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(page_file.as_uri())
    page.wait_for_function("window.chunkpilotReport && window.chunkpilotReport.charts.length === 2")
    assert requests == [page_file.as_uri()] and problems == []
    assert "in progress" in page.locator("body").inner_text()
    labels = page.evaluate("() => Chart.getChart('timeline').data.labels")
    assert labels == slots()
    context.close()


def test_a_short_runs_timeline_ticks_are_distinct(tmp_path, store_uri, cli, browser):
    from tests.conftest import write_jsonl

    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(6)])
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "short", "--watch")
    out = tmp_path / "short.html"
    cli("report", "short", "--store", store_uri, "-o", out)
    page = browser.new_page()
    page.goto(out.as_uri())
    page.wait_for_function("window.chunkpilotReport && window.chunkpilotReport.charts.length === 2")
    for chart in ("timeline", "throughput"):
        ticks = page.evaluate(f"() => Chart.getChart('{chart}').scales.x.ticks.map(t => t.label)")
        assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
        assert all(t.endswith("s") for t in ticks), ticks
    page.close()
