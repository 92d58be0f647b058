#!/usr/bin/env bash
# Set up .venv from scratch if needed and run the whole test suite (about 14 minutes on a
# 2-core CPU). Extra arguments go to pytest, e.g. bash scripts/test.sh -m "not slow".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
