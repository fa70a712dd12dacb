#!/usr/bin/env bash
# make demo: run the demo with the project's virtualenv (created by the Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
