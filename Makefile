# Quick start: `make run` (the app on ./data/spendgauge.db; the demo swarm while it holds no usage) and `make test`
# (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-live bench-forecast bench-planner bench-check bench-overshoot bench-concurrency \
	bench-cli bench-recount bench-dataset bench-queries bench-dataset-pg bench-queries-pg bench-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/spendgauge serve --demo auto

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two passes: every test but the `serial` ones on PYTEST_WORKERS pytest-xdist workers (a test file stays on one
# worker, so its module fixtures start once), then the `serial` ones alone, which time themselves against the CPU.
# Both passes always run; the target fails if either did.
PYTEST_WORKERS ?= 2

test: lint
	@status=0; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m 'not serial' || status=$$?; \
	$(BIN)/python -m pytest -p no:xdist -m serial || status=$$?; \
	exit $$status

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/ingest.py

bench-live: $(VENV)/.installed-dev  # needs Debian's chromium (apt-get install chromium)
	$(BIN)/python bench/live.py

bench-forecast: $(VENV)/.installed-dev
	$(BIN)/python bench/forecast.py

bench-planner: $(VENV)/.installed-dev
	$(BIN)/python bench/planner.py

bench-check: $(VENV)/.installed-dev
	$(BIN)/python bench/check.py

bench-cli: $(VENV)/.installed-dev
	$(BIN)/python bench/cli_start.py

bench-overshoot: $(VENV)/.installed-dev
	$(BIN)/python bench/overshoot.py

bench-concurrency: $(VENV)/.installed-dev
	$(BIN)/python bench/concurrency.py

bench-recount: $(VENV)/.installed-dev  # needs bench-dataset
	$(BIN)/python bench/recount.py

BENCH_DATA ?= /tmp/sg-bench

bench-dataset: $(VENV)/.installed-dev  # the 10k and 5M SQLite histories the read benches use (5M: tens of minutes)
	$(BIN)/python bench/dataset.py --url sqlite:///$(BENCH_DATA)/sqlite-10k.db --events 10000
	$(BIN)/python bench/dataset.py --url sqlite:///$(BENCH_DATA)/sqlite-5m.db --events 5000000

bench-queries: $(VENV)/.installed-dev  # needs bench-dataset
	$(BIN)/python bench/queries.py --url-small sqlite:///$(BENCH_DATA)/sqlite-10k.db \
		--url-large sqlite:///$(BENCH_DATA)/sqlite-5m.db

# The same on PostgreSQL: BENCH_PG names a server whose sg_bench_10k and sg_bench_5m databases exist and are empty
# (.ci/pg.sh start DIR PORT, then createdb); the 5M build took 29 min on 2 cores at load 4-6.
BENCH_PG ?= postgresql+psycopg://postgres@127.0.0.1:55432

bench-dataset-pg: $(VENV)/.installed-dev
	$(BIN)/python bench/dataset.py --url $(BENCH_PG)/sg_bench_10k --events 10000
	$(BIN)/python bench/dataset.py --url $(BENCH_PG)/sg_bench_5m --events 5000000

bench-queries-pg: $(VENV)/.installed-dev  # needs bench-dataset-pg
	$(BIN)/python bench/queries.py --url-small $(BENCH_PG)/sg_bench_10k --url-large $(BENCH_PG)/sg_bench_5m

bench-all: $(VENV)/.installed-dev  # every bench, one table of figures and targets (the read benches need bench-dataset)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
