"""The versions a neuron runs (for its wandb config, /health and the auto-update script).

CODE_VERSION is the package's version (setup.py reads it from here); raise it with every release
that operators should update to: scripts/auto_update.sh restarts the neurons when it changes.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from protocol.version import PROTOCOL_VERSION, WEIGHTS_VERSION_KEY

CODE_VERSION = "0.2.0"
REPO = Path(__file__).resolve().parents[2]


def code_commit() -> str:
    """The git commit of the running code ("" outside a git checkout, e.g. in a docker image)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def versions() -> dict[str, str | int]:
    return {"code_version": CODE_VERSION, "code_commit": code_commit(), "protocol_version": PROTOCOL_VERSION,
            "weights_version_key": WEIGHTS_VERSION_KEY}
