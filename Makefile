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
	$(SAM_TOOLS)/bin/python -m pip install --quiet 'aws-sam-cli>=1.120' 'cfn-lint>=1.20' cfn-lint-serverless
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

CLOUD ?= aws
deploy-check:  ## before a deploy, STAGE=dev|prod [CLOUD=aws|gcp]: one line per missing value
	@test -n "$(STAGE)" || test "$(CLOUD)" = gcp || { echo "make deploy-check: give STAGE=dev or STAGE=prod" >&2; exit 2; }
	$(PYTHON) -m lambdarun_cli.deploy_check $(CLOUD) $(if $(filter aws,$(CLOUD)),--config-env $(STAGE))

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) .tools .aws-sam .lambdarun .mypy_cache .ruff_cache .pytest_cache
