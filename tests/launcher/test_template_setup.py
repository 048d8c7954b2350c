"""The shipped templates' setup, run for real by bash with stand-ins for python3 and uv: on an image
that has vLLM it installs no vLLM; elsewhere it installs the pinned one."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "task_templates").glob("*.yaml"))


def executable(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_setup(tmp_path: Path, template: Path, image_has_vllm: bool) -> tuple[list[str], str]:
    """Run ``template``'s setup; returns the uv calls it made and its output."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".chunkpilot" / "dist").mkdir(parents=True)
    (home / ".chunkpilot" / "dist" / "chunkpilot-0-py3-none-any.whl").write_text("")
    calls = tmp_path / "uv-calls"
    # uv: records its arguments; `uv venv ... DIR` makes a venv whose python accepts anything.
    executable(bin_dir / "uv", f'echo "$*" >> {calls}\n'
               'if [ "$1" = venv ]; then d="${@: -1}"; mkdir -p "$d/bin"; '
               'printf "#!/bin/bash\\nexit 0\\n" > "$d/bin/python"; chmod +x "$d/bin/python"; '
               'echo "export PATH=$d/bin:\\$PATH" > "$d/bin/activate"; fi\n')
    # the image's python3: has vLLM 0.32.0, or none
    has = "0" if image_has_vllm else "1"
    executable(bin_dir / "python3", f'case "$*" in *"import vllm; print"*) echo 0.32.0;; *"import vllm"*) exit {has};; esac\n')
    executable(bin_dir / "nvidia-smi", "exit 0\n")
    setup = yaml.safe_load(template.read_text())["setup"]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "VLLM_VERSION": "0.32.0"}
    done = subprocess.run(["bash", "-c", setup], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines(), done.stdout


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_setup_skips_the_vllm_install_on_an_image_that_has_vllm(tmp_path, template):
    uv, out = run_setup(tmp_path, template, image_has_vllm=True)
    assert "vLLM 0.32.0 is on the image: not installing vllm==0.32.0" in out
    assert not any("vllm==" in c for c in uv), uv
    assert any(c.startswith("venv --seed --system-site-packages --python ") for c in uv), uv  # sees the image's vLLM
    assert any("--reinstall-package chunkpilot" in c for c in uv), uv  # chunkpilot still comes from the wheel


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_setup_installs_the_pinned_vllm_elsewhere(tmp_path, template):
    uv, out = run_setup(tmp_path, template, image_has_vllm=False)
    assert "is on the image" not in out
    assert any(c.startswith("pip install vllm==0.32.0 --torch-backend=auto") for c in uv), uv
    assert not any("--system-site-packages" in c for c in uv), uv
