# Two commands: `make test` and `make demo`. Everything else is a helper for them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: venv test check lint lock demo demo-once clean
SCENARIO ?= deploy

# Create the virtualenv if missing, install the locked set and the `incident-ops` command (an editable
# install of plugins/incident_ops: Airflow keeps importing the same files from plugins/). Re-run when
# the lock or pyproject.toml changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) 2>/dev/null
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# The whole suite (what .ci/run runs); prints the 15 slowest tests.
test: venv
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# The fast tier (under a minute, two pytest-xdist workers): ruff, then every test that starts no Airflow, no subprocess and no
# server (markers in pyproject.toml; tests/conftest.py makes such a test fail here if it is unmarked).
check: venv lint
	PYTHONDONTWRITEBYTECODE= INCIDENT_OPS_TEST_TIER=check $(PY) -m pytest -q -n 2 -m "not slow and not process and not server" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check dags plugins tests include bench scripts

# Re-resolve requirements.lock from the top-level pins (needs the package index).
lock: venv
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements.txt requirements-test.txt -o requirements.lock

demo: venv
	@scripts/demo.sh

# Unattended: one incident of SCENARIO (deploy|resource|database|external|security); exit 0 only if the
# run succeeded and the service is healthy. REPORT=path.json writes the report.
demo-once: venv
	@scripts/demo.sh --once --scenario $(SCENARIO) --state state/demo-once $(if $(REPORT),--report $(REPORT))

clean:
	rm -rf state .pytest_cache .ruff_cache

# Benchmarks (issue 8): each figure as `name = value unit`. BENCH=<parse economy fanout storm live> picks some;
# BENCH_INCIDENTS (20), BENCH_SCENARIOS (all five) size the live part. See bench/README.md.
.PHONY: bench
bench: venv
	$(PY) -m bench.run $(BENCH)
