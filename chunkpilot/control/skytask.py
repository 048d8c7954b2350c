"""SkyPilot task rendering without SkyPilot: templates, overrides, secrets, job envs, dry-run text.

Everything here takes values and returns values (reading a template file is the
only I/O), and nothing here imports SkyPilot: ``chunkpilot.control.backends.sky`` is the one
module that does, lazily. Keeping the rendering apart lets the launcher and its
tests work out exactly what each job would get (its task config, ``env_overrides``
and ``secrets_overrides``) in milliseconds, with no SkyPilot installed; the backend
only turns the result into a ``sky.Task``, validates it and launches it.

* **Templates.** A template is plain SkyPilot task YAML (``task_templates/``),
  found by path or by a shipped template's name.
* **Rendering.** Command-line overrides (``--gpus``, ``--infra``, ``--use-spot``,
  ``--env``) are applied to the template; accelerator names are checked against an
  allow-list, since SkyPilot accepts any name offline and a typo would only fail at
  launch.
* **Secrets and envs.** The per-job values go in as ``env_overrides`` (the template
  marks them ``null``: required) and credentials as ``secrets_overrides``, read from
  the environment at launch and never written anywhere: not to the store, a log
  line, or a dry-run listing (``display_config`` and ``redact`` hide them).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from chunkpilot import fleet
from chunkpilot.errors import ConfigError
from chunkpilot.names import job_name
from chunkpilot.spec import RunSpec

DEFAULT_TEMPLATE = "vllm-spot.yaml"

# Set by the launcher on every job. Templates declare the first four as `null` (required).
ENV_RUN_URI = "CHUNKPILOT_RUN_URI"  # <store>/<run>: the run whose chunks the worker pulls
ENV_WORKER = "CHUNKPILOT_WORKER"  # the worker's id (w3): whose claims it may take back after a relaunch
ENV_ATTEMPT = "CHUNKPILOT_ATTEMPT"  # which launch of that worker the job is
ENV_DIST = "CHUNKPILOT_DIST"  # local folder with the launcher's own chunkpilot wheel (a file mount source)
ENV_RUN_ID = "CHUNKPILOT_RUN_ID"
ENV_GPUS_PER_ENGINE = fleet.ENV_GPUS_PER_ENGINE  # GPUs per engine: the machine runs one worker per group
ENV_MEMBERS = fleet.ENV_MEMBERS  # a several-job launch (num_jobs): the slots, in SKYPILOT_JOB_RANK order
RESERVED_ENVS = (ENV_RUN_URI, ENV_WORKER, ENV_ATTEMPT, ENV_DIST, ENV_RUN_ID, ENV_GPUS_PER_ENGINE, ENV_MEMBERS)

# Settings (not credentials) the worker's S3 client needs; passed on when set here and the run uses s3://.
PASS_THROUGH_ENVS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")
_CREDENTIAL_LIKE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|PRIVATE_KEY|AUTH", re.I)

# Accelerator names SkyPilot's catalogs use (checked against its common catalog, catalogs/v8). SkyPilot
# accepts any name offline (it may be a Kubernetes label), so a typo would only fail at launch: this
# allow-list catches it. Extend it with CHUNKPILOT_EXTRA_ACCELERATORS=NAME,NAME for new hardware.
KNOWN_ACCELERATORS: dict[str, str] = {
    # name: clouds (as SkyPilot's common catalog lists them; used to seed it when missing)
    "T4": "AWS Azure GCP", "T4g": "AWS", "L4": "AWS GCP RunPod Seeweb", "L40": "PrimeIntellect RunPod",
    "L40S": "AWS Cudo OCI PrimeIntellect RunPod Seeweb Vast nebius", "A10": "Azure Lambda OCI", "A10G": "AWS",
    "A30": "Seeweb", "A40": "Cudo RunPod Vast", "A100": "AWS Azure Cudo GCP Lambda OCI PrimeIntellect Seeweb Vast",
    "A100-80GB": "AWS Azure GCP Lambda OCI Paperspace PrimeIntellect RunPod scp", "A100-80GB-SXM": "RunPod",
    "A800": "Cudo", "A4000": "Paperspace PrimeIntellect", "A6000": "Lambda PrimeIntellect",
    "H100": "AWS Azure DO GCP Hyperbolic Lambda OCI Paperspace PrimeIntellect RunPod Seeweb Vast nebius",
    "H100-MEGA": "GCP", "H100-NVL": "RunPod", "H100-NVLINK": "Fluidstack", "H100-SXM": "Cudo RunPod",
    "H200": "AWS GCP OCI PrimeIntellect Seeweb Vast nebius", "H200-SXM": "RunPod", "GH200": "Lambda",
    "B200": "AWS Lambda PrimeIntellect RunPod nebius", "B300": "", "GB200": "", "GB300": "",
    "V100": "AWS Azure Cudo GCP IBM Lambda OCI Paperspace PrimeIntellect Vast", "V100-32GB": "AWS Azure Paperspace scp",
    "P100": "GCP OCI", "P4": "GCP", "K80": "Azure", "M60": "Azure", "MI300X": "RunPod",
    "RTX3090": "RunPod Vast", "RTX4090": "RunPod Vast", "RTX5090": "Vast", "RTX4000-Ada": "RunPod",
    "RTX6000": "Lambda Seeweb", "RTX6000-Ada": "RunPod Vast", "RTXA4000": "RunPod", "RTXA4500": "RunPod",
    "RTXA5000": "Cudo RunPod", "RTXA6000": "Cudo RunPod Seeweb Vast", "RTXPRO6000": "", "RTXPRO6000S": "Vast",
    "RTXPRO6000WS": "Vast", "Inferentia": "AWS", "Trainium": "AWS", "Trainium2": "AWS",
}
_TPU = re.compile(r"^tpu-v\d+[a-z]*(-\d+)?$", re.I)


# -- templates --------------------------------------------------------------------


def template_dirs() -> list[Path]:
    """Where shipped templates are looked up: the source checkout, then an installed package's data."""
    import chunkpilot

    package = Path(chunkpilot.__file__).resolve().parent
    data = [Path(base) / "share" / "chunkpilot" / "task_templates" for base in (sys.prefix, site.getuserbase())]
    return [package.parent / "task_templates", *data, package / "task_templates"]


