# One entry point per job. Every target does its own set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
# cargo test links an embedded interpreter (PyO3 auto-initialize).
PYO3_PYTHON ?= $(shell command -v python3)
export PYO3_PYTHON
export LD_LIBRARY_PATH := $(shell $(PYO3_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")'):$(LD_LIBRARY_PATH)

.PHONY: help setup dev demo test lint rust-test py-test model-check cluster-test field-cluster two-rabbits nnf-cluster storage-lab install bench fmt dist dist-check
.DEFAULT_GOAL := help

## help: list the targets (the default: a bare make runs nothing else)
help:
	@awk '/^## [a-z-]+: / { sub(/^## /, ""); n = index($$0, ":"); \
	  printf "  %-14s %s\n", substr($$0, 1, n - 1), substr($$0, n + 2) }' $(MAKEFILE_LIST)

## setup: Debian packages, .venv, release build of the wheel installed into it
setup:
	VENV=$(VENV) bash scripts/setup.sh

## dev: quick debug build of the native module into the existing .venv (make setup first)
dev:
	@test -x $(VENV)/bin/maturin || { echo "dev: no maturin in $(VENV); run 'make setup' once" >&2; exit 1; }
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --quiet

## demo: a real fence exchange on temp dirs with the bundled responder
demo: setup
	VENV=$(VENV) bash scripts/demo.sh

## test: everything CI runs (lint gates, model check, Rust tests, pytest incl. the real cluster)
test: setup lint model-check rust-test py-test

## lint: rustfmt, clippy -D warnings, ruff and mypy --strict (agent, tests, bench), stubtest
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench packaging lab
	$(VENV)/bin/ruff format --check python tests bench packaging lab
	$(VENV)/bin/mypy --strict python/fence_gfs2_recorder
	$(VENV)/bin/mypy --strict bench
	$(VENV)/bin/mypy --strict packaging/run.py
	$(VENV)/bin/mypy --strict lab/vmlab.py lab/test_storage_lab.py lab/guest
	$(PY) -m mypy.stubtest fence_gfs2_recorder._native

## rust-test: cargo test (engine unit tests, binding tests through PyO3)
rust-test:
	cargo test --quiet

## py-test: pytest (PYTEST_ARGS='-k name' narrows it)
py-test:
	$(PY) -m pytest -ra $(PYTEST_ARGS)

## model-check: the Spin model of the protocol (docs/MODEL.md); 8 to 30 s
model-check:
	bash scripts/model-check.sh


## field-cluster: the multi-node cluster cases alone (root; also part of py-test)
field-cluster: setup
	$(PY) -m pytest -ra tests/test_field_cluster.py $(PYTEST_ARGS)

## two-rabbits: a compute fenced only when both of its rabbits detached it (root; also part of py-test)
two-rabbits: setup
	$(PY) -m pytest -ra -m two_rabbits tests/test_field_two_rabbits.py $(PYTEST_ARGS)

## nnf-cluster: NNF's HA guide at its size, a rabbit and NNF_COMPUTES computes (root; default 16; not in py-test)
NNF_COMPUTES ?= 16
nnf-cluster: setup
	@banner=$$(mktemp); \
	FGR_NNF_COMPUTES=$(NNF_COMPUTES) FGR_NNF_BANNER=$$banner \
	  $(PY) -m pytest -ra tests/nnf_cluster_suite.py $(PYTEST_ARGS); rc=$$?; \
	cat $$banner; rm -f $$banner; exit $$rc

## storage-lab: the fence on real storage: GFS2 over NVMe-oF in VMs, fenced through the agent (root)
LAB_LOCK ?= /tmp/fgr-cluster.lock
LAB_BUILD ?= $(abspath build/storage-lab)
export LAB_BUILD
storage-lab: setup
	flock $(LAB_LOCK) $(PY) -m pytest -ra -s -p no:cacheprovider lab/test_storage_lab.py $(PYTEST_ARGS)
	@cat $(LAB_BUILD)/banner.txt

## fmt: rustfmt and ruff fix what lint checks
fmt:
	cargo fmt
	$(VENV)/bin/ruff format python tests bench packaging lab
	$(VENV)/bin/ruff check --fix python tests bench packaging lab

## install: the agent into /usr/sbin for Pacemaker (root), with its man page
install: setup
	VENV=$(VENV) bash scripts/install.sh

## bench: latency, start-up, burst, scale, discovery, memory, journal; FENCE_DUMMY=path adds fence_dummy recorder mode
FENCE_DUMMY ?=
bench: setup
	VENV=$(VENV) FENCE_DUMMY=$(FENCE_DUMMY) bash bench/run.sh

## dist: wheel (abi3, manylinux2014), sdist, .deb and .rpm into dist/, versioned from Cargo.toml
dist:
	@test -x $(VENV)/bin/maturin || $(MAKE) setup
	VENV=$(VENV) bash scripts/dist.sh

## dist-check: make dist, then prove the artefacts (glibc/rpm levels, Pythons, Debian 12/13 roots; root, network)
dist-check: dist
	VENV=$(VENV) bash scripts/dist-check.sh
