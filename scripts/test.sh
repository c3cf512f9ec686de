#!/usr/bin/env bash
# The tests. With no arguments: everything but the `slow` marker (under 10 minutes on 2 cores).
# Arguments go to pytest, e.g. `scripts/test.sh -m slow` for the long end-to-end runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [[ $# -eq 0 ]]; then
  set -- -m "not slow"
fi
exec .venv/bin/python -m pytest -q "$@"
