"""`make demo`: a real 4-chunk batch job on examples/prompts.jsonl with vLLM on CPU and SmolLM2.

It runs the same commands a user would (submit --watch, status, collect), then
checks the output: one OpenAI-Batch line per input record, answered by the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = str(Path(sys.executable).with_name("launcher"))
INPUT = ROOT / "examples" / "prompts.jsonl"
STORE = ROOT / "runs"
OUTPUT = ROOT / "demo-results.jsonl"


def sh(*args: str) -> str:
    print("$ launcher " + " ".join(args), flush=True)
    done = subprocess.run([LAUNCHER, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"demo failed: `launcher {' '.join(args)}` exited {done.returncode}")
    print(done.stdout, end="", flush=True)
    return done.stdout


def main() -> None:
    os.environ.setdefault("CHUNKPILOT_POLL_SECONDS", "1")
    started = time.monotonic()
    run_id = sh("submit", str(INPUT), "--chunks", "4", "--max-tokens", "32",
                "--store", str(STORE), "--watch").strip().splitlines()[-1]
    sh("status", run_id, "--store", str(STORE))
    sh("collect", run_id, "--store", str(STORE), "-o", str(OUTPUT))

    inputs = [json.loads(line) for line in INPUT.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in OUTPUT.read_text().splitlines()]
    assert len(rows) == len(inputs), f"{len(rows)} output lines for {len(inputs)} input records"
    assert [r["custom_id"] for r in rows] == [i["custom_id"] for i in inputs], "output is not in input order"
    bodies = [r["response"]["body"] for r in rows if r["error"] is None]
    assert len(bodies) == len(rows), "some records failed: see the error lines"
    assert all("SmolLM2" in b["model"] for b in bodies)

    markers = [json.loads((STORE / run_id / "out" / c / "_SUCCESS").read_text())
               for c in sorted(os.listdir(STORE / run_id / "out"))]
    tokens = sum(m["completion_tokens"] for m in markers)
    gen_seconds = sum(m["seconds"] for m in markers)
    print()
    print(f"verified: {len(rows)} records, one OpenAI-Batch line each, in input order, answered by {bodies[0]['model']}")
    wall = time.monotonic() - started
    print(f"          ({bodies[0]['model_revision']}); {tokens} completion tokens: {tokens / gen_seconds:.0f} tok/s "
          f"per worker while generating, {tokens / wall:.0f} tok/s over the whole {wall:.0f}s (engine start-ups included)")
    print(f"output:   {OUTPUT}")
    print(f"sample:   {rows[0]['custom_id']} -> {json.dumps(_text(bodies[0]))}")


def _text(body: dict) -> str:
    choice = body["choices"][0]
    return choice.get("message", {}).get("content") if "message" in choice else choice.get("text")


if __name__ == "__main__":
    main()