def shipped_templates() -> list[Path]:
    seen: dict[str, Path] = {}
    for folder in template_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                seen.setdefault(path.name, path)
    return sorted(seen.values(), key=lambda p: p.name)


def find_template(ref: str | None) -> Path:
    """A template by path, or by name among the shipped ones (``vllm-spot`` or ``vllm-spot.yaml``)."""
    ref = ref or DEFAULT_TEMPLATE
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve()
    if "/" not in ref:
        name = ref if ref.endswith((".yaml", ".yml")) else f"{ref}.yaml"
        for folder in template_dirs():
            if (folder / name).is_file():
                return (folder / name).resolve()
    shipped = ", ".join(p.stem for p in shipped_templates()) or "none found"
    raise ConfigError(f"task template {ref!r} not found: give a path to a YAML file or a shipped template ({shipped})")


@dataclass(frozen=True)
class Template:
    source: str  # a path, for messages
    text: str
    config: dict

    @classmethod
    def parse(cls, source: str, text: str) -> "Template":
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"task template {source}: not valid YAML: {exc}") from exc
        if not isinstance(config, dict):
            raise ConfigError(f"task template {source}: expected a SkyPilot task (a YAML mapping)")
        return cls(source, text, config)

    @classmethod
    def load(cls, ref: str | None) -> "Template":
        path = find_template(ref)
        try:
            return cls.parse(str(path), path.read_text())
        except OSError as exc:
            raise ConfigError(f"task template {path}: cannot read it: {exc.strerror}") from exc


# -- rendering (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskOptions:
    """The run's overrides of its template (``RunSpec.backend_options``): names only, never secret values."""

    template: str | None = None
    gpus: str | None = None
    infra: str | None = None
    use_spot: bool | None = None  # None: the template decides
    envs: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    pool: str | None = None  # run the workers as jobs on this SkyPilot pool
    image: str | None = None  # a docker image to run on (``docker:`` added when missing): SkyPilot's image_id

    @classmethod
    def from_spec(cls, spec: RunSpec) -> "TaskOptions":
        opts = spec.backend_options or {}
        return cls(
            template=opts.get("template") or spec.template,
            gpus=opts.get("gpus") or None,
            infra=opts.get("infra") or None,
            use_spot=opts.get("use_spot", spec.use_spot),
            envs={str(k): str(v) for k, v in (opts.get("envs") or {}).items()},
            secrets=tuple(opts.get("secrets") or ()),
            pool=opts.get("pool") or None,
            image=opts.get("image") or None,
        )


