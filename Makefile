# ferryman — every target installs what it needs; `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint test unit demo bench crds cluster-bins cluster db-packages host-packages image test-realnode

install: $(STAMP)

# uv resolves and installs in half pip's time; it verifies TLS against the system's certificates, as pip does.
# Everything is compiled to bytecode here: with PYTHONDONTWRITEBYTECODE set (as on CI) no import writes it, and
# each of the tests' many Python processes would compile its imports again.
$(STAMP): pyproject.toml e2e/harness/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv~=0.13.9'
	UV_NATIVE_TLS=1 $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]' -e e2e/harness
	$(BIN)/python -m compileall -q operator e2e/harness >/dev/null
	touch $@

lint: install
	$(BIN)/ruff check operator tests e2e
	$(BIN)/mypy

unit: install db-packages
	$(BIN)/pytest -m "not cluster"

test: install lint cluster-bins db-packages
	$(BIN)/pytest

bench: install db-packages
	$(BIN)/python tests/bench/run.py

# Offline conversion of the examples, then the operator end to end on the local control plane
# (CutoverPolicy Plan and Mirror, an ExperimentMigration of TensorBoard logs into an embedded MLflow store).
demo: install cluster-bins
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

# The database servers MLflow's database destinations are tested and benchmarked against (ferryman_dev.postgres
# starts them in temporary directories), installed when missing (as root, like CI).
DB_PACKAGES := postgresql mariadb-server

db-packages:
	@missing=$$(for p in $(DB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Debian packages of `make image` and the real-node tier, installed when missing (as root, like CI).
HOST_PACKAGES := containerd runc containernetworking-plugins iptables iproute2 busybox-static mmdebstrap umoci skopeo socat

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The operator/worker image without Docker (mmdebstrap, umoci, skopeo), rebuilt when what goes into it changes.
IMAGE := .cache/image/ferryman.oci.tar

image: $(IMAGE)

$(IMAGE): $(shell find operator -type f -not -path '*/__pycache__/*') pyproject.toml README.md deploy/image/build.sh | install host-packages
	deploy/image/build.sh $@

# Pods of that image on a real kubelet node on this host (ferryman_dev.realnode).
test-realnode: install cluster-bins host-packages image
	$(BIN)/pytest -m realnode
