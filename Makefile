# Thin targets over the CLI. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BACKEND ?= onnxruntime
DEVICE ?=
ARGS ?=

.PHONY: setup demo test test-fast lint images image run clean

$(BIN)/mlperf-bert: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,plot]'
	touch $@

setup: $(BIN)/mlperf-bert

demo: setup
	$(BIN)/mlperf-bert run $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not docker" $(ARGS)

lint: setup
	$(BIN)/ruff check orchestrator tests

run: setup
	$(BIN)/mlperf-bert run --backend $(BACKEND) $(if $(DEVICE),--device $(DEVICE)) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