def resource_variants(resources: dict) -> list[dict]:
    """The top-level resources and each ``any_of`` / ``ordered`` alternative."""
    out = [resources]
    for key in ("any_of", "ordered"):
        out += [r for r in resources.get(key) or [] if isinstance(r, dict)]
    return out


def docker_image_id(image: str) -> str:
    """``vllm/vllm-openai:v0.32.0`` -> SkyPilot's ``docker:vllm/vllm-openai:v0.32.0`` (kept when it says so
    already). ConfigError for an empty name or one with whitespace."""
    name = image.strip().removeprefix("docker:")
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"--image {image!r}: give a docker image, e.g. vllm/vllm-openai:v0.32.0")
    return f"docker:{name}"


def apply_overrides(template: dict, options: TaskOptions, name: str) -> dict:
    """The template with ``options`` applied and the task named ``name``. Pure."""
    cfg = copy.deepcopy(template)
    cfg["name"] = name
    resources = cfg.get("resources")
    if resources is None:
        resources = cfg["resources"] = {}
    if not isinstance(resources, dict):
        raise ConfigError("resources: expected a mapping")
    alternatives = {k: resources.get(k) for k in ("any_of", "ordered") if isinstance(resources.get(k), list)}
    if options.gpus:
        resources["accelerators"] = options.gpus  # replaces the template's choice, including any_of ones
        for key, entries in alternatives.items():
            for entry in entries:
                if isinstance(entry, dict):
                    entry.pop("accelerators", None)
    if options.infra:
        for r in [resources, *(e for entries in alternatives.values() for e in entries if isinstance(e, dict))]:
            for key in ("infra", "cloud", "region", "zone"):
                r.pop(key, None)
        resources["infra"] = options.infra
    if options.image:
        for entries in alternatives.values():
            for entry in entries:
                if isinstance(entry, dict):
                    entry.pop("image_id", None)
        resources["image_id"] = docker_image_id(options.image)
    if options.use_spot is not None:
        resources["use_spot"] = bool(options.use_spot)
        for entries in alternatives.values():
            for entry in entries:
                if isinstance(entry, dict) and "use_spot" in entry:
                    entry["use_spot"] = bool(options.use_spot)
    for key, entries in alternatives.items():
        kept = [e for e in entries if not isinstance(e, dict) or e]
        if kept:
            resources[key] = kept
        else:
            resources.pop(key)
    return cfg


# Per-job envs a pool worker's setup does not need (the jobs exec'd onto it get them).
_PER_JOB_ENVS = ("CHUNKPILOT_RUN_URI", "CHUNKPILOT_WORKER", "CHUNKPILOT_ATTEMPT", "CHUNKPILOT_RUN_ID",
                 "CHUNKPILOT_GPUS_PER_ENGINE", "CHUNKPILOT_MEMBERS")


def pool_config(template: dict, options: TaskOptions, pool: str, workers: int) -> dict:
    """The SkyPilot pool YAML made from a task template (pure): the same resources, setup and file
    mounts — so setup (the vLLM install) runs once per pool worker — with ``pool: {workers: N}``,
    without ``run`` (each job brings its own) and without ``job_recovery`` (SkyPilot rejects it in a
    pool: it replaces preempted pool workers itself). Per-job ``null`` envs are left to the jobs."""
    cfg = apply_overrides(template, options, pool)
    cfg.pop("run", None)
    for r in resource_variants(cfg.get("resources") or {}):
        r.pop("job_recovery", None)
    envs = cfg.get("envs") if isinstance(cfg.get("envs"), dict) else {}
    for key in _PER_JOB_ENVS:
        envs.pop(key, None)
    cfg["pool"] = {"workers": int(workers)}
    return cfg


def pooled_job_config(cfg: dict) -> dict:
    """A job's task for a pool: its own setup and file mounts would be ignored (the pool worker ran
    the pool's), so they are dropped rather than uploaded for nothing. Pure."""
    out = copy.deepcopy(cfg)
    out.pop("setup", None)
    out.pop("file_mounts", None)
    envs = out.get("envs") if isinstance(out.get("envs"), dict) else {}
    envs.pop(ENV_DIST, None)
    return out


