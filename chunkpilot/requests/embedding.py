"""The embeddings kind: ``/v1/embeddings``, as OpenAI (and ``vllm run-batch``) shape it.

A request embeds ``input``: a string, or a list of strings (one vector each). ``encoding_format``
``float`` (default) or ``base64`` (little-endian float32, as OpenAI encodes it); ``dimensions``
asks the model for shorter vectors (Matryoshka models only: others refuse it, as an error line);
``truncate_prompt_tokens`` cuts each input to that many tokens (``-1``: the model's limit) instead
of refusing a longer one with ``prompt_too_long`` — the end is cut, special tokens kept, as
sentence-transformers does.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from chunkpilot.requests.base import Invalid, Request, Result, _integer

HARMLESS = {"model", "user"}


class EmbeddingKind:
    name = "embedding"
    endpoint = "/v1/embeddings"
    output_object = "list"
    input_fields = ("input",)
    task = "embed"

    def parse(self, body: dict[str, Any], defaults: dict[str, Any], strict: bool = True):
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts:
            raise Invalid("missing_input", "'input' must be a string or a non-empty list of strings")
        if not all(isinstance(t, str) for t in texts):
            raise Invalid("unsupported_parameter", "'input' must hold text: token ids are not supported")
        if any(not t.strip() for t in texts):
            raise Invalid("empty_input", "an input to embed is empty")
        params = {k: v for k, v in defaults.items() if k in ("truncate_prompt_tokens",)}
        for name, value in body.items():
            if name in ("input", "custom_id") or name in HARMLESS or value is None:
                continue
            if name == "encoding_format":
                if value not in ("float", "base64"):
                    raise Invalid("invalid_parameter", f"encoding_format must be 'float' or 'base64', got {value!r}")
                params[name] = value
            elif name == "dimensions":
                params[name] = _integer(name, value, 1)
            elif name == "truncate_prompt_tokens":
                params[name] = _integer(name, value, -1)
            elif strict:
                raise Invalid("unsupported_parameter", f"unsupported field {name!r} for /v1/embeddings")
        return {"inputs": tuple(texts)}, params

    def render(self, request: Request, result: Result, model: str, revision: str, response_id: str,
               created: int) -> dict[str, Any]:
        as_base64 = request.params.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i, "embedding": encode(v) if as_base64 else v}
                for i, v in enumerate(result.embeddings or ())]
        return {
            "id": f"embd-{response_id}",
            "object": "list",
            "created": created,
            "model": model,
            "model_revision": revision,
            "data": data,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }

    def answer(self, body: dict[str, Any]) -> Any:
        vectors = [decode(d["embedding"]) for d in body.get("data") or ()]
        return vectors[0] if len(vectors) == 1 else vectors


def encode(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode(value: Any) -> list[float]:
    if isinstance(value, str):
        raw = base64.b64decode(value)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return value
