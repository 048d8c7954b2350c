"""The store documents users' scripts read: their JSON is pinned here, and a run written by
chunkpilot 0.1.0 (before the core seams) is still read and collected byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from chunkpilot.layout import PartName
from chunkpilot.spec import (
    AttemptRecord,
    ChunkManifest,
    ChunkSummary,
    InputPin,
    Progress,
    RunSpec,
    SourceRange,
    SuccessMarker,
)

OLD_RUN = Path(__file__).resolve().parents[1] / "data" / "run-0.1.0"


def test_run_json_is_pinned():
    spec = RunSpec(
        run_id="r1", created_at="2026-12-03T10:00:00+00:00", inputs=(InputPin("/in.jsonl", 214, "e1"),),
        chunks=(ChunkSummary("0000", 123), ChunkSummary("0001", 91)), engine="echo", model="echo",
        model_revision="echo-1", sampling={"max_tokens": 16}, backend="local", use_spot=None, max_attempts=3,
        workers=2, chunkpilot_version="0.1.0",
    )
    assert json.loads(spec.to_json()) == {
        "run_id": "r1", "created_at": "2026-12-03T10:00:00+00:00",
        "inputs": [{"uri": "/in.jsonl", "size": 214, "etag": "e1"}],
        "chunks": [{"id": "0000", "bytes": 123}, {"id": "0001", "bytes": 91}],
        "engine": "echo", "model": "echo", "model_revision": "echo-1", "sampling": {"max_tokens": 16},
        "backend": "local", "use_spot": None, "max_attempts": 3, "workers": 2, "chunkpilot_version": "0.1.0",
        "template": None, "commit_seconds": 5.0, "commit_records": 256, "engine_options": {}, "backend_options": {},
        "max_error_rate": 0.1, "task": "generate", "input_format": "jsonl", "unit": "bytes", "prompt": {}, "model_files": {}, "price_per_hour": None, "on_demand_price_per_hour": None, "subset": None, "version": 2,
    }
    assert RunSpec.from_json(spec.to_json()) == spec


def test_manifest_marker_heartbeat_and_part_names_are_pinned():
    manifest = ChunkManifest("0001", (SourceRange(0, 123, 214), SourceRange(1, 0, 40)))
    assert json.loads(manifest.to_json()) == {
        "chunk": "0001", "ranges": [{"source": 0, "start": 123, "end": 214}, {"source": 1, "start": 0, "end": 40}],
        "bytes": 131,
    }
    assert ChunkManifest.from_json(manifest.to_json()) == manifest
    marker = SuccessMarker("0001", 2, 3, 1, 2, 1, 0, 10, 5, 1.5, "2026-12-03T10:00:00+00:00", "AAAAAAAAAAA=",
                           {"invalid_json": 1}, units=131)
    assert json.loads(marker.to_json()) == {
        "chunk": "0001", "attempt": 2, "records": 3, "skipped_blank": 1, "ok": 2, "errors": 1, "resumed_records": 0,
        "prompt_tokens": 10, "completion_tokens": 5, "seconds": 1.5, "finished_at": "2026-12-03T10:00:00+00:00",
        "custom_id_hashes": "AAAAAAAAAAA=", "error_codes": {"invalid_json": 1}, "units": 131, "input_digest": "",
    }
    # A split parent names its children; a manifest without any reads as before.
    cut = ChunkManifest("0001", (SourceRange(0, 123, 200),), children=("0001_99",))
    assert json.loads(cut.to_json())["children"] == ["0001_99"]
    assert ChunkManifest.from_json(cut.to_json()) == cut
    beat = Progress("0001", 2, "running", records_done=2, units_done=100, units_total=131, tokens_per_s=3.5,
                    updated_at=1.0, error_codes={"invalid_json": 1}, units_per_s=12.5)
    assert json.loads(beat.to_json()) == {
        "chunk": "0001", "attempt": 2, "state": "running", "records_done": 2, "units_done": 100, "units_total": 131,
        "tokens_per_s": 3.5, "updated_at": 1.0, "error_codes": {"invalid_json": 1}, "reason": "", "units_per_s": 12.5,
    }
    part = PartName((0, 123), (0, 214), 2, 7, 3, 1, 10, 5)
    assert part.filename == "a2-00007_0.123_0.214_3_1_10.5.jsonl" and PartName.parse(part.filename) == part


def test_attempt_records_and_worker_histories_are_pinned():
    from chunkpilot.history import History, parse

    record = AttemptRecord("0001", 2, "sky", "r1-0001-a2", 100.0, job_id="7", state="DONE", ended_at=160.0,
                           started_at=110.0, recoveries=1, resources={"cloud": "AWS", "region": "us-east-1", "spot": True},
                           price_per_hour=0.39, on_demand_per_hour=1.01, price_source="SkyPilot catalog: AWS us-east-1 g5.xlarge spot")
    assert json.loads(record.to_json()) == {
        "chunk": "0001", "attempt": 2, "backend": "sky", "name": "r1-0001-a2", "launched_at": 100.0, "job_id": "7",
        "state": "DONE", "ended_at": 160.0, "reason": None, "cancelled_by_us": False, "started_at": 110.0, "recoveries": 1,
        "resources": {"cloud": "AWS", "region": "us-east-1", "spot": True}, "price_per_hour": 0.39,
        "on_demand_per_hour": 1.01, "price_source": "SkyPilot catalog: AWS us-east-1 g5.xlarge spot",
    }
    assert AttemptRecord.from_json(record.to_json()) == record
    # A record written before prices and resources reads with their defaults.
    old = AttemptRecord.from_json(b'{"chunk": "0001", "attempt": 1, "backend": "local", "name": "n", "launched_at": 1.0}')
    assert (old.resources, old.price_per_hour, old.recoveries) == ({}, None, 0)

    history = History()
    history.add("start", 1.0, host="h", pid=7, resources={"cloud": "AWS"})
    history.add("ready", 2.5)
    history.commit(4.0, 2.5, records=3, errors=1, prompt_tokens=30, completion_tokens=12, end=(0, 300))
    history.add("beat", 5.0, answered=5, committed=3, held=1)
    history.add("end", 6.0, outcome="done", exit_code=0, reason="")
    assert history.to_bytes().decode().splitlines() == [
        '{"event":"start","host":"h","pid":7,"resources":{"cloud":"AWS"},"t":1.0}',
        '{"event":"ready","t":2.5}',
        '{"commits":1,"completion_tokens":12,"end":[0,300],"errors":1,"event":"commit","prompt_tokens":30,"records":3,"t":4.0,"t0":2.5}',
        '{"answered":5,"committed":3,"event":"beat","held":1,"t":5.0}',
        '{"event":"end","exit_code":0,"outcome":"done","reason":"","t":6.0}',
    ]
    assert parse(history.to_bytes()) == history.events


def test_documents_of_chunkpilot_0_1_0_are_read():
    spec = RunSpec.from_json((OLD_RUN / "run.json").read_bytes())
    assert [c.size for c in spec.chunks] == [123, 91] and spec.input_format == "jsonl" and spec.unit == "bytes"
    manifest = ChunkManifest.from_json((OLD_RUN / "chunks" / "0001.json").read_bytes())
    assert manifest.ranges == (SourceRange(0, 123, 214),) and manifest.size == 91
    marker = SuccessMarker.from_json((OLD_RUN / "out" / "0001" / "_SUCCESS").read_bytes())
    assert marker.units == 91 and marker.error_codes == {}
    assert PartName.parse("a1-00000_0.123_0.214_3_1.jsonl") == PartName((0, 123), (0, 214), 1, 0, 3, 1, 0, 0)


def test_a_run_written_by_chunkpilot_0_1_0_is_collected_as_it_collected_it(tmp_path, cli):
    store = tmp_path / "runs"
    shutil.copytree(OLD_RUN, store / "v0run")
    out = tmp_path / "now.jsonl"
    result = cli("collect", "v0run", "--store", store, "-o", out)
    assert out.read_bytes() == (OLD_RUN / "collected-by-0.1.0.jsonl").read_bytes()
    assert "5 records (4 ok, 1 errors)" in result.output and "1 custom_id(s) appear on more than one" in result.output
    status = json.loads(cli("status", "v0run", "--store", store, "--json").output)
    assert status["totals"]["states"] == {"DONE": 2} and status["totals"]["bytes_done"] == 214
