# modelops: `make demo` runs the whole life locally, `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12 is looked up only when a recipe needs it (creating .venv or a tool's venv), so
# `make help` and `make clean` work without it. Looked up once, then remembered.
PYTHON312 = $(eval PYTHON312 := $(or $(shell infra/find-python.sh),$(error Python 3.12 is required (see the message above))))$(PYTHON312)
# sam build looks for python3.12 on PATH: .venv/bin has it.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
TEMPLATE := template.yaml

.PHONY: help
help:
	@echo "make demo      the whole life on the local twin (train, convert, serve, monitor, alert)"
	@echo "make test      lint, type-check, import contracts, all tests, template checks (what CI runs)"
	@echo "make lint      ruff;  make format: ruff format + fix"
	@echo "make imports   the import contracts between the package's rooms (docs/architecture.md)"
	@echo "make build     sam build (zip functions and layers)"
	@echo "make bench     benchmarks -> benchmarks/results.json"
	@echo "make local     the local twin in the foreground (modelops local up)"
	@echo "make images    build the training and convert images, push them to ECR (CONFIG_ENV=dev); images-plan: the commands only"
	@echo "make hadolint  lint the Dockerfiles"
	@echo "make locks     the training and convert images' hashed lock files (infra/locks.sh; locks-check)"
	@echo "make chromium  Debian's chromium + chromium-driver for the browser tests (apt-get; no-op when present)"

# ---- environments ---------------------------------------------------------
$(VENV)/.stamp: requirements/dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt
	@# PYTHONWARNINGS: only setuptools' "Editable installation." notice (a banner about folders named
	@# like the package), nothing else the build prints.
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp

# Command-line tools whose pins clash with ours (and each other) get their own venvs.
$(TOOLS)/%/.stamp: requirements/tool-%.txt
	@rm -rf $(TOOLS)/$*
	$(PYTHON312) -m venv $(TOOLS)/$*
	$(TOOLS)/$*/bin/python -m pip install -q --disable-pip-version-check -r requirements/tool-$*.txt
	@touch $@

# The browser tests (tests/browser) drive Debian's headless chromium through its chromedriver, never
# a downloaded browser. Installed with apt-get when either is missing (as root, or through sudo).
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	echo "installing Debian's chromium and chromium-driver (the browser tests drive them)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver

.PHONY: tools
tools: $(TOOLS)/aws-sam-cli/.stamp $(TOOLS)/cfn-lint/.stamp $(TOOLS)/checkov/.stamp $(TOOLS)/awscli/.stamp $(TOOLS)/hadolint/.stamp

# ---- checks ---------------------------------------------------------------
.PHONY: lint
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: typecheck
typecheck: venv
	$(VENV)/bin/mypy layers/shared/modelops functions

.PHONY: imports
imports: venv
	$(VENV)/bin/lint-imports

.PHONY: validate
validate: tools
	$(TOOLS)/aws-sam-cli/bin/sam validate --lint --template $(TEMPLATE) --region $(AWS_DEFAULT_REGION)
	$(TOOLS)/cfn-lint/bin/cfn-lint --config-file .cfnlintrc.yaml
	BC_SKIP_MAPPING=TRUE $(TOOLS)/checkov/bin/checkov -f $(TEMPLATE) --config-file .checkov.yaml --skip-download


.PHONY: pytest
pytest: venv tools chromium
	MODELOPS_AWS_CLI=$(CURDIR)/$(TOOLS)/awscli/bin/aws $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test
test: lint typecheck imports validate build pytest

# ---- build, run -----------------------------------------------------------
.PHONY: build
build: venv tools
	$(PY) infra/build.py $(TOOLS)/aws-sam-cli/bin/sam

.PHONY: local
local: venv
	$(VENV)/bin/modelops local up

.PHONY: demo
demo: venv
	$(PY) -m modelops_local.demo

.PHONY: bench
bench: venv $(TOOLS)/evidently/.stamp
	$(PY) benchmarks/run.py

.PHONY: locks locks-check
locks:        ## the images' hashed lock files (needs the package index)
	infra/locks.sh

locks-check:  ## fails if a committed lock is not what infra/locks.sh makes
	infra/locks.sh --check

include infra/images.mk

.PHONY: clean
clean:
	rm -rf .aws-sam .modelops .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .template.build.yaml
