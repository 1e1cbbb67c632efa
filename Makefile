# InferGate developer commands. `make run` and `make test` set everything up themselves.

SHELL := /bin/bash
VENV := .venv
# Python 3.12 matches the Lambda runtime and is what `sam build` needs; 3.11 works for `make run`.
PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
BIN := $(VENV)/bin
LAMBDA_RUNTIME := .lambda-runtime
E2E_INSTRUCTOR := .e2e/instructor
E2E_AGENTS := .e2e/agents
E2E_CONSOLE := .e2e/console
CHECKOV := .checkov
DOCS := .docs
# sam build looks for python3.12 on PATH; the virtualenv provides it.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
PYTEST_ARGS ?=
# The processor `make build` builds the functions for (template.yaml's Architecture parameter): empty
# builds the template's default, arm64, which a deploy runs on; ARCH=x86_64 builds for x86_64, and
# `make deploy ARCH=x86_64` deploys that. The dependencies layer's compiled packages are built for it,
# so a build runs only on its own processor: what runs the build on this machine (make test,
# run-lambda, bench) builds for this machine's processor instead, whatever ARCH says.
ARCH ?=
HOST_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
ifneq ($(findstring Architecture=,$(OVERRIDES)),)
$(error make deploy: give the architecture as ARCH=..., which the build is made for too, not in OVERRIDES)
endif

.PHONY: help run run-lambda test test-cluster unit build validate deploy model-runtime bench bench-pool coldstart cost admin-key openapi settings-schema config-reference docs smoke sam-local-env localstack-deploy checkov clean

help:
	@echo "make run       serve the API on http://127.0.0.1:$${PORT:-3000} with local backends"
	@echo "make run-lambda   the same, from sam build's output under the Lambda runtime emulator"
	@echo "make test      validate and build the SAM template, then run the whole test suite"
	@echo "make test-cluster  the whole suite with its Redis a Redis Cluster of three masters"
	@echo "make unit      unit tests only (no services)"
	@echo "make bench     gateway overhead and throughput (PEER=litellm: beside LiteLLM's proxy; AGAINST=dir: another checkout)"
	@echo "make bench-pool   a pool of four model servers: throughput, spread, failover (PEER=litellm: beside LiteLLM's router)"
	@echo "make cost      what a million requests cost on AWS, today's settings beside ARGS' (bench/cost.py)"
	@echo "make smoke API_URL=...   a short end-to-end check of any running InferGate [API_KEY=...]"
	@echo "make sam-local-env   the env-vars file for sam local start-api (Docker users)"
	@echo "make localstack-deploy   deploy to a running LocalStack, then make smoke against it [LOCALSTACK_URL=...]"
	@echo "make admin-key NAME=ops [ROLE=viewer]   an admin key, straight in MongoDB (MONGODB_URI, or make run's)"
	@echo "make openapi   regenerate the OpenAPI document (layers/common/infergate/openapi.json)"
	@echo "make settings-schema   regenerate the settings' validator each function's init runs (layers/common/infergate/settings.schema.json)"
	@echo "make checkov   checkov's policy checks over template.yaml (.checkov.yaml says what is skipped, and why)"
	@echo "make docs      serve the documentation (docs/, mkdocs.yml) on http://127.0.0.1:$${DOCS_PORT:-8000}"
	@echo "make config-reference   regenerate the configuration reference (docs/operating/configuration-reference.md)"
	@echo "make build [ARCH=x86_64]   sam build, for arm64 (the template's Architecture) unless ARCH says"
	@echo "make deploy [ENV=dev|staging|prod] [ARCH=x86_64] [OVERRIDES='Key=value ...']   sam build, then a release"

$(BIN)/.installed: requirements-dev.txt layers/dependencies/requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (3.12 for sam build)"; exit 1; }
	@echo "Setting up $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# SERVERS=3 starts three local model servers and routes across them as a pool.
run: $(BIN)/.installed
	$(BIN)/python -m devkit.run $(if $(SERVERS),--servers $(SERVERS))

# Built functions run with this interpreter and nothing but what Lambda's runtime has.
$(LAMBDA_RUNTIME)/.installed: requirements-lambda-runtime.txt
	$(PYTHON) -m venv $(LAMBDA_RUNTIME)
	$(LAMBDA_RUNTIME)/bin/python -m pip install --quiet --upgrade pip
	$(LAMBDA_RUNTIME)/bin/python -m pip install --quiet -r requirements-lambda-runtime.txt
	@touch $@

# The built functions run on this machine: built for its processor (ARCH, above).
run-lambda bench test: override ARCH := $(HOST_ARCH)

run-lambda: build $(LAMBDA_RUNTIME)/.installed
	$(BIN)/python -m devkit.run --runtime emulator $(if $(SERVERS),--servers $(SERVERS))

# PEER=litellm also installs LiteLLM's proxy (in .bench/litellm) and measures it in the same run;
# AGAINST=<another checkout> measures that one too (the commit before a change, say), on the same backends.
bench: build $(LAMBDA_RUNTIME)/.installed
	$(BIN)/python bench/hotpath.py $(if $(PEER),--peer $(PEER)) $(if $(AGAINST),--against $(AGAINST))

# Four development model servers, two slots each, behind make run: throughput against their own
# capacity, the spread, the loaded model's share, one server killed mid-run. PEER=litellm adds
# LiteLLM's router (least-busy) over the same servers.
bench-pool: $(BIN)/.installed
	$(BIN)/python bench/pool.py $(if $(PEER),--peer $(PEER))

# A short end-to-end check of any running InferGate: make smoke API_URL=https://... [API_KEY=igk_...]
smoke: $(BIN)/.installed
	@test -n "$(API_URL)" || { echo "usage: make smoke API_URL=<the gateway's base URL> [API_KEY=<a user's key>]"; exit 2; }
	$(BIN)/python -m infergate_cli.smoke --url "$(API_URL)" $(if $(API_KEY),--key "$(API_KEY)")

# For Docker users: the env-vars file `sam local start-api` reads (the host's services, as the
# containers reach them), and the command that uses it. See docs/contributing.md.
sam-local-env: $(BIN)/.installed
	$(BIN)/python -m devkit.sam_local

# Deploys the build to a running LocalStack (samconfig.toml's localstack environment) and runs
# make smoke against the URL it serves the API at. See localstack/README.md.
localstack-deploy: build
	$(BIN)/python -m devkit.localstack

# The first admin key; the rest of administration goes through the admin API (infergate ...).
admin-key: $(BIN)/.installed
	$(BIN)/infergate admin-key create --name "$(or $(NAME),operator)" --role "$(or $(ROLE),admin)"

# The OpenAPI document GET /openapi.json serves, from the table in devkit/openapi.py and the models.
openapi: $(BIN)/.installed
	$(BIN)/python -m devkit.openapi

# Settings' validator as pydantic compiles it, which each function's init runs without importing pydantic.
settings-schema: $(BIN)/.installed
	$(BIN)/python -m devkit.settings_schema

# What one million requests cost on AWS (bench/prices.json: published prices, with their sources),
# today's settings beside an alternative: make cost ARGS='--chat-memory 256 --architecture x86_64 --mix 90:10'
cost: $(BIN)/.installed
	$(BIN)/python bench/cost.py $(ARGS)

coldstart: $(BIN)/.installed $(LAMBDA_RUNTIME)/.installed
	$(BIN)/python bench/coldstart.py $(if $(AGAINST),--against $(AGAINST))

model-runtime: $(BIN)/.installed
	$(BIN)/python -m devkit.model_setup

validate: $(BIN)/.installed
	$(BIN)/sam validate --lint

build: $(BIN)/.installed
	@case "$(ARCH)" in ""|arm64|x86_64) ;; *) echo "ARCH is arm64 or x86_64 (empty: the template's default), not $(ARCH)"; exit 2;; esac
	$(BIN)/sam build $(if $(ARCH),--parameter-overrides Architecture=$(ARCH))

unit: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# instructor, for its e2e test, needs a jiter the suite's openai SDK cannot share a virtualenv with.
$(E2E_INSTRUCTOR)/.installed: requirements-e2e-instructor.txt
	$(PYTHON) -m venv $(E2E_INSTRUCTOR)
	$(E2E_INSTRUCTOR)/bin/python -m pip install --quiet --upgrade pip
	$(E2E_INSTRUCTOR)/bin/python -m pip install --quiet -r requirements-e2e-instructor.txt
	@touch $@

