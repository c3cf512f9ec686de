"""wandb for a neuron, as an operator's dashboard.

Online whenever wandb is logged in (WANDB_API_KEY, an identity token file, or a `wandb login`
netrc entry), offline otherwise or with --wandb.offline, nothing with --wandb.off. One run per
neuron folder: its id is kept in `<folder>/wandb/run_id` and a restarted neuron resumes it
(`resume="allow"`), so a dashboard shows one continuous history per neuron.
"""
from __future__ import annotations

import netrc
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from loguru import logger

DEFAULT_WANDB_HOST = "https://api.wandb.ai"
RUN_ID_FILE = "run_id"
_RUN_ID = re.compile(r"^[a-z0-9]{8,64}$")


class WandbRun:
    def __init__(self, run=None):
        self._run = run

    @property
    def enabled(self) -> bool:
        return self._run is not None

    @property
    def id(self) -> str | None:
        return self._run.id if self._run is not None else None

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            self._run.log(metrics, step=step)
        except Exception as exc:  # monitoring must never take a neuron down
            logger.warning("wandb log failed: {}", exc)

    def finish(self) -> None:
        if self._run is not None:
            try:
                self._run.finish()
            except Exception as exc:
                logger.warning("wandb finish failed: {}", exc)
            self._run = None


def wandb_logged_in(env: dict[str, str] | None = None) -> bool:
    """Whether wandb would find credentials: an API key or identity token file in the
    environment, or a netrc entry for the wandb host (what `wandb login` writes)."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).netloc
    path = Path(env.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        found = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(found and found[2])


def wandb_mode(offline: bool, env: dict[str, str] | None = None) -> str:
    if offline:
        return "offline"
    return "online" if wandb_logged_in(env) else "offline"


def run_id_for(directory: Path) -> str:
    """The id of this folder's run: the stored one, else a new one (stored)."""
    path = directory / RUN_ID_FILE
    try:
        stored = path.read_text()[:80].strip()
    except OSError:
        stored = ""
    if _RUN_ID.match(stored):
        return stored
    run_id = secrets.token_hex(8)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def open_run(off: bool, project: str, entity: str, name: str, group: str, config: dict, directory: Path,
             offline: bool = False, notes: str = "") -> WandbRun:
    """The neuron's run in `directory` (resumed when the folder already has one)."""
    if off:
        return WandbRun()
    try:
        import wandb
    except ImportError:
        logger.warning("wandb is not installed; monitoring off")
        return WandbRun()
    mode = wandb_mode(offline)
    run_id = run_id_for(directory)
    try:
        run = wandb.init(project=project, entity=entity or None, name=name, group=group, config=config,
                         notes=notes or None, dir=str(directory), mode=mode, id=run_id, resume="allow",
                         reinit="finish_previous")
    except Exception as exc:
        logger.warning("wandb init failed ({}); monitoring off", exc)
        return WandbRun()
    logger.info("wandb run {} id {} ({} mode{}, dir {})", name, run_id, mode,
                "" if mode == "online" else ": not logged in to wandb or --wandb.offline; `wandb sync` uploads it",
                directory)
    return WandbRun(run)
