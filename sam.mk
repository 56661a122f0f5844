# Build targets for `sam build` (template.yaml: Metadata BuildMethod: makefile).
# The root Makefile includes this file; SAM runs `make build-<LogicalId>` with
# ARTIFACTS_DIR set to .aws-sam/build/<LogicalId>. Nothing here writes to the
# source tree, so `build_in_source` and parallel builds are safe.
#
# A function ships: api/, adapters/, handlers/ and the runtime dependencies
# of pyproject.toml (core + the "aws" extra) as requirements/lambda.txt locks
# them, installed for the Lambda platform, with bytecode compiled for that
# exact Python. Never: tests/, bench/, cloudrun/, docs/, lambdarun_cli/.

# Keep in step with Globals.Runtime and Architectures in template.yaml.
SAM_PYTHON ?= python3.12
SAM_PY_VERSION := 3.12
SAM_PLATFORM := manylinux2014_aarch64
# The same platform as uv spells it, for `make lock`.
SAM_UV_PLATFORM := aarch64-manylinux2014
SAM_EXTRAS := aws
SAM_PACKAGES := api adapters handlers
# The hashed lock `make lock` writes for SAM_EXTRAS on SAM_PLATFORM: exact
# versions, every file checked against its sha256, so a build today and one
# next month ship the same bytes.
SAM_LOCK := requirements/lambda.txt

# Not imported on Lambda: GCP entry points, local bytecode of another Python.
SAM_EXCLUDES := --exclude=__pycache__ --exclude='*.pyc' --exclude='handlers/gcp_*'

# Bytecode is version-specific: refuse to build with another Python.
SAM_CHECK_VERSION := import sys; \
	v = "%d.%d" % sys.version_info[:2]; \
	sys.exit(v != "$(SAM_PY_VERSION)" and f"SAM_PYTHON is Python {v}; the runtime needs $(SAM_PY_VERSION)")

# unchecked-hash: Python loads these .pyc files without looking at the source's
# mtime or hash. Lambda's /var/task is read-only, so a .pyc judged stale (zip
# timestamps do not survive exactly) would be recompiled in memory on every cold
# start; sources stay in the package for tracebacks.
define SAM_BUILD_PYTHON
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: run this target through `sam build`))
	@$(SAM_PYTHON) -c '$(SAM_CHECK_VERSION)'
	rm -rf "$(ARTIFACTS_DIR)"/*
	mkdir -p "$(ARTIFACTS_DIR)"
	$(SAM_PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-compile \
		--platform $(SAM_PLATFORM) --implementation cp --python-version $(SAM_PY_VERSION) \
		--only-binary=:all: --require-hashes --target "$(ARTIFACTS_DIR)" --requirement $(SAM_LOCK)
	rm -rf "$(ARTIFACTS_DIR)/bin"
	tar -cf - $(SAM_EXCLUDES) $(SAM_PACKAGES) | tar -xf - -C "$(ARTIFACTS_DIR)"
	$(SAM_PYTHON) -m compileall -f -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"
endef

# Keep the root Makefile's default goal whichever line includes this file.
SAM_DEFAULT_GOAL := $(.DEFAULT_GOAL)

.PHONY: build-ApiFunction build-WorkerFunction
build-ApiFunction:
	$(SAM_BUILD_PYTHON)

build-WorkerFunction:
	$(SAM_BUILD_PYTHON)

.DEFAULT_GOAL := $(SAM_DEFAULT_GOAL)
