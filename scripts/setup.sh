#!/usr/bin/env bash
# Set up a fresh machine: system packages (ffmpeg), a virtual environment in .venv, pinned deps.
# Usage: bash scripts/setup.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "warning: ffmpeg not found; install it (e.g. sudo apt-get install ffmpeg) for mp4/mp3 audio" >&2
  fi
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r "$REQ" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, transformers, peft" >/dev/null
