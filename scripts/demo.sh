#!/usr/bin/env bash
# make demo: run the demo with the project's virtualenv (created by the Makefile). No `cd`: relative
# --state and --report paths are taken from the caller's current directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec "$root/.venv/bin/python" "$root/scripts/demo.py" "$@"
