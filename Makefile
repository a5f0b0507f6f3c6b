# seedpool: every target installs into .venv first when it is missing, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= first_look.yaml
# Extra arguments for `make sweep` (e.g. ARGS="--dry-run" or ARGS="--max-concurrent 1").
ARGS ?=
MLFLOW_PORT ?= 5000
# Absolute, so trials that chdir into their own directories still share one store.
RUNS_DIR := $(abspath runs)
MLFLOW_URI ?= sqlite:///$(RUNS_DIR)/mlflow.db
# `make report`: the sweep to analyse, the store it was recorded in ($MLFLOW_TRACKING_URI wins, as for sweeps)
# and where the report goes (absolute, project-local).
EXPERIMENT ?=
REPORT_URI := $(or $(MLFLOW_TRACKING_URI),$(MLFLOW_URI))
REPORTS_DIR := $(abspath reports)

.PHONY: install sweep test test-slow test-faults lint format bench mlflow-ui report clean

install: $(STAMP)

# torch is pinned to the CPU wheel that lies on the dev machines' disk; a looser pin pulls several GB of CUDA.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	set -o pipefail; $(BIN)/pip install --quiet torch==2.13.0 -e '.[test]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $(STAMP)

sweep: $(STAMP)
	$(BIN)/python -m sweeps run $(CONFIG) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The whole fault list, every tier, with the `bench` cases: the 500-trial pool (~4 minutes on 2 cores; prints the
# driver's wall time and peak memory) and a 5-minute outage of the tracking server (~8 minutes).
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/test_faults.py tests/test_servers.py tests/test_store_outage.py tests/test_journal.py -m "bench or slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Serves the local store on 127.0.0.1 only; set MLFLOW_URI to browse another store.
mlflow-ui: $(STAMP)
	mkdir -p $(RUNS_DIR)
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port $(MLFLOW_PORT)

# `make report EXPERIMENT=<sweep name>`: runs the analysis notebooks headless (papermill) on that sweep's MLflow
# record and writes reports/<experiment>/ (index.html, one HTML page per notebook, figures/*.png, tables/*.csv).
report: $(STAMP)
	@test -n "$(EXPERIMENT)" || { echo "make report: name the sweep, e.g. make report EXPERIMENT=first_look" >&2; exit 2; }
	$(BIN)/python -m analysis.report $(EXPERIMENT) --tracking-uri $(REPORT_URI) --output-dir $(REPORTS_DIR)/$(EXPERIMENT)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
