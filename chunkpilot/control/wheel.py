"""A wheel of the chunkpilot that is running right now, so cloud jobs run the very same code.

Cloud jobs install chunkpilot from a wheel the launcher ships with the job
(SkyPilot ``file_mounts``), so nobody has to publish a release to run a
modified checkout, and the worker in the cloud always matches the launcher
that planned the run. The wheel is pure Python: the ``launcher`` and ``worker``
packages zipped with their metadata, built in milliseconds without network or
build tools. It works the same from a source checkout and from an installed
package, since it is made from the imported packages' own files.

Builds are reproducible (sorted entries, fixed timestamps) and cached by
content under ``$CHUNKPILOT_CACHE/dist/<version>-<digest>/``: one folder per
distinct source tree, holding exactly one wheel.

Why not ``pip wheel .``: it needs the source tree and pyproject.toml (an installed
chunkpilot has neither), setuptools at launch time, and takes seconds where this takes
milliseconds (measured: 2.5 s against 0.03 s on the 2-core machine; BENCHMARKS.md).
What it would add — build hooks, compiled parts — chunkpilot does not have.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
import tempfile
import zipfile
from pathlib import Path

from chunkpilot import __version__

DIST_NAME = "chunkpilot"
PACKAGES = ("chunkpilot", "launcher", "worker")
# Used when the running code is not an installed distribution (a bare checkout on sys.path).
FALLBACK_REQUIRES = ("click>=8.1", "rich>=13", "pyyaml>=6", "boto3>=1.35", "tenacity>=8.2", "jinja2>=3.1",
                     "jsonschema>=4.18", "pyarrow>=15", "huggingface_hub>=0.24", "zstandard>=0.22")
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def wheel_filename(version: str = __version__) -> str:
    return f"{DIST_NAME}-{version}-py3-none-any.whl"


def source_files() -> list[tuple[str, bytes]]:
    """(archive path, content) of every file of the packages, sorted."""
    files = []
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith(_SKIP_SUFFIXES):
                    continue
                path = Path(dirpath) / name
                files.append((f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return sorted(files)


def _requires() -> list[str]:
    try:
        declared = importlib.metadata.requires(DIST_NAME) or []
    except importlib.metadata.PackageNotFoundError:
        return list(FALLBACK_REQUIRES)
    # Extras are not offered by the shipped wheel: the job installs vLLM itself.
    return [r for r in declared if "extra ==" not in r] or list(FALLBACK_REQUIRES)


def _metadata_files(version: str, files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    info = f"{DIST_NAME}-{version}.dist-info"
    metadata = "\n".join(
        ["Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {version}",
         "Summary: chunkpilot, as built by the launcher that shipped it",
         *(f"Requires-Dist: {r}" for r in _requires()), ""]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: chunkpilot.control.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry_points = "[console_scripts]\nlauncher = launcher.cli:main\n"
    top_level = "\n".join(PACKAGES) + "\n"
    out = [(f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", wheel.encode()),
           (f"{info}/entry_points.txt", entry_points.encode()), (f"{info}/top_level.txt", top_level.encode())]
    record_lines = []
    for path, data in files + out:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{info}/RECORD,,")
    out.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode()))
    return out


def source_digest(files: list[tuple[str, bytes]] | None = None) -> str:
    """A short digest of the packages' files: names the build folder."""
    h = hashlib.sha256()
    for path, data in files if files is not None else source_files():
        h.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:12]


def default_dist_root() -> Path:
    return Path(os.environ.get("CHUNKPILOT_CACHE", "~/.cache/chunkpilot")).expanduser() / "dist"


def dist_dir(root: Path | None = None, build: bool = True) -> Path:
    """The folder holding this chunkpilot's wheel (and nothing else); built if ``build`` and missing.

    With ``build=False`` only the path is computed (for a dry run, which writes nothing).
    """
    files = source_files()
    folder = (root or default_dist_root()) / f"{__version__}-{source_digest(files)}"
    target = folder / wheel_filename()
    if not build or target.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".building-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, data in files + _metadata_files(__version__, files):
                info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        os.replace(tmp, target)  # atomic: a concurrent builder writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder
