"""scripts/auto_update.sh on a real git checkout of a local origin: it pulls, and reinstalls and
restarts only when the code version changed; a checkout with local changes is left alone."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def commit_version(origin: Path, version: str, note: str = "") -> None:
    versions = origin / "template" / "utils" / "versions.py"
    versions.write_text(f'CODE_VERSION = "{version}"\n')
    (origin / "NOTES").write_text(note)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", f"version {version} {note}")


def update(checkout: Path, log: Path) -> str:
    env = {**os.environ, **GIT_ENV, "DEAI_INSTALL": f"echo install >> {log}", "DEAI_RESTART": f"echo restart >> {log}"}
    done = subprocess.run(["bash", "scripts/auto_update.sh"], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_auto_update_restarts_only_when_the_version_changes(tmp_path):
    origin, checkout, log = tmp_path / "origin", tmp_path / "checkout", tmp_path / "actions.log"
    (origin / "scripts").mkdir(parents=True)
    (origin / "template" / "utils").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "auto_update.sh", origin / "scripts" / "auto_update.sh")
    git(origin, "init", "-q", "-b", "main")
    commit_version(origin, "1.0.0")
    git(tmp_path, "clone", "-q", str(origin), str(checkout))

    assert "up to date (version 1.0.0)" in update(checkout, log)
    commit_version(origin, "1.0.0", "docs only")
    assert "version still 1.0.0: no restart" in update(checkout, log)
    assert not log.exists() and (checkout / "NOTES").read_text() == "docs only"

    commit_version(origin, "1.1.0")
    assert "version 1.0.0 -> 1.1.0: reinstalling and restarting" in update(checkout, log)
    assert log.read_text().split() == ["install", "restart"]
    assert git(checkout, "rev-parse", "HEAD") == git(origin, "rev-parse", "HEAD")

    (checkout / "NOTES").write_text("an operator's edit")
    commit_version(origin, "1.2.0")
    assert "local changes or a diverged branch: not updating" in update(checkout, log)
    assert log.read_text().split() == ["install", "restart"]
    assert 'CODE_VERSION = "1.1.0"' in (checkout / "template" / "utils" / "versions.py").read_text()
