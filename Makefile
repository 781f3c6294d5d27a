# Two commands for a newcomer on a fresh machine:
#   make run    create .venv, install, train the default model on Tiny Shakespeare, print val perplexity and a sample
#   make test   create .venv, install with test extras, run the test suite
# TORCH pins the CPU build by default; on a GPU machine use e.g. `make run TORCH=torch==2.13.0`
# with your CUDA index, or any torch>=2.3.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PRESET ?= cpu-small
# cpu-small's 2000 iterations take ~4 min on a 2-core CPU; 1400 keep `make run` near 3 minutes.
RUN_ARGS ?= --set max_iters=1400 --set lr_decay_iters=1400
EXTRAS ?= dev
BIN := $(VENV)/bin

.PHONY: run test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-$(EXTRAS): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

run: install
	$(BIN)/tinylm train --preset $(PRESET) $(RUN_ARGS) --out runs/$(PRESET)-$$(date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
