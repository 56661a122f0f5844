# Two commands matter: `make dev` serves the API, `make test` runs everything.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# aws-sam-cli pins its own boto3, so it and cfn-lint live in an environment of their own.
SAM_TOOLS := .tools/sam
SAM_TOOLS_STAMP := $(SAM_TOOLS)/.installed
# checkov pins half of its dependency tree exactly: an environment of its own as well.
CHECKOV_TOOLS := .tools/checkov
CHECKOV_TOOLS_STAMP := $(CHECKOV_TOOLS)/.installed

.PHONY: dev test lint typecheck pytest tools clean help deploy-check

# `sam build` targets (BuildMethod: makefile); they only run under SAM.
include sam.mk

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(SAM_TOOLS_STAMP):
	$(PYTHON) -m venv $(SAM_TOOLS)
	$(SAM_TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_TOOLS)/bin/python -m pip install --quiet 'aws-sam-cli==1.170.0' 'cfn-lint==1.58.0' \
		'cfn-lint-serverless==0.3.6'
	touch $@

$(CHECKOV_TOOLS_STAMP):
	$(PYTHON) -m venv $(CHECKOV_TOOLS)
	$(CHECKOV_TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_TOOLS)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $@

tools: $(SAM_TOOLS_STAMP) $(CHECKOV_TOOLS_STAMP)  ## install aws-sam-cli, cfn-lint (.tools/sam) and checkov (.tools/checkov)

dev: $(STAMP)  ## serve the API on http://127.0.0.1:8000 (PORT overrides) with embedded defaults
	$(BIN)/lambdarun dev

test: lint typecheck pytest  ## lint, type-check and run the whole test suite

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict
	$(BIN)/mypy

pytest: $(STAMP) $(SAM_TOOLS_STAMP) $(CHECKOV_TOOLS_STAMP)  ## the test suite (PYTEST_ARGS adds options)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Hashed locks of what ships, all written by this one command from pyproject.toml: the Lambda
# zip (core + the aws extra, cp312 manylinux2014 aarch64: sam.mk) and the two Cloud Run images
# (linux x86_64 on python:3.12-slim-bookworm: cloudrun/Dockerfile), each installed with
# `pip install --require-hashes --only-binary=:all:`. One lock per target, not one for all: a
# requirements file pins one set of extras for one platform, and a lock of every extra would
# put boto3 into the images and uvicorn into the zip (cold start is the product). Versions
# pinned already are kept while pyproject.toml allows them; UPGRADE=1 takes the newest.
# The images carry the otel extra, imported only with TELEMETRY=otel; the Lambda zip does not
# (there the OpenTelemetry layer brings the SDK: docs/observability.md).
# tests/integration/test_locks.py fails when a lock no longer matches pyproject.toml.
UV ?= $(BIN)/uv
LOCK_DIR ?= requirements
LOCK = $(UV) pip compile --quiet pyproject.toml --generate-hashes --only-binary :all: \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
CLOUD_RUN_LOCK = $(LOCK) --python-version 3.12 --python-platform x86_64-manylinux_2_36
.PHONY: lock
lock:  ## hashed locks in requirements/ from pyproject.toml (UPGRADE=1: newest versions allowed)
	@test -x "$(UV)" || { echo "make lock: no $(UV): make $(STAMP) installs it (dev extra)" >&2; exit 2; }
	$(LOCK) --python-version $(SAM_PY_VERSION) --python-platform $(SAM_UV_PLATFORM) \
		$(addprefix --extra ,$(SAM_EXTRAS)) --output-file $(LOCK_DIR)/lambda.txt
	$(CLOUD_RUN_LOCK) --extra server --extra postgres --extra redis --extra pubsub \
		--extra pubsub-push --extra otel --output-file $(LOCK_DIR)/cloudrun-api.txt
	$(CLOUD_RUN_LOCK) --extra gcp --extra postgres --extra redis --extra pubsub --extra otel \
		--output-file $(LOCK_DIR)/cloudrun-worker.txt

CLOUD ?= aws
deploy-check:  ## before a deploy, STAGE=dev|prod [CLOUD=aws|gcp]: one line per missing value
	@test -n "$(STAGE)" || test "$(CLOUD)" = gcp || { echo "make deploy-check: give STAGE=dev or STAGE=prod" >&2; exit 2; }
	$(PYTHON) -m lambdarun_cli.deploy_check $(CLOUD) $(if $(filter aws,$(CLOUD)),--config-env $(STAGE))

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) .tools .aws-sam .lambdarun .mypy_cache .ruff_cache .pytest_cache
