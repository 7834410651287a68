# The two commands a newcomer needs: `make demo` (the worker end to end on a local stack) and `make test`.
# Everything else is set up on first use: uv (pinned, from PyPI), the virtualenv from uv.lock, Kafka's jars.
SHELL := /bin/bash
UV_VERSION := 0.13.9
BOOTSTRAP := $(HOME)/.cache/carsys-ingest/bootstrap-uv-$(UV_VERSION)
UV := $(BOOTSTRAP)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3

.PHONY: help venv test unit demo bench bench-peers lint format stack-up stack-down clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(UV):
	python3 -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --quiet
	touch $@

venv: .venv/.synced  ## the virtualenv, from uv.lock

test: venv  ## unit + integration tests against a real Kafka broker and PostgreSQL started for the run
	.venv/bin/pytest $(PYTEST_ARGS)

unit: venv  ## the unit tests only (no services; seconds)
	.venv/bin/pytest tests/unit $(PYTEST_ARGS)

demo: venv  ## the worker end to end: local stack, sample events, what landed, dead letters
	.venv/bin/python -m dev.demo

bench: venv  ## benchmarks: print figures, never assert
	.venv/bin/python -m bench.run_all

bench-peers: venv  ## the worker against Quix Streams and Kafka Connect + Debezium (fetched into ~/.cache/carsys-ingest)
	.venv/bin/python -m bench.peers.fetch
	.venv/bin/python -m bench.peers.run $(PEERS_ARGS)

lint: venv  ## ruff, ruff format --check, mypy --strict, the dependency rule
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

format: venv  ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

stack-up: venv  ## a long-lived local stack for development: eval "$(make -s stack-up)"
	@.venv/bin/python -m dev.stack up

stack-down:  ## stop the long-lived local stack
	@python3 -m dev.stack down

clean:  ## remove the virtualenv and caches
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
