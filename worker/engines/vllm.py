"""The vLLM engine: continuous batching driven one ``step()`` at a time, in-process.

The worker owns the loop: ``add()`` tokenizes a request (rendering the chat template
for chats), rejects what vLLM would reject (prompt too long, invalid sampling values,
messages the template cannot render) with an error Result, and queues the rest
with ``LLMEngine.add_request``; ``step()`` runs one ``LLMEngine.step()`` and returns
the requests that finished in it. Nothing is batched up front, so a slow request
never idles the others.

Options (engine options of the run; ``submit`` refuses any other key):
``max_model_len`` (CPU default 2048), ``gpu_memory_utilization``, ``tensor_parallel_size``, ``pipeline_parallel_size``,
``dtype`` (CPU default float32), ``seed``, ``max_num_seqs``,
``max_num_batched_tokens``, ``enforce_eager`` (always on for CPU), ``kv_cache_gb``
(``VLLM_CPU_KVCACHE_SPACE`` on CPU, default 1; ``kv_cache_memory_bytes`` on GPU).

vLLM is imported in the constructor, after the environment it reads at import time
(``VLLM_LOGGING_LEVEL``, ``HF_HUB_OFFLINE``) is set, so importing this module is cheap.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from chunkpilot.errors import ConfigError
from chunkpilot.model import ResolvedModel, resolve_model
from chunkpilot.requests import Request, Result

log = logging.getLogger("chunkpilot.vllm")

GiB = 1 << 30
CPU_MAX_MODEL_LEN = 2048
CPU_KV_CACHE_GB = 1

# The params every request kind may carry (chunkpilot.requests.base.SAMPLING), as SamplingParams names them.
_KEYS = ("max_tokens", "min_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty",
         "frequency_penalty", "repetition_penalty")
# Keys of a model's generation_config that vLLM's own server uses as request defaults.
_DEFAULTABLE = set(_KEYS) - {"seed", "stop"}


# Start-up warnings that are expected on a CPU machine and say nothing actionable; hidden
# unless VLLM_LOGGING_LEVEL was set by the user.
_KNOWN_NOISE = (
    "doesn't allow to use `torch.set_num_threads`",
    "is not found in LD_PRELOAD",
    "Triton is not installed",
    "requires Triton",
    "Enforce eager set",
    "Inductor compilation was disabled",
    "The global random seed is set",
    "Passing raw prompts to InputProcessor is deprecated",
    "Triton not available",
)


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        return not any(noise in message for noise in _KNOWN_NOISE)


# The loggers those come from (logging filters act where a record is created, and vLLM
# rebuilds its handlers when the engine starts, so the filter goes on these loggers).
_NOISY_LOGGERS = (
    "vllm.v1.worker.cpu_worker",
    "vllm.platforms.cpu",
    "vllm.config.vllm",
    "vllm.engine.arg_utils",
    "vllm.v1.engine.input_processor",
    "torch._library.triton",
)


def _quiet_vllm_logging() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op.*", category=FutureWarning)
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoiseFilter) for f in logger.filters):
            logger.addFilter(_NoiseFilter())


class _Rejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def sampling_kwargs(params: dict[str, Any], kind: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request's params (validated by its kind) as ``SamplingParams`` keyword arguments (pure).

    With no ``max_tokens``, completions get 16 tokens and chats run to the end of the context
    (the OpenAI defaults). ``defaults`` (the model's generation config) fill the rest.
    """
    out: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if k in _DEFAULTABLE}
    out.update((k, v) for k, v in params.items() if v is not None and k in _KEYS)
    if "max_tokens" not in out:
        out["max_tokens"] = 16 if kind == "completion" else None
    return out


