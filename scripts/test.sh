#!/usr/bin/env bash
# Install test dependencies into .venv and run the whole suite: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
