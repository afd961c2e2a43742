# kafka-connect-probe — every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv from PATH, else the one pip installs into this Python (`python3 -m uv`).
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Only the package registries are reachable: never try to download a Python build.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help uv install install-dev run test test-unit test-process lint typecheck format

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

uv: ## make sure the uv package manager is there (from PyPI)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv is missing and could not be installed with pip" >&2; exit 1; }

install: uv ## install the sidecar into .venv (runtime dependencies, pinned by uv.lock)
	$(UV) sync --frozen --no-dev --inexact

install-dev: uv ## install the sidecar and the development tools into .venv
	$(UV) sync --frozen

run: install ## serve against $$CONNECT_PROBE_CONNECT_URL (default http://localhost:8083) on :18083
	$(BIN)/connect-probe

test-unit: install-dev ## in-process tests only (MockTransport + fake clock; no socket, no process): seconds
	$(BIN)/pytest -m inprocess -q

test-process: install-dev ## tests with real processes and sockets on 127.0.0.1 (no Java): minutes
	$(BIN)/pytest -m process -q

test: install-dev ## every test, including the ones against a real Kafka Connect worker
	$(BIN)/pytest -q

lint: install-dev ## ruff lint + format check + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app tests tools bench deploy/measure_sidecar.py

format: install-dev ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each area (real Connect harness, deploy checks, benchmark, soak) keeps its targets in mk/.
-include mk/*.mk
