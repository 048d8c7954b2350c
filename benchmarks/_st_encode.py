"""sentence-transformers' ``encode`` on the texts of a ``/v1/embeddings`` Batch file, timed after the model loads.

    python benchmarks/_st_encode.py INPUT.jsonl OUTPUT.jsonl MODEL_FOLDER TIMING.json

Writes OpenAI-shaped output lines (``response.body.data[0].embedding``) so vectors compare line by line.
"""

from __future__ import annotations

import json
import sys
import time

from sentence_transformers import SentenceTransformer


def main(source: str, out: str, model: str, timing: str) -> None:
    rows = [json.loads(line) for line in open(source)]
    encoder = SentenceTransformer(model, device="cpu")
    began = time.monotonic()
    vectors = encoder.encode([r["body"]["input"] for r in rows], batch_size=64, normalize_embeddings=True)
    gen_s = time.monotonic() - began
    with open(out, "w") as f:
        for row, vector in zip(rows, vectors):
            f.write(json.dumps({"custom_id": row["custom_id"], "response": {"body": {"data": [{"embedding": vector.tolist()}]}}}) + "\n")
    with open(timing, "w") as f:
        json.dump({"gen_s": gen_s}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
