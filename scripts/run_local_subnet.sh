#!/usr/bin/env bash
# The main job: a local subnet on the embedded simulated chain, with real training.
# Flags go to scripts/run_local_subnet.py (--out DIR, --rounds N, --wandb.off, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/run_local_subnet.py "$@"
