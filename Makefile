# SecureDR: `make demo` runs the nightly backup on the embedded default; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
export SECUREDR_HOME ?= $(CURDIR)/.securedr

.PHONY: setup demo up down test test-fast stack-test test-ui ui-browser lint format bench scale \
	compromise respond-bench audit-verify clean

# The virtualenv, rebuilt whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "SecureDR needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m sandbox.stack demo

up: setup
	$(PY) -m sandbox.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m sandbox.stack down; fi

# Everything CI runs: the pytest suite (unit, e2e on the local profile), the browser test of the
# restore UI and the native CeleryExecutor stack test - one stack at a time on two cores.
test: setup ui-browser
	$(PY) -m pytest -m "not ui"
	$(PY) -m pytest -m ui tests/ui
	$(PY) -m sandbox.stack stack-test

test-fast: setup
	$(PY) -m pytest -m "not e2e and not ui"

# docker-compose.yaml's topology without Docker: PostgreSQL and Redis from Debian (installed on
# first use), CeleryExecutor, FAB; dr_nightly_backup, an approved dr_restore and a drill.
stack-test: setup
	$(PY) -m sandbox.stack stack-test

# The restore's UI path in Debian's chromium (Playwright drives it; no browser download).
test-ui: setup ui-browser
	$(PY) -m pytest -m ui tests/ui

ui-browser:
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf $(SECUREDR_HOME) .pytest_cache .ruff_cache .hypothesis

audit-verify: setup
	$(PY) -m sandbox.stack audit-verify

bench: setup
	@command -v age >/dev/null && command -v restic >/dev/null && test -x /usr/bin/time || \
	  { apt-get update -qq && apt-get install -y -qq age restic time; }
	$(PY) bench/bench_envelope.py --sizes 1G,4G

# dr_nightly_backup over a large estate on the embedded stack, measured (README "Performance at
# scale"). Not part of `make test`; tests/e2e/test_scale.py runs a small one. The figures go to
# $(SECUREDR_HOME)/scale.json unless SCALE_OUT names another file.
EBS ?= 1000
RDS ?= 100
COPY_SECONDS ?= 20
SNAPSHOT_SECONDS ?= 5
scale: setup
	$(PY) -m sandbox.scale --ebs $(EBS) --rds $(RDS) --copy-seconds $(COPY_SECONDS) \
	  --snapshot-seconds $(SNAPSHOT_SECONDS) $(if $(SCALE_OUT),--output $(SCALE_OUT))

# The workload account is taken over after a nightly run with a DR vault (include/
# dr_plan.vault.yaml); every attack is listed with its result, then a restore and a drill run
# from the vault (README "A DR vault in another account"). tests/e2e/test_compromise.py runs it.
compromise: setup
	$(PY) -m sandbox.compromise

# dr_incident_response on the embedded stack: EVENTS incidents of mixed kinds injected as CloudTrail
# events, the latency from each event to its containment call (README "Detect and respond").
# Starts the stack unless it is running (and stops it again afterwards). Not part of `make test`.
EVENTS ?= 20
respond-bench: setup
	$(PY) -m sandbox.respond_bench --events $(EVENTS)
