# Entry points: `make run` starts the system on embedded defaults, `make test` runs the tests.
# Both create .venv and install the project into it first; nothing else needs installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test test-fast bench lint proto clean chromium java cron

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/workbench up

# Browser tests drive Debian's Chromium; Playwright never downloads a browser here.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Spark needs a JVM (Java 17).
java:
	@command -v java >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless; }

# A schedule test installs the crontab into Debian's cron (there is no systemd here).
cron:
	@command -v cron >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q cron; }

# Tests run on PYTEST_WORKERS processes (pytest-xdist; this machine has 2 cores), a whole module
# on one worker so the system a module starts once is still shared by its tests. PYTEST_WORKERS=0
# runs them in this process, one after another. Modules are handed out in collection order:
# xdist's default hands out the modules with most tests first, which left the end-to-end modules
# (one test of minutes each) until last, run one after another on one worker while the other
# waited (a CI run: 2,604 s of modules on one worker, 2,171 s on the other, 44 min in all).
PYTEST_WORKERS ?= 2
PYTEST = $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# mypy (configured in pyproject.toml: strict on contract/, wire/, client/; tests/bench checked too)
# before the tests, as ruff.
test: venv chromium java cron
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(PYTEST)

test-fast: venv
	$(PYTEST) -m "not slow and not mongo and not browser"

bench: venv
	@command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	$(BIN)/python tests/bench/bench_db_api.py
	$(BIN)/python tests/bench/bench_web.py
	$(BIN)/python tests/bench/bench_web_workers.py
	$(BIN)/python tests/bench/bench_clean.py --warm
	$(BIN)/python tests/bench/bench_process.py
	$(BIN)/python tests/bench/bench_scaled_out.py
	$(BIN)/python tests/bench/bench_engines.py
	$(BIN)/python tests/bench/bench_run.py
	$(BIN)/python tests/bench/bench_dashboards.py
	$(BIN)/python tests/bench/bench_live_dashboards.py
	$(BIN)/python tests/bench/bench_snapshots.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

proto: venv
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. pipeline_lib/wire/proto/dbapi.proto

clean:
	rm -rf $(VENV) .cache .pytest_cache
