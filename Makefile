# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Prefect keeps its local database under .local unless the user points it elsewhere
# (a profile, Prefect Cloud, a self-hosted server).
export PREFECT_HOME ?= $(CURDIR)/.local/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: run test lint lock e2e fuzz bench sample deploy-local bridge-test backup lake-setup roles clean

# constraints.txt pins the set the suite last passed on, so a release upstream (moto 5.2 changed
# what its responses hold) cannot turn CI red overnight; `make lock` moves it forward on purpose.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[dev]'
	touch $(STAMP)

## re-resolve the newest versions pyproject.toml allows and pin them (then run make test)
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet --upgrade pip
	$(VENV)-lock/bin/pip install --quiet -e '.[dev]'
	$(VENV)-lock/bin/pip freeze --exclude-editable > constraints.txt
	rm -rf $(VENV)-lock

## run the reddit_pipeline flow locally on the bundled sample (no server, no cloud, no credentials)
run: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/python flows/main.py

## lint, then the whole test suite (end-to-end tests included), then the Airflow bridge's
## suite in its own virtualenv (Airflow and Prefect cannot share one)
test: $(STAMP) lint
	$(BIN)/python -m pytest
	airflow_bridge/ci.sh

bridge-test: $(STAMP)
	airflow_bridge/ci.sh

## create blocks, work pool, Reddit API limit, alerts and deployments on PREFECT_API_URL (idempotent);
## the production schedules stay off unless asked: make deploy-local BOOTSTRAP_ARGS=--activate-schedules
deploy-local: $(STAMP)
	$(BIN)/python -m flows.bootstrap $(BOOTSTRAP_ARGS)

## ruff, then the layout rules: no import cycle, no private name across modules, one
## subpackage of tasks/ per stage, other stages reached through their faces
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_layout.py

## only the end-to-end tests
e2e: $(STAMP)
	$(BIN)/python -m pytest -m e2e

## back up the state store to the lake now (python -m flows.backup restore --help to restore)
backup: $(STAMP)
	$(BIN)/python -m flows.backup

## S3 versioning + lifecycle rules on the lake bucket: make lake-setup BUCKET=my-lake
lake-setup: $(STAMP)
	$(BIN)/python -m tasks.lake.setup --bucket $(BUCKET)

## database roles: make roles ADMIN_DSN=postgresql://admin@host/db
roles: $(STAMP)
	$(BIN)/python -m tasks.ops.roles --dsn "$(ADMIN_DSN)"

bench: $(STAMP)
	$(BIN)/python bench/process_bench.py
	$(BIN)/python bench/extract_bench.py

## regenerate the bundled sample (fixed seed: the output is byte-identical)
sample: $(STAMP)
	$(BIN)/python scripts/make_sample.py

clean:
	rm -rf $(VENV) .venv-airflow .local

## the generated tests (hypothesis) with the `fuzz` profile: many more examples and longer
## run sequences than `make test` (whose `ci` profile is fixed and bounded)
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest \
		tests/test_single_line.py tests/test_run_sequences.py
