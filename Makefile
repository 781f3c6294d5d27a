# Two commands for a newcomer on a fresh machine:
#   make run    create .venv, install, train the default model on Tiny Shakespeare, print val perplexity and a sample
#   make test   create .venv, install with test extras, lint, run the test suite
# Without an NVIDIA GPU, torch comes from PyTorch's CPU wheel index (no multi-GB CUDA download);
# override with e.g. `make run TORCH_INDEX=` (plain pip) or `TORCH_INDEX=https://download.pytorch.org/whl/cu128`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
PRESET ?= cpu-small
# cpu-small's 2000 iterations take ~4 min on a 2-core CPU; 1400 keep `make run` near 3 minutes.
RUN_ARGS ?= --set max_iters=1400 --set lr_decay_iters=1400
ifndef RUN_DIR
RUN_DIR := runs/$(PRESET)-$(shell date +%Y%m%d-%H%M%S)
endif
EXTRAS ?= dev
BIN := $(VENV)/bin

.PHONY: run test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch alone from its index (--no-deps: its dependencies come from the default index, with tinylm's)
$(VENV)/.installed-$(EXTRAS): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --no-deps "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

run: install
	@echo "make run: training preset $(PRESET) ($(RUN_ARGS)) into $(RUN_DIR);"
	@echo "          about 3 minutes on a 2-core CPU (measured: 167 s), then the val perplexity and a sample."
	$(BIN)/tinylm train --preset $(PRESET) $(RUN_ARGS) --out $(RUN_DIR)
	@echo "Next: source $(VENV)/bin/activate (or use $(BIN)/tinylm), then e.g. tinylm sample --run $(RUN_DIR)"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# Two processes for most tests, then the few that must run alone (DDP over gloo, latency bounds).
test: lint
	$(BIN)/python -m pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
