# One entry point per job. Every target does its own set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
# cargo test links an embedded interpreter (PyO3 auto-initialize).
PYO3_PYTHON ?= $(shell command -v python3)
export PYO3_PYTHON
export LD_LIBRARY_PATH := $(shell $(PYO3_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")'):$(LD_LIBRARY_PATH)

.PHONY: setup demo test lint rust-test py-test cluster-test field-cluster two-rabbits install bench fmt

setup:
	VENV=$(VENV) bash scripts/setup.sh

## demo: a real fence exchange on temp dirs with the bundled responder
demo: setup
	VENV=$(VENV) bash scripts/demo.sh

## test: everything CI runs (lint gates, Rust tests, pytest incl. the real cluster)
test: setup lint rust-test py-test

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests
	$(VENV)/bin/ruff format --check python tests
	$(VENV)/bin/mypy --strict python/fence_gfs2_recorder
	$(PY) -m mypy.stubtest fence_gfs2_recorder._native

rust-test:
	cargo test --quiet

py-test:
	$(PY) -m pytest -ra $(PYTEST_ARGS)

## field-cluster: the multi-node cluster cases alone (root; also part of py-test)
field-cluster: setup
	$(PY) -m pytest -ra tests/test_field_cluster.py $(PYTEST_ARGS)

## two-rabbits: a compute fenced only when both of its rabbits detached it (root; also part of py-test)
two-rabbits: setup
	$(PY) -m pytest -ra -m two_rabbits tests/test_field_two_rabbits.py $(PYTEST_ARGS)

fmt:
	cargo fmt
	$(VENV)/bin/ruff format python tests
	$(VENV)/bin/ruff check --fix python tests

## install: the agent into /usr/sbin for Pacemaker (root), with its man page
install: setup
	VENV=$(VENV) bash scripts/install.sh

## bench: latency, start-up, burst, scale, discovery, memory and journal figures
bench: setup
	VENV=$(VENV) bash bench/run.sh
