# The two commands a newcomer needs: `make demo` (the worker end to end on a local stack) and `make test`.
# Everything else is set up on first use: uv (pinned, from PyPI), the virtualenv from uv.lock, Kafka's jars.
SHELL := /bin/bash
UV_VERSION := 0.13.9
BOOTSTRAP := $(HOME)/.cache/carsys-ingest/bootstrap-uv-$(UV_VERSION)
UV := $(BOOTSTRAP)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3

# The official AsyncAPI parser (npm, pinned by dev/asyncapi-tools/package-lock.json), installed once per lock file.
ASYNCAPI_TOOLS := dev/asyncapi-tools
ASYNCAPI_LOCK_SHA := $(shell cat $(ASYNCAPI_TOOLS)/package.json $(ASYNCAPI_TOOLS)/package-lock.json | sha256sum | cut -c1-12)
ASYNCAPI_CACHE := $(HOME)/.cache/carsys-ingest/asyncapi-parser-$(ASYNCAPI_LOCK_SHA)

.PHONY: help venv test unit demo bench bench-peers lint audit format asyncapi stack-up stack-down clean tools chart-check

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(UV):
	python3 -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --quiet
	touch $@

venv: .venv/.synced  ## the virtualenv, from uv.lock

# The chart's tests need helm and promtool: built once (the first run takes minutes), so nothing is ever skipped.
test: venv tools  ## unit + integration tests against a real Kafka broker and PostgreSQL started for the run
	CHART_TOOLS_REQUIRED=1 HELM=$(HELM) PROMTOOL=$(PROMTOOL) .venv/bin/pytest $(PYTEST_ARGS)

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

$(ASYNCAPI_CACHE)/.installed:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make asyncapi needs Node.js >= 18 with npm:" \
	  "apt-get install nodejs npm, or https://nodejs.org/en/download" >&2; exit 1; }
	rm -rf $(ASYNCAPI_CACHE) && mkdir -p $(ASYNCAPI_CACHE)
	cp $(ASYNCAPI_TOOLS)/package.json $(ASYNCAPI_TOOLS)/package-lock.json $(ASYNCAPI_CACHE)/
	npm ci --prefix $(ASYNCAPI_CACHE) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

asyncapi: $(ASYNCAPI_CACHE)/.installed  ## validate schemas/asyncapi.yaml with the official AsyncAPI parser (Node.js)
	node $(ASYNCAPI_TOOLS)/validate.cjs $(ASYNCAPI_CACHE) schemas/asyncapi.yaml
	@# The copy the unit tests validate with (tests/unit/test_asyncapi.py) is the pinned package's own.
	cmp $(ASYNCAPI_TOOLS)/asyncapi-3.0.0.schema.json '$(ASYNCAPI_CACHE)/node_modules/@asyncapi/specs/schemas/3.0.0-without-$$id.json'

audit: venv  ## pip-audit against uv.lock (fails on a known vulnerability; says loudly when it could not check)
	UV=$(UV) .venv/bin/python -m dev.audit

format: venv  ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

stack-up: venv  ## a long-lived local stack for development: eval "$(make -s stack-up)"
	@.venv/bin/python -m dev.stack up

stack-down:  ## stop the long-lived local stack
	@python3 -m dev.stack down

# Helm and promtool, built once from the Go module proxy and cached beside uv, so CI pays for them once.
HELM_VERSION := v3.22.0
PROMTOOL_VERSION := v0.316.0
TOOLS := $(HOME)/.cache/carsys-ingest/go-tools
HELM := $(TOOLS)/helm-$(HELM_VERSION)/helm
PROMTOOL := $(TOOLS)/promtool-$(PROMTOOL_VERSION)/promtool
GO_ENV = GOPATH=$(TOOLS)/gopath GOCACHE=$(TOOLS)/gocache GOMODCACHE=$(TOOLS)/gomodcache GOFLAGS=-modcacherw GOTOOLCHAIN=local

# Go on PATH, else where the official tarball installs it.
GO := $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))

define need-go
	@test -n "$(GO)" || { echo "go not found: helm and promtool are built with Go >= 1.25; install it" \
		"(https://go.dev/doc/install, or apt-get install golang-go) and put it on PATH, then run make tools again" >&2; exit 2; }
endef

$(HELM):
	$(need-go)
	$(GO_ENV) GOBIN=$(dir $@) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(PROMTOOL):
	$(need-go)
	$(GO_ENV) GOBIN=$(dir $@) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

tools: $(HELM) $(PROMTOOL)  ## helm and promtool, built with go install once, cached under ~/.cache/carsys-ingest

chart-check: venv tools  ## the Helm chart: lint, render, Kubernetes schemas, promtool check/test of the alerts, dashboard
	CHART_TOOLS_REQUIRED=1 HELM=$(HELM) PROMTOOL=$(PROMTOOL) \
		.venv/bin/pytest tests/unit/test_chart.py tests/unit/test_dashboard.py tests/unit/test_compose.py $(PYTEST_ARGS)

clean:  ## remove the virtualenv and caches
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
