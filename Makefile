# ferryman — every target installs what it needs; `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint test unit demo bench crds cluster-bins cluster

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: install
	$(BIN)/ruff check operator tests e2e
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not cluster"

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python tests/bench/run.py

demo: install
	$(BIN)/ferryman convert examples/ --report text

crds: install
	$(BIN)/python -m ferryman.api.resources crds
