"""Run history, cost and the report, on a real local run: four chunks with the echo engine, one
worker SIGKILLed after its first commit, one line that is not JSON, priced by the user.

The page is checked in a real headless Chromium (Debian's package, driven by Playwright): it
makes no network request, draws one timeline row per chunk with the kill visible, shows the
error code and the cost, and a screenshot is saved.
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
CHUNKS = 4
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


@pytest.fixture(scope="module")
def preempted_run(tmp_path_factory):
    """(store, run folder, status --json while the run was going, stderr of watch, the report's page
    while the run was going)."""
    root = tmp_path_factory.mktemp("report")
    records = [{"custom_id": f"r{i}", "prompt": f"tell me about {i}"} for i in range(160)]
    data = write_jsonl(root / "in.jsonl", records[:70], extra_lines=[b'{"custom_id": "broken", "prompt": \n'])
    with open(data, "ab") as f:
        for r in records[70:]:
            f.write(json.dumps(r).encode() + b"\n")
    store = root / "runs"
    env = {**os.environ, "CHUNKPILOT_POLL_SECONDS": "0.2"}
    submitted = launcher("submit", str(data), "--chunks", str(CHUNKS), "--engine", "echo", "--store", str(store),
                         "--run-name", RUN, "--engine-option", "delay=0.15", "--engine-option", "batch=4",
                         "--commit-seconds", "0.3", "--workers", "2", "--price-per-hour", str(PRICE),
                         "--on-demand-price-per-hour", str(ON_DEMAND), env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_dir = store / RUN
    watch = subprocess.Popen([sys.executable, "-m", "launcher.cli", "watch", RUN, "--store", str(store)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim = f"{RUN}-0001-a1"
        history = run_dir / "history" / "0001" / "a1.0.jsonl"
        wait_for(lambda: history.exists() and b'"event":"commit"' in history.read_bytes(), 120,
                 "chunk 0001's first commit")
        pid = int((run_dir / "logs" / f"{victim}.pid").read_text())
        os.kill(pid, signal.SIGKILL)  # a reclaimed spot machine: no chance to commit
        during = launcher("status", RUN, "--store", str(store), "--json", env=env)
        assert during.returncode == 0, during.stderr
        midway = launcher("report", RUN, "--store", str(store), "-o", str(root / "midway.html"), env=env)
        assert midway.returncode == 0, midway.stderr
        _, err = watch.communicate(timeout=240)
        assert watch.returncode == 0, err
    finally:
        if watch.poll() is None:
            watch.kill()
    return store, run_dir, json.loads(during.stdout), err, (root / "midway.html").read_text()


def page_data(html: str) -> dict:
    return json.loads(html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0])


def test_the_worker_and_watcher_write_the_run_history(preempted_run):
    from chunkpilot.history import parse, summarize
    from chunkpilot.spec import AttemptRecord

    store, run_dir, _, _, _ = preempted_run
    lives = sorted(p.relative_to(run_dir / "history").as_posix() for p in (run_dir / "history").rglob("*.jsonl"))
    assert lives == ["0000/a1.0.jsonl", "0001/a1.0.jsonl", "0001/a2.0.jsonl", "0002/a1.0.jsonl", "0003/a1.0.jsonl"]
    killed = summarize("0001", 1, 0, parse((run_dir / "history/0001/a1.0.jsonl").read_bytes()))
    assert killed.outcome is None and killed.committed > 0 and killed.ready_at is not None  # no end event: killed
    finished = summarize("0001", 2, 0, parse((run_dir / "history/0001/a2.0.jsonl").read_bytes()))
    assert finished.outcome == "done" and finished.exit_code == 0
    record = AttemptRecord.from_json((run_dir / "jobs/0001/a1.json").read_bytes())
    assert record.ended_at is not None and record.started_at is not None and record.state == "FAILED"
    assert "signal 9" in record.reason
    assert (record.price_per_hour, record.on_demand_per_hour, record.resources) == (PRICE, ON_DEMAND, {"cloud": "local"})
    done = AttemptRecord.from_json((run_dir / "jobs/0001/a2.json").read_bytes())
    assert done.state == "DONE" and done.ended_at >= done.launched_at


def test_status_carries_cost_so_far_and_projected(preempted_run, cli):
    store, run_dir, during, _, _ = preempted_run
    cost = during["totals"]["cost"]
    assert cost["so_far"] > 0 and cost["per_hour_now"] > 0 and cost["currency"] == "USD"
    assert cost["projected"] is None or cost["projected"] >= cost["so_far"]
    after = json.loads(cli("status", RUN, "--store", str(store), "--json").output)["totals"]["cost"]
    # Finished: every attempt's launch-to-end time at the user's price; the projection is what was spent.
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "jobs").rglob("*.json"))]
    gpu_seconds = sum(r["ended_at"] - r["launched_at"] for r in records)
    assert len(records) == CHUNKS + 1
    assert after["gpu_seconds"] == pytest.approx(gpu_seconds, abs=0.1)
    usd = 2e-6  # money is rounded to millionths of a dollar
    assert after["so_far"] == pytest.approx(gpu_seconds / 3600 * PRICE, abs=usd)
    assert after["projected"] == after["so_far"] and after["per_hour_now"] == 0
    assert after["interruptions"] == 1 and after["lost_seconds"] > 0
    assert after["lost_cost"] == pytest.approx(after["lost_seconds"] / 3600 * PRICE, abs=usd)
    useful = gpu_seconds - after["lost_seconds"]
    assert after["on_demand"] == pytest.approx(useful / 3600 * ON_DEMAND, abs=usd)
    assert after["saving"] == pytest.approx(after["on_demand"] - after["so_far"], abs=usd)
    text = cli("status", RUN, "--store", str(store)).output
    assert "cost $" in text and "lost to 1 interruption(s)" in text and "on demand $" in text
    overridden = json.loads(cli("status", RUN, "--store", str(store), "--json", "--price-per-hour", "4").output)
    assert overridden["totals"]["cost"]["so_far"] == pytest.approx(2 * after["so_far"], abs=2 * usd)


def test_report_data_has_every_chunk_the_kill_the_error_and_the_cost(preempted_run, cli, tmp_path):
    store, run_dir, _, _, _ = preempted_run
    out = tmp_path / "report.html"
    result = cli("report", RUN, "--store", str(store), "-o", str(out))
    assert "wrote" in result.output and f"{CHUNKS} chunk rows" in result.output
    html = out.read_text()
    data = json.loads(html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0])
    timeline = data["timeline"]
    assert timeline["chunks"] == [f"{i:04d}" for i in range(CHUNKS)]
    kinds = {(s["chunk"], s["attempt"], s["kind"]) for s in timeline["segments"]}
    assert ("0001", 1, "interrupted") in kinds and ("0001", 2, "done") in kinds
    assert {c for c, _, k in kinds if k == "done"} == {f"{i:04d}" for i in range(CHUNKS)}
    assert [(m["chunk"], m["attempt"], m["kind"]) for m in timeline["markers"]] == [("0001", 1, "killed")]
    (err,) = data["errors"]
    assert err["code"] == "invalid_json" and err["count"] == 1
    assert err["examples"][0]["record"] == '{"custom_id": "broken", "prompt": '
    assert data["cost"]["so_far"] > 0 and data["interruptions"][0]["chunk"] == "0001"
    assert sum(data["throughput"]["records_per_s"]) * data["throughput"]["bin_seconds"] == pytest.approx(161, abs=0.01)
    assert len(html.encode()) < 1_000_000  # self-contained, and small


def test_a_report_of_a_run_in_progress_shows_what_runs_and_the_cost_so_far(preempted_run):
    *_, midway = preempted_run
    data = page_data(midway)
    assert data["totals"]["finished"] is False
    timeline = data["timeline"]
    assert timeline["chunks"] == [f"{i:04d}" for i in range(CHUNKS)]
    kinds = {s["kind"] for s in timeline["segments"]}
    assert kinds & {"running", "starting"}, "what still runs is on the page"
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
    store, _, _, _, _ = preempted_run
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
        return {labels: chart.data.labels, rows: chart.scales.y.ticks.length, interrupted: bars('interrupted'),
                done: bars('done'), markers: bars('marker'), visible: chart.getSortedVisibleDatasetMetas().length};
    }""")
    assert drawn["labels"] == [f"{i:04d}" for i in range(CHUNKS)] and drawn["rows"] == CHUNKS
    assert drawn["interrupted"] == ["0001"] and drawn["markers"] == ["0001"]
    assert sorted(drawn["done"]) == [f"{i:04d}" for i in range(CHUNKS)]
    assert drawn["visible"] == 6  # five segment kinds and the interruption markers
    assert page.locator("#errors-table [data-code=invalid_json]").count() == 1
    assert page.locator("#chunks-table tbody tr").count() == CHUNKS
    assert page.locator("#interruptions-table [data-chunk='0001']").count() == 1
    cost_card = page.locator("[data-card=cost] .v").inner_text()
    assert cost_card.startswith("$")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(13, 17, 23)")
    shot = tmp_path / f"report-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("CHUNKPILOT_SCREENSHOT_DIR"):  # how docs/report-*.png are made
        shutil.copy(shot, Path(os.environ["CHUNKPILOT_SCREENSHOT_DIR"]) / shot.name)
    context.close()


def test_a_report_of_a_run_in_progress_opens_in_headless_chromium(preempted_run, tmp_path, browser):
    *_, midway = preempted_run
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
    assert labels == [f"{i:04d}" for i in range(CHUNKS)]
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
