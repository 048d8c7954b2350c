"""The seed's blocking batch loop (skypilot-batch-inference.rst, "Get Started with Single Node").

Reproduced as written — read every line, cut batches by a character budget,
``llm.generate``-then-wait per batch, write everything at the end — with one fix:
the seed never runs the last batch (it only generates when the budget overflows),
so here the remainder is generated too. Chat prompts go through ``llm.chat``
(``llm.generate`` with the chat template applied); each record keeps its own
``max_tokens``. The engine is built exactly as chunkpilot's vLLM engine builds
it on CPU (float32, max_model_len 2048, eager, 1 GiB KV cache, seed 0, in-process).

    python benchmarks/_blocking_loop.py IN.jsonl OUT.jsonl --model FOLDER --batch-chars N --timing T.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

STARTED = time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-chars", type=int, required=True, help="the seed's BATCH_TOKEN_SIZE (it counts len(prompt))")
    ap.add_argument("--timing", required=True)
    args = ap.parse_args()

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from vllm import LLM, SamplingParams

    llm = LLM(model=args.model, dtype="float32", max_model_len=2048, enforce_eager=True, seed=0)
    began = time.monotonic()

    # Read data (jsonl), each line is a json object
    with open(args.input) as f:
        prompts = [json.loads(line.strip()) for line in f.readlines() if line.strip()]

    def generate(batch):
        conversations = [p["body"]["messages"] for p in batch]
        params = [SamplingParams(max_tokens=p["body"]["max_tokens"], temperature=p["body"].get("temperature", 0.0))
                  for p in batch]
        return llm.chat(conversations, params, use_tqdm=False)

    # Run inference
    batch_token_size = 0
    batch_prompts: list[dict] = []
    predictions = []
    batches = []
    for prompt in prompts:
        batch_token_size += len(prompt["body"]["messages"][-1]["content"])
        if batch_token_size > args.batch_chars:
            predictions.extend(zip(batch_prompts, generate(batch_prompts)))
            batches.append(len(batch_prompts))
            batch_prompts = []
            batch_token_size = 0
        batch_prompts.append(prompt)
    if batch_prompts:  # the fix: the seed drops this last batch
        predictions.extend(zip(batch_prompts, generate(batch_prompts)))
        batches.append(len(batch_prompts))

    # Save predictions
    with open(args.output, "w") as f:
        for prompt, output in predictions:
            choice = output.outputs[0]
            f.write(json.dumps({
                "custom_id": prompt["custom_id"],
                "text": choice.text,
                "prompt_tokens": len(output.prompt_token_ids or ()),
                "completion_tokens": len(choice.token_ids),
            }) + "\n")
    ended = time.monotonic()
    with open(args.timing, "w") as f:
        json.dump({"gen_s": ended - began, "startup_s": began - STARTED, "batches": batches}, f)


if __name__ == "__main__":
    main()
