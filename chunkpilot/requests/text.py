"""The two text-generation kinds: ``/v1/chat/completions`` and ``/v1/completions``."""

from __future__ import annotations

from typing import Any

from chunkpilot.requests.base import Invalid, Request, Result, sampling_params
from chunkpilot.requests.structured import from_body


def _usage(result: Result) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def _parsed(result: Result) -> dict[str, Any]:
    """``{"parsed": value}`` for an answer checked as JSON (as OpenAI's SDKs offer it), else nothing."""
    return {"parsed": result.extra["parsed"]} if "parsed" in result.extra else {}


def normalize_messages(messages: Any) -> tuple[dict[str, Any], ...]:
    """Messages ready for a text chat template: content parts joined, non-text parts refused."""
    if not isinstance(messages, list) or not messages:
        raise Invalid("missing_prompt", "'messages' must be a non-empty list")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise Invalid("invalid_messages", f"message {i} must be an object with 'role' and 'content'")
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    raise Invalid("invalid_messages", f"message {i}: only text content parts are supported, got {kind or part!r}")
            content = "\n".join(texts)
        elif content is None and message.get("tool_calls"):
            content = ""
        elif not isinstance(content, str):
            raise Invalid("invalid_messages", f"message {i}: content must be a string or a list of text parts")
        out.append({**message, "content": content})
    return tuple(out)


class ChatKind:
    name = "chat"
    endpoint = "/v1/chat/completions"
    output_object = "chat.completion"
    task = "generate"
    input_fields = ("messages",)

    def parse(self, body: dict[str, Any], defaults: dict[str, Any], strict: bool = True):
        messages = normalize_messages(body.get("messages"))
        return {"messages": messages, "constraint": from_body(body)}, sampling_params(body, defaults, {"messages"}, strict)

    def render(self, request: Request, result: Result, model: str, revision: str, response_id: str,
               created: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "model_revision": revision,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text, **_parsed(result)},
                         "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }

    def answer(self, body: dict[str, Any]) -> Any:
        message = body["choices"][0]["message"]
        return message["parsed"] if "parsed" in message else message.get("content")


class CompletionKind:
    name = "completion"
    endpoint = "/v1/completions"
    output_object = "text_completion"
    task = "generate"
    input_fields = ("prompt",)

    def parse(self, body: dict[str, Any], defaults: dict[str, Any], strict: bool = True):
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise Invalid("missing_prompt", "'prompt' must be a string")
        return {"prompt": prompt, "constraint": from_body(body)}, sampling_params(body, defaults, {"prompt"}, strict)

    def render(self, request: Request, result: Result, model: str, revision: str, response_id: str,
               created: int) -> dict[str, Any]:
        return {
            "id": f"cmpl-{response_id}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "model_revision": revision,
            "choices": [{"index": 0, "text": result.text, **_parsed(result), "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }

    def answer(self, body: dict[str, Any]) -> Any:
        choice = body["choices"][0]
        return choice["parsed"] if "parsed" in choice else choice.get("text")
