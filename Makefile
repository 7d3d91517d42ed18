# Thin targets over the CLI. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BACKEND ?= onnxruntime
DEVICE ?=
ARGS ?=
RUNNER ?=
BASE_IMAGE ?=

.PHONY: setup demo test test-fast lint format images image run submission clean

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
	$(BIN)/ruff format --check orchestrator tests benchmarks
	$(BIN)/ruff check orchestrator tests benchmarks
	$(BIN)/python -m mypy orchestrator

format: setup
	$(BIN)/ruff format orchestrator tests benchmarks
	$(BIN)/ruff check --fix orchestrator tests benchmarks

run: setup
	$(BIN)/mlperf-bert run --backend $(BACKEND) $(if $(DEVICE),--device $(DEVICE)) $(if $(RUNNER),--runner $(RUNNER)) $(ARGS)

images: setup
	$(BIN)/mlperf-bert images build $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(ARGS)

image: setup
	$(BIN)/mlperf-bert images build $(BACKEND)$(if $(DEVICE),-$(DEVICE)) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(ARGS)

submission: setup
	$(BIN)/mlperf-bert submission run --backend $(BACKEND) $(if $(DEVICE),--device $(DEVICE)) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
