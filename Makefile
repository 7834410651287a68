# The two commands a newcomer needs: `make demo` (the worker end to end on a local stack) and `make test`.
# Everything else is set up on first use: uv (pinned, from PyPI), the virtualenv from uv.lock, Kafka's jars.
SHELL := /bin/bash
UV_VERSION := 0.13.9
BOOTSTRAP := $(HOME)/.cache/carsys-ingest/bootstrap-uv-$(UV_VERSION)
UV := $(BOOTSTRAP)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3

.PHONY: venv test demo bench lint stack-up stack-down clean

$(UV):
	python3 -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --quiet
	touch $@

venv: .venv/.synced

test: venv  ## unit + integration tests against a real Kafka broker and PostgreSQL started for the run
	.venv/bin/pytest $(PYTEST_ARGS)

demo: venv  ## the worker end to end: local stack, sample events, what landed, dead letters
	.venv/bin/python -m dev.demo

bench: venv  ## benchmarks: print figures, never assert
	.venv/bin/python -m bench.run_all

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

stack-up: venv  ## a long-lived local stack for development: eval "$$(make -s stack-up)"
	@.venv/bin/python -m dev.stack up

stack-down:
	@python3 -m dev.stack down

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
