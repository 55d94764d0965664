# The two commands of the README. Each creates and fills .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## make demo: start the sandbox, run pipelines/demo.yaml against it, stop it, print where the data is
demo: $(STAMP)
	$(BIN)/shipetl demo pipelines/demo.yaml

## make test: the whole test suite (unit, plugin contracts, end to end over loopback), on two workers
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

## make bench: pipeline throughput against DuckDB's own JSON reader on the same data
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_pipeline.py --trackings 100000 --peers

clean:
	rm -rf data/warehouse.duckdb data/warehouse.duckdb.wal data/warehouse.duckdb.run.lock data/warehouse.duckdb.run-note.json data/warehouse.duckdb.pending-runs.ndjson data/lake data/raw data/tokens data/.staging