def batch_job_name(run_id: str, members: list[tuple[str, int]]) -> str:
    """The SkyPilot name of one launch request: the worker launch's own name for a single job, and
    ``<first>-x<count>`` for a ``num_jobs`` launch (all its jobs share it; rank r is member r)."""
    name = job_name(run_id, *members[0])
    return name if len(members) == 1 else f"{name}-x{len(members)}"


def parse_accelerators(value: Any) -> dict[str, float]:
    """SkyPilot's accelerator spellings (``L4:1``, ``{L4: 1, A10G: 1}``, ``[L4, A10G:2]``, ``"{L4:1, A10G:1}"``) -> name: count."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): float(v) if v is not None else 1.0 for k, v in value.items()}
    items = value if isinstance(value, list) else str(value).strip().strip("{}[]").split(",")
    out = {}
    for item in items:
        name, _, count = str(item).strip().partition(":")
        if name.strip():
            try:
                out[name.strip()] = float(count) if count.strip() else 1.0
            except ValueError:
                out[name.strip()] = 1.0
    return out


def accelerator_choices(cfg: dict) -> dict[str, float]:
    resources = cfg.get("resources") if isinstance(cfg.get("resources"), dict) else {}
    out: dict[str, float] = {}
    for r in resource_variants(resources):
        out.update(parse_accelerators(r.get("accelerators")))
    return out


def known_accelerators(environ: Mapping[str, str] | None = None, catalog_names: Iterable[str] = ()) -> set[str]:
    """The allow-list, plus ``catalog_names`` (the installed SkyPilot's own list, when the caller has it)
    and CHUNKPILOT_EXTRA_ACCELERATORS."""
    environ = os.environ if environ is None else environ
    names = set(KNOWN_ACCELERATORS)
    names.update(catalog_names)
    names.update(n.strip() for n in environ.get("CHUNKPILOT_EXTRA_ACCELERATORS", "").split(",") if n.strip())
    return names


def check_accelerators(cfg: dict, source: str, environ: Mapping[str, str] | None = None,
                       catalog_names: Iterable[str] = ()) -> None:
    """ConfigError for an accelerator name SkyPilot's catalogs do not have (e.g. ``L4O``)."""
    known = known_accelerators(environ, catalog_names)
    by_lower = {n.lower(): n for n in known}
    for name in accelerator_choices(cfg):
        if name.lower() in by_lower or _TPU.match(name):
            continue
        close = difflib.get_close_matches(name.upper(), [n.upper() for n in known], n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(by_lower[c.lower()] for c in close)}?)" if close else ""
        raise ConfigError(
            f"task template {source}: unknown accelerator {name!r}{hint}. Use a name from `sky show-gpus`; "
            "for hardware newer than this list, add it to CHUNKPILOT_EXTRA_ACCELERATORS"
        )


@dataclass(frozen=True)
class Secrets:
    overrides: tuple[tuple[str, str], ...]  # (name, value) for secrets_overrides: never shown or stored
    passed: tuple[str, ...]  # names passed to the job
    left_out: tuple[str, ...]  # declared by the template, not set here: not passed
    inline_values: tuple[str, ...] = ()  # values written into the template itself (redacted on display)

    @property
    def values(self) -> list[str]:
        return [v for _, v in self.overrides if v] + [v for v in self.inline_values if v]


def resolve_secrets(cfg: dict, names: Iterable[str], environ: Mapping[str, str]) -> Secrets:
    """Fill ``cfg['secrets']`` from the environment; mutates ``cfg`` to drop declared-but-unset ones.

    A name given with ``--secret`` must be set (ConfigError naming the variable); a
    template's ``NAME: null`` is passed when set and left out otherwise (e.g. no
    store keys when the job's machine role grants access). Inline values a user
    wrote into a template are kept as SkyPilot would, and redacted on display.
    """
    overrides: dict[str, str] = {}
    left_out = []
    declared = cfg.get("secrets")
    if isinstance(declared, dict):
        for key in list(declared):
            if declared[key] is not None or str(key).startswith("secrets:"):
                continue
            if environ.get(str(key)):
                overrides[str(key)] = environ[str(key)]
            else:
                del declared[key]
                left_out.append(str(key))
        if not declared:
            cfg.pop("secrets")
    for name in names:
        value = environ.get(name)
        if not value:
            raise ConfigError(f"--secret {name}: ${name} is not set in this environment; export it, or drop --secret {name}")
        overrides[name] = value
        if name in left_out:
            left_out.remove(name)
    inline = {str(k): str(v) for k, v in declared.items() if v is not None} if isinstance(declared, dict) else {}
    return Secrets(tuple(overrides.items()), tuple(sorted({*overrides, *inline})), tuple(left_out), tuple(inline.values()))


