# aichat-stack. `make` alone lists the targets; each `## ` comment is its help line.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv test test-e2e test-quick lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with the project (editable) and its test tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: venv ## run unit, emulator-conformance and stack tests (and e2e where Docker runs)
	$(PY) -m pytest -q

test-quick: venv ## unit tests only
	$(PY) -m pytest -q tests/unit

test-e2e: venv ## end-to-end tests against the real influxdb:3-core image (needs Docker)
	$(PY) -m pytest -q -m e2e tests/e2e

lint: venv ## ruff
	$(VENV)/bin/ruff check .

bench: venv ## benchmarks that print figures (never part of make test)
	$(PY) bench/ingest.py
