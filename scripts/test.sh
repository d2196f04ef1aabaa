#!/usr/bin/env bash
# Install test dependencies into .venv and run the whole suite: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
# The browser test drives Debian's chromium (never a downloaded browser build).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: chromium not installed" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# import layering (.importlinter): app > interpret > pipeline | training > checkpoint > model > ...
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
