# Two commands: `make test` and `make demo`. Everything else is a helper for them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)

.PHONY: venv test lint lock demo demo-once clean
SCENARIO ?= deploy

# Create the virtualenv if missing and install the locked set (re-run when the lock changes).
$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) 2>/dev/null
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

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