# Claude Code and Codex CLI, the coding agents the e2e suite drives (tests/support/agents.py), pinned
# by tests/e2e/agents/package-lock.json and installed from the npm registry with their platform binaries.
$(E2E_AGENTS)/.installed: tests/e2e/agents/package.json tests/e2e/agents/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js) is required for the coding-agent e2e tests"; exit 1; }
	mkdir -p $(E2E_AGENTS)
	cp tests/e2e/agents/package.json tests/e2e/agents/package-lock.json $(E2E_AGENTS)/
	npm ci --prefix $(E2E_AGENTS) --no-audit --no-fund --no-update-notifier
	@touch $@

# axe-core, which the console's browser tests run in each page; the browser is Debian's chromium
# (apt-get install chromium: .ci/run installs it), so nothing comes from a browser download site.
$(E2E_CONSOLE)/.installed: tests/e2e/console/package.json tests/e2e/console/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js) is required for the console's browser tests"; exit 1; }
	@command -v chromium >/dev/null || { echo "chromium is required for the console's browser tests: apt-get install chromium"; exit 1; }
	mkdir -p $(E2E_CONSOLE)
	cp tests/e2e/console/package.json tests/e2e/console/package-lock.json $(E2E_CONSOLE)/
	npm ci --prefix $(E2E_CONSOLE) --no-audit --no-fund --no-update-notifier
	@touch $@

# checkov pins boto3 1.35 and packaging<24, which the SAM CLI cannot share a virtualenv with.
$(CHECKOV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV)/.installed
	LOG_LEVEL=WARNING $(CHECKOV)/bin/checkov --config-file .checkov.yaml -f template.yaml --compact

# MkDocs and its Material theme, pinned apart from the suite's packages (tests/build/test_docs.py
# builds the site with it, --strict).
$(DOCS)/.installed: requirements-docs.txt
	$(PYTHON) -m venv $(DOCS)
	$(DOCS)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS)/bin/python -m pip install --quiet -r requirements-docs.txt
	@touch $@

# The documentation as a site, rebuilt as its pages change.
docs: $(DOCS)/.installed
	NO_MKDOCS_2_WARNING=1 $(DOCS)/bin/mkdocs serve -a 127.0.0.1:$${DOCS_PORT:-8000}

# docs/operating/configuration-reference.md, from the settings and template.yaml (devkit/config_reference.py).
config-reference: $(BIN)/.installed
	$(BIN)/python -m devkit.config_reference

# The suites that hold Redis's state (limits, slots, breakers, counters, idempotency, metrics),
# run a second time with the suite's Redis a cluster of three masters: every gateway and
# service they start then runs on it. `make test-cluster` runs every suite that way.
CLUSTER_SUITES := tests/handlers tests/integration/test_accounts_store.py tests/integration/test_crash_recovery.py \
	tests/integration/test_concurrent_accounting.py tests/integration/test_store_outages.py \
	$(addprefix tests/e2e/test_,access_log.py accounts_over_http.py authorizer_instances.py fairness.py \
	idempotency_and_readiness.py make_run.py outages.py pool.py prometheus_metrics.py quota_answers.py smoke.py \
	store_connections.py streaming_over_http.py)

test: $(BIN)/.installed $(LAMBDA_RUNTIME)/.installed $(E2E_INSTRUCTOR)/.installed $(E2E_AGENTS)/.installed $(E2E_CONSOLE)/.installed $(CHECKOV)/.installed $(DOCS)/.installed model-runtime build
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	TEST_REDIS_CLUSTER=true $(BIN)/python -m pytest -p no:cacheprovider $(CLUSTER_SUITES) $(PYTEST_ARGS)

test-cluster: $(BIN)/.installed $(LAMBDA_RUNTIME)/.installed $(E2E_INSTRUCTOR)/.installed $(E2E_AGENTS)/.installed $(E2E_CONSOLE)/.installed $(CHECKOV)/.installed $(DOCS)/.installed model-runtime build
	TEST_REDIS_CLUSTER=true $(BIN)/python -m pytest $(PYTEST_ARGS)

# A release (devkit/release.py): the build deployed with samconfig.toml's ENV environment and
# OVERRIDES on top, every function's version named after the release's fingerprint.
deploy: build
	$(BIN)/python -m devkit.release --config-env $(or $(ENV),default) $(OVERRIDES) $(if $(ARCH),Architecture=$(ARCH))

clean:
	rm -rf .aws-sam .pytest_cache $(LAMBDA_RUNTIME) .bench .e2e $(CHECKOV) $(DOCS)
