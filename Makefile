# ferryman — every target installs what it needs; `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint test unit demo bench crds cluster-bins cluster

install: $(STAMP)

$(STAMP): pyproject.toml e2e/harness/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e e2e/harness
	touch $@

lint: install
	$(BIN)/ruff check operator tests e2e
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not cluster"

test: install lint cluster-bins
	$(BIN)/pytest

bench: install
	$(BIN)/python tests/bench/run.py

# Offline conversion of the examples, then the operator end to end on the local control plane
# (CutoverPolicy Plan and Mirror, an ExperimentMigration of TensorBoard logs into an embedded MLflow store).
demo: install cluster-bins
	$(BIN)/ferryman convert examples/pytorchjobs --report text > /dev/null
	$(BIN)/python -m ferryman_dev.demo

crds: install
	$(BIN)/python -m ferryman.api.resources .

# Control plane binaries (etcd, kube-apiserver/-controller-manager/-scheduler, kwok) and helm from the pinned
# wrapper modules in e2e/bins/, cached in .cache/bin/<component>-<version>/; rebuilt only when a pin changes.
cluster-bins:
	@e2e/bins/build.sh

# A local dev cluster in the background: `eval $$($(BIN)/ferryman dev cluster env)`, `ferryman dev cluster down`.
cluster: install cluster-bins
	$(BIN)/ferryman dev cluster up