class VllmEngine:
    """The Engine protocol over ``vllm.LLM(...).llm_engine``."""

    def __init__(self, model: ResolvedModel | str | None = None, options: dict[str, Any] | None = None,
                 task: str = "generate"):
        """``model``: the pinned model the worker resolved (or a model name, resolved here as given).
        ``task``: ``generate``, or ``embed`` (vLLM's pooling runner: requests of the embedding kind)."""
        options = {k: v for k, v in (options or {}).items() if v is not None}
        self.task = task
        self._parts: dict[str, list] = {}  # an embedding request's vectors, one per input, as they come
        resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
        self.model_name = resolved.name
        self.model_revision = resolved.revision
        self._closed = False
        self._in_flight: set[str] = set()

        # Read by vLLM (or huggingface_hub) at import time or at engine start.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        quiet = "VLLM_LOGGING_LEVEL" not in os.environ
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if resolved.local:  # a local folder must never reach out to a model hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from vllm import LLM, SamplingParams
            from vllm.platforms import current_platform
            from vllm.sampling_params import RequestOutputKind
        except ImportError as exc:
            raise ConfigError(
                f"the vllm engine cannot be loaded ({exc}): `pip install vllm` on a GPU machine, "
                "or `make .venv` here for the CPU build"
            ) from exc
        try:
            from vllm.exceptions import VLLMValidationError

            self._request_errors: tuple[type[BaseException], ...] = (ValueError, TypeError, VLLMValidationError)
        except ImportError:  # older vLLM: validation errors are ValueErrors
            self._request_errors = (ValueError, TypeError)
        if quiet:
            _quiet_vllm_logging()
        self._SamplingParams = SamplingParams
        self._final_only = RequestOutputKind.FINAL_ONLY

        kwargs = self._engine_kwargs(resolved, options, on_cpu=current_platform.is_cpu(), task=task)
        try:
            from vllm.engine.arg_utils import EngineArgs

            if "use_tqdm_on_load" in getattr(EngineArgs, "__dataclass_fields__", {}):
                kwargs["use_tqdm_on_load"] = False  # no progress bar in job logs
        except ImportError:
            pass
        log.info("starting vLLM with %s", {k: v for k, v in kwargs.items() if k != "model"})
        try:
            self._llm = LLM(**kwargs)
        except (ValueError, TypeError) as exc:  # bad option values, model too big for the KV space…
            raise ConfigError(f"vLLM cannot start {resolved.name} ({resolved.path_or_id}): {exc}") from exc
        self._engine = self._llm.llm_engine
        self.batch_size = int(self._engine.vllm_config.scheduler_config.max_num_seqs)
        self._tokenizer = self._llm.get_tokenizer()
        model_config = self._engine.model_config
        self.max_model_len = int(model_config.max_model_len)
        try:
            self._defaults = dict(model_config.get_diff_sampling_param())
        except Exception:  # noqa: BLE001 - defaults are a nicety
            self._defaults = {}
        # vLLM >= 0.3x wants rendered engine inputs; raw token prompts still work (deprecated).
        renderer = getattr(self._engine, "renderer", None)
        self._render = getattr(renderer, "render_cmpl", None)

    # -- construction ---------------------------------------------------------
    @staticmethod
    def _engine_kwargs(resolved, options: dict[str, Any], *, on_cpu: bool, task: str = "generate") -> dict[str, Any]:
        def number(key: str, kind):
            value = options[key]
            try:
                if isinstance(value, bool):
                    raise ValueError
                return kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"engine option {key} must be a number, got {value!r}") from None

        kwargs: dict[str, Any] = {"model": resolved.path_or_id, "seed": 0}
        if task == "embed":
            kwargs["runner"] = "pooling"
        if not resolved.local:  # model and tokenizer from the one commit the run pinned
            kwargs["revision"] = resolved.load_revision
            kwargs["tokenizer_revision"] = resolved.load_revision
        for key in ("max_model_len", "tensor_parallel_size", "pipeline_parallel_size", "seed", "max_num_seqs",
                    "max_num_batched_tokens"):
            if key in options:
                kwargs[key] = number(key, int)
        if "gpu_memory_utilization" in options:
            kwargs["gpu_memory_utilization"] = number("gpu_memory_utilization", float)
        if "dtype" in options:
            kwargs["dtype"] = str(options["dtype"])
        if "enforce_eager" in options:
            kwargs["enforce_eager"] = bool(options["enforce_eager"])
        kv_gb = number("kv_cache_gb", float) if "kv_cache_gb" in options else None
        if kv_gb is not None and kv_gb <= 0:
            raise ConfigError(f"engine option kv_cache_gb must be positive, got {kv_gb}")
        if on_cpu:
            # torch.compile on CPU is slow to start and changes greedy outputs.
            kwargs["enforce_eager"] = True
            if task != "embed":  # an embedding model's own limit is what it was trained with
                kwargs.setdefault("max_model_len", CPU_MAX_MODEL_LEN)
            # float32, the bundled model's own dtype, whatever the CPU: with bfloat16 greedy answers
            # change with the batch, so a resumed chunk would not answer as an uninterrupted run does
            # (docs/guides/models.md, "Engines"). ``dtype=bfloat16`` asks for the speed.
            kwargs.setdefault("dtype", "float32")
            if kv_gb is None:
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GB))
            elif kv_gb.is_integer():
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_gb))
            else:  # the variable only takes whole GiB; the engine argument takes bytes
                os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
                kwargs["kv_cache_memory_bytes"] = int(kv_gb * GiB)
        elif kv_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_gb * GiB)
        return kwargs

    # -- the Engine protocol ----------------------------------------------------
    def add(self, request_id: str, request: Request) -> Result | None:
        if self._closed:
            raise RuntimeError("engine is closed")
        if request_id in self._in_flight:
            raise ValueError(f"request {request_id!r} is already in flight")
        if request.kind == "embedding":
            return self._add_embedding(request_id, request)
        try:
            params = self._sampling_params(request)
            token_ids = self._prompt_token_ids(request)
            if not token_ids:
                raise _Rejected("invalid_request", "the prompt is empty")
            if len(token_ids) >= self.max_model_len:
                raise _Rejected(
                    "prompt_too_long",
                    f"prompt has {len(token_ids)} tokens, the model accepts at most {self.max_model_len - 1}",
                )
            prompt: Any = {"prompt_token_ids": token_ids}
            try:
                if self._render is not None:
                    (prompt,) = self._render([prompt])
                self._engine.add_request(request_id, prompt, params)
            except self._request_errors as exc:
                raise _Rejected("invalid_request", str(exc)) from exc
        except _Rejected as exc:
            return Result(request_id=request_id, error=(exc.code, str(exc)))
        self._in_flight.add(request_id)
        return None

    def _add_embedding(self, request_id: str, request: Request) -> Result | None:
        """One engine request per input (``<id>#<i>``); the Result comes when every vector has."""
        from vllm import PoolingParams

        inputs = request.inputs or ()
        try:
            truncate = request.params.get("truncate_prompt_tokens")
            limit = self.max_model_len if truncate in (None, -1) else min(int(truncate), self.max_model_len)
            prompts = []
            for i, text in enumerate(inputs):
                if truncate is None:
                    ids = list(self._tokenizer(text)["input_ids"])
                    if len(ids) > self.max_model_len:
                        raise _Rejected("prompt_too_long", f"input {i} has {len(ids)} tokens, the model accepts at most "
                                                           f"{self.max_model_len} (truncate_prompt_tokens, or --truncate, cuts it)")
                else:  # the end is cut, special tokens kept (as sentence-transformers does)
                    ids = list(self._tokenizer(text, truncation=True, max_length=limit)["input_ids"])
                prompt: Any = {"prompt_token_ids": ids}
                if self._render is not None:
                    (prompt,) = self._render([prompt])
                prompts.append(prompt)
            params = PoolingParams(task="embed", dimensions=request.params.get("dimensions"))
            self._parts[request_id] = [None] * len(prompts)
            for i, prompt in enumerate(prompts):
                try:
                    self._engine.add_request(f"{request_id}#{i}", prompt, params)
                except self._request_errors as exc:
                    self._engine.abort_request([f"{request_id}#{j}" for j in range(i)])
                    del self._parts[request_id]
                    raise _Rejected("invalid_request", str(exc)) from exc
        except _Rejected as exc:
            return Result(request_id=request_id, error=(exc.code, str(exc)))
        self._in_flight.add(request_id)
        return None

    def step(self) -> list[Result]:
        if self._closed or not self._engine.has_unfinished_requests():
            return []
        done = []
        for output in self._engine.step():
            if not getattr(output, "finished", False):
                continue
            parent, _, index = output.request_id.partition("#")
            if index and parent in self._parts:
                parts = self._parts[parent]
                parts[int(index)] = output
                if all(p is not None for p in parts):
                    del self._parts[parent]
                    self._in_flight.discard(parent)
                    done.append(self._embedding(parent, parts))
            elif output.request_id in self._in_flight:
                self._in_flight.discard(output.request_id)
                done.append(self._completion(output))
        return done

    def in_flight(self) -> int:
        return len(self._in_flight)

    def abort_all(self) -> None:
        self.abort(sorted(self._in_flight))

    def abort(self, request_ids: list[str]) -> None:
        """Drop these requests (an embedding request's parts with it); the others go on."""
        ids = [r for r in request_ids if r in self._in_flight]
        if ids and not self._closed:
            parts = [f"{rid}#{i}" for rid in ids if rid in self._parts for i in range(len(self._parts[rid]))]
            self._engine.abort_request(parts + [r for r in ids if r not in self._parts])
        for rid in ids:
            self._in_flight.discard(rid)
            self._parts.pop(rid, None)

    @staticmethod
    def _embedding(request_id: str, outputs: list) -> Result:
        vectors = [[float(x) for x in o.outputs.data.tolist()] for o in outputs]
        tokens = sum(len(o.prompt_token_ids or ()) for o in outputs)
        return Result(request_id=request_id, prompt_tokens=tokens, embeddings=vectors)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.abort_all()
        finally:
            self._closed = True
            core = getattr(getattr(self, "_engine", None), "engine_core", None)
            try:
                if core is not None:
                    core.shutdown()
            except Exception as exc:  # noqa: BLE001 - closing must not raise
                log.debug("engine shutdown: %s", exc)
            self._engine = self._llm = self._tokenizer = None
            gc.collect()

    # -- helpers ----------------------------------------------------------------
    def _sampling_params(self, request: Request):
        kwargs = sampling_kwargs(request.params, request.kind, self._defaults)
        if request.constraint:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**request.constraint)
        try:
            params = self._SamplingParams(**kwargs)
        except self._request_errors as exc:
            raise _Rejected("invalid_request", str(exc)) from exc
        params.output_kind = self._final_only  # one output per request, when it is done
        return params

    def _prompt_token_ids(self, request: Request) -> list[int]:
        if request.kind == "chat":
            messages = list(request.messages or ())
            try:
                text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # noqa: BLE001 - jinja errors, missing template, bad roles…
                raise _Rejected("invalid_messages", f"cannot apply the chat template: {exc}") from exc
            if not isinstance(text, str):
                raise _Rejected("invalid_messages", "the chat template did not render text")
            return list(self._tokenizer.encode(text, add_special_tokens=False))
        if not isinstance(request.prompt, str):
            raise _Rejected("invalid_request", "prompt must be a string")
        return list(self._tokenizer.encode(request.prompt, add_special_tokens=True))

    def _completion(self, output) -> Result:
        choice = output.outputs[0]
        reason = choice.finish_reason
        prompt_tokens = len(output.prompt_token_ids or ())
        if reason in ("abort", "error"):
            return Result(
                request_id=output.request_id,
                prompt_tokens=prompt_tokens,
                error=("engine_error", f"vLLM finished the request with {reason!r}"),
            )
        extra = {}
        if isinstance(choice.stop_reason, (str, int)) and not isinstance(choice.stop_reason, bool):
            extra["stop_reason"] = choice.stop_reason
        return Result(
            request_id=output.request_id,
            text=choice.text,
            finish_reason=reason if reason in ("stop", "length") else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(choice.token_ids),
            extra=extra,
        )