def uses_s3(spec: RunSpec, run_uri: str) -> bool:
    return (run_uri.startswith("s3://") or spec.model.startswith("s3://")
            or any(p.uri.startswith("s3://") for p in spec.inputs))


def uses_hf_datasets(spec: RunSpec) -> bool:
    return any(p.uri.startswith("hf://") for p in spec.inputs)


def job_envs(spec: RunSpec, options: TaskOptions, run_uri: str, worker: str, attempt: int, dist: str,
             environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``env_overrides`` for one job: which worker launch it is, S3 settings, then the user's ``--env``."""
    envs = [
        (ENV_RUN_URI, run_uri),
        (ENV_WORKER, worker),
        (ENV_ATTEMPT, str(attempt)),
        (ENV_DIST, dist),
        (ENV_RUN_ID, spec.run_id),
        (ENV_GPUS_PER_ENGINE, str(fleet.gpus_per_engine(spec.engine_options))),
    ]
    if uses_s3(spec, run_uri):
        envs += [(k, environ[k]) for k in PASS_THROUGH_ENVS if environ.get(k)]
    if uses_hf_datasets(spec) and environ.get("HF_ENDPOINT"):  # a hub mirror: jobs read the inputs there too
        envs.append(("HF_ENDPOINT", environ["HF_ENDPOINT"]))
    envs += sorted(options.envs.items())
    return envs


def check_user_envs(options: TaskOptions, declared_secrets: Iterable[str]) -> None:
    for key in options.envs:
        if key in RESERVED_ENVS:
            raise ConfigError(f"--env {key}: chunkpilot sets {key} for each job; it cannot be overridden")
        if key in set(declared_secrets) or _CREDENTIAL_LIKE.search(key):
            raise ConfigError(
                f"--env {key}: this looks like a credential, and --env values are recorded in run.json; "
                f"pass it with --secret {key} (the value is read from ${key} at launch, never stored)"
            )

def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def check_reachable(spec: RunSpec, run_uri: str, local_paths_reachable: bool = False) -> None:
    """ConfigError if the jobs would need a path on this machine (unless jobs run here)."""
    if local_paths_reachable:
        return
    for uri in [run_uri, *(p.uri for p in spec.inputs)]:
        if is_local(uri):
            raise ConfigError(
                f"{uri} is a path on this machine, which SkyPilot jobs in the cloud cannot read: "
                "put the inputs in object storage and use --store s3://bucket/prefix"
            )


@dataclass
class RunTasks:
    """Renders the tasks of one run: template + overrides + per-job envs + secrets."""

    spec: RunSpec
    run_uri: str
    template: Template
    options: TaskOptions
    environ: Mapping[str, str]

    @classmethod
    def for_spec(cls, spec: RunSpec, run_uri: str, template: Template | None = None,
                 environ: Mapping[str, str] | None = None) -> "RunTasks":
        options = TaskOptions.from_spec(spec)
        template = template or Template.load(options.template)
        declared = template.config.get("secrets")
        check_user_envs(options, declared if isinstance(declared, dict) else ())
        return cls(spec, run_uri, template, options, os.environ if environ is None else environ)

    def render(self, worker: str, attempt: int, dist: str) -> tuple[dict, list[tuple[str, str]], Secrets]:
        """(task config, ``env_overrides``, secrets) of launch ``attempt`` of worker ``worker``."""
        return self.render_batch([(worker, attempt)], dist)

    def render_batch(self, members: list[tuple[str, int]], dist: str) -> tuple[dict, list[tuple[str, str]], Secrets]:
        """The task of one launch request for ``members`` (worker, attempt) — one job each, rank r being
        member r. On a pool (``--pool``) the task drops setup and file mounts (``pooled_job_config``)
        and carries the member list (``CHUNKPILOT_MEMBERS``)."""
        name = batch_job_name(self.spec.run_id, members)
        try:
            cfg = apply_overrides(self.template.config, self.options, name)
        except ConfigError as exc:
            raise ConfigError(f"task template {self.template.source}: {exc}") from exc
        secrets = resolve_secrets(cfg, self.options.secrets, self.environ)
        worker, attempt = members[0]
        envs = job_envs(self.spec, self.options, self.run_uri, worker, attempt, dist, self.environ)
        if self.options.pool:
            cfg = pooled_job_config(cfg)
            envs = [(k, v) for k, v in envs if k != ENV_DIST] + [(ENV_MEMBERS, fleet.encode_members(members))]
        return cfg, envs, secrets

    def render_pool(self, pool: str, workers: int, dist: str) -> tuple[dict, list[tuple[str, str]], Secrets]:
        """(pool config, ``env_overrides``, secrets) for ``sky.jobs.pool_apply``."""
        try:
            cfg = pool_config(self.template.config, self.options, pool, workers)
        except ConfigError as exc:
            raise ConfigError(f"task template {self.template.source}: {exc}") from exc
        secrets = resolve_secrets(cfg, self.options.secrets, self.environ)
        return cfg, [(ENV_DIST, dist)], secrets

    @property
    def source(self) -> str:
        extra = [f"--{k} {v}" for k, v in (("gpus", self.options.gpus), ("infra", self.options.infra),
                                            ("image", self.options.image)) if v]
        return self.template.source + (f" (with {' '.join(extra)})" if extra else "")


def task_shape(cfg: dict, envs: list[tuple[str, str]]) -> str:
    """What SkyPilot validates, minus the per-job values it does not interpret."""
    per_job = {ENV_WORKER, ENV_ATTEMPT, ENV_RUN_ID, ENV_MEMBERS}
    shape = copy.deepcopy(cfg)
    shape.pop("name", None)
    return json.dumps([shape, [(k, "" if k in per_job else v) for k, v in envs]], sort_keys=True, default=str)


# -- the dry run (formatting only) ---------------------------------------------------


class BlockDumper(yaml.SafeDumper):
    pass


def _str_block(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


BlockDumper.add_representer(str, _str_block)

REDACTED = "<redacted>"


def display_config(cfg: dict, envs: list[tuple[str, str]], secrets: Secrets) -> dict:
    """The task as it is submitted, secrets redacted: for people, never for SkyPilot."""
    shown = copy.deepcopy(cfg)
    shown["envs"] = {**(shown.get("envs") or {}), **dict(envs)}
    declared = shown.get("secrets") if isinstance(shown.get("secrets"), dict) else {}
    shown_secrets = {k: REDACTED for k in declared}
    shown_secrets.update({k: REDACTED for k, _ in secrets.overrides})
    if shown_secrets:
        shown["secrets"] = shown_secrets
    return shown


def redact(text: str, secrets: Secrets) -> str:
    for value in sorted(secrets.values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def worker_lines(cfg: dict, envs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    run = cfg.get("run") or ""
    lines = [line.strip() for line in run.splitlines() if "worker" in line and not line.strip().startswith("#")]
    values = {**{k: str(v) for k, v in (cfg.get("envs") or {}).items() if v is not None}, **dict(envs)}
    expanded = [re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), line) for line in lines]
    return lines, expanded


__all__ = [
    "DEFAULT_TEMPLATE", "ENV_RUN_URI", "ENV_WORKER", "ENV_ATTEMPT", "ENV_DIST", "ENV_RUN_ID", "RESERVED_ENVS",
    "PASS_THROUGH_ENVS", "KNOWN_ACCELERATORS", "REDACTED", "template_dirs", "shipped_templates", "find_template",
    "Template", "TaskOptions", "apply_overrides", "parse_accelerators", "accelerator_choices", "known_accelerators",
    "check_accelerators", "Secrets", "resolve_secrets", "job_envs", "check_user_envs", "display_config", "redact",
    "BlockDumper", "resource_variants", "uses_s3", "uses_hf_datasets", "worker_lines", "is_local", "check_reachable", "RunTasks", "task_shape",
    "pool_config", "pooled_job_config", "batch_job_name", "ENV_GPUS_PER_ENGINE", "ENV_MEMBERS",
]
