# aichat-stack. `make` alone lists the targets; each `## ` comment is its help line.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# .env holds the settings (copied from .env.example); .env.override, if present, holds local changes.
COMPOSE_ENV := --env-file .env $(if $(wildcard .env.override),--env-file .env.override)
COMPOSE := docker compose $(COMPOSE_ENV)
NEED_DOCKER = @command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	echo "make $@ needs a running Docker engine (docker info failed). Without Docker use: make run"; exit 1; }

.PHONY: help venv secrets env up down logs provision run demo test test-e2e test-quick test-py313 test-py313-available secrets-access lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with the project (editable) and its test tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

secrets: venv ## create secrets/ token files offline (admin token + empty placeholders); never overwrites
	$(PY) -m scripts.make_secrets --dir secrets

.env:
	cp .env.example .env
	@echo "created .env from .env.example (edit it; tokens go in secrets/, never in .env)"

env: .env ## copy .env.example to .env if .env is absent

SECRET_FILES := secrets/influxdb3_admin_token.json secrets/github_token secrets/kapa_token secrets/notify_url
secrets-access: secrets ## let the containers read secrets/ (uid 1500: influxdb3, provision; 472: grafana) via ACLs
	@if [ "$$(uname -s)" != Linux ]; then \
		echo "secrets/: Docker Desktop shares files with the containers as they are; no ACL needed"; \
	elif command -v setfacl >/dev/null 2>&1; then \
		setfacl -m u:1500:r,u:472:r $(SECRET_FILES) && \
		echo "secrets/: read access for uid 1500 and 472 only (POSIX ACL; the files stay yours)"; \
	else \
		echo "make $@ needs setfacl (Debian/Ubuntu: apt-get install acl) to let the containers read secrets/;"; \
		echo "Compose bind-mounts file secrets with their host owner and mode (see secrets/README.md)"; exit 1; \
	fi

up: .env secrets ## start influxdb3 + grafana in Docker Compose (waits for healthy), then provision
	$(NEED_DOCKER)
	@$(MAKE) --no-print-directory secrets-access
	$(COMPOSE) up -d --wait
	$(COMPOSE) --profile provision run --rm --build provision

down: ## stop the compose stack (volumes are kept; `docker compose down -v` deletes the data)
	$(NEED_DOCKER)
	$(COMPOSE) --profile provision down

logs: ## follow the compose stack's logs
	$(NEED_DOCKER)
	$(COMPOSE) logs -f --tail=100

provision: .env ## (re)apply provisioning/triggers.toml to the compose stack's server
	$(NEED_DOCKER)
	$(COMPOSE) --profile provision run --rm --build provision

run: venv secrets ## the stack on the embedded engine at 127.0.0.1:8181 (INFLUXDB3_PORT), foreground until Ctrl-C
	$(PY) -m scripts.run_stack

demo: venv secrets ## make run plus fake GitHub and Kapa with sample data (offline, no tokens)
	$(PY) -m scripts.run_stack --demo

test: venv ## run unit, emulator-conformance and stack tests (and e2e where Docker runs)
	$(PY) -m pytest -q

test-quick: venv ## unit tests only
	$(PY) -m pytest -q tests/unit

# the pyenv-installed 3.13 if there is one (its shim only answers when selected), else python3.13 on PATH
PY313 ?= $(or $(lastword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13)),python3.13)
VENV313 := .venv-py313
test-py313-available:
	@$(PY313) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null

test-py313: ## plugin unit tests on CPython 3.13, the real server's embedded Python (needs python3.13)
	@$(PY313) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null || { \
		echo "make $@ needs a CPython 3.13 interpreter as $(PY313) (set PY313=/path/to/python3.13)"; exit 1; }
	[ -x $(VENV313)/bin/python ] || $(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet -e '.[test]'
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/emulator/test_harness.py tests/emulator/test_processing_runtime.py

test-e2e: venv ## end-to-end tests against the real influxdb:3-core image (needs Docker)
	$(PY) -m pytest -q -m e2e tests/e2e

lint: venv ## ruff
	$(VENV)/bin/ruff check .

bench: venv ## benchmarks that print figures (never part of make test)
	@set -e; found=0; for f in bench/*.py; do [ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f"; done; \
	[ $$found = 1 ] || echo "no benchmarks in bench/"
