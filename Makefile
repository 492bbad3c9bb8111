# Every target bootstraps the uv workspace it needs; `make help` lists them.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .local/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	@mkdir -p .local
	python3 -m venv .local/uv-venv && .local/uv-venv/bin/pip install -q uv
	@mkdir -p .local/bin && ln -sf ../uv-venv/bin/uv .local/bin/uv

.PHONY: sync
sync: $(UV) ## Install the workspace (services, client, dev tools) into .venv
	$(UV) sync --frozen

.PHONY: demo
demo: sync ## Run nats-server, producers and the edge locally, stream once with the client, stop
	$(RUN) streamer-stack demo $(DEMO_ARGS)

.PHONY: up
up: sync ## Leave the local stack running on 127.0.0.1:50051 (logs in .local/)
	$(RUN) streamer-stack up

.PHONY: down
down: ## Stop the stack that `make up` started
	$(RUN) streamer-stack down

.PHONY: test
test: sync ## Run the whole test suite (real nats-server, TLS and processes)
	$(RUN) pytest $(PYTEST_ARGS)

.PHONY: lint
lint: sync ## ruff check, ruff format --check and mypy --strict
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy packages/*/src services/*/src

BENCH ?= quick

.PHONY: bench
bench: sync ## Benchmark against bare grpcio and nats-py (BENCH=full: whole matrix); docs/benchmarks.md
	$(RUN) python -m bench --mode $(BENCH) --docs

.PHONY: bench-quick
bench-quick: sync ## The quick benchmark subset (a couple of minutes), as `make bench` does by default
	$(RUN) python -m bench --mode quick --docs

.PHONY: proto
proto: sync ## Regenerate the committed stubs from proto/stream.proto
	UV=$(UV) bash scripts/gen-proto.sh

.PHONY: proto-check
proto-check: proto ## Fail if the committed stubs differ from freshly generated ones
	git diff --exit-code -- packages/streamer-common/src/streamer_common/proto

include deploy/helm.mk
