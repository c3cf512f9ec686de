"""Miner entry point: parse config, run. See template/miner/lifecycle.py for the lifecycle.

Under torchrun (`torchrun --nproc_per_node N -m neurons.miner ...`) the first process is the
miner and the others train each unit with it (template/miner/team_lead.py)."""
import asyncio
import sys

from loguru import logger

from template.config import log_level, parse_config
from template.miner.lifecycle import run_miner
from template.miner.team_lead import follow_orders
from template.training.team import Team, TeamEnv
from template.utils.errors import CannotStart
from template.utils.logging import setup_logging

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "model", "round", "miner"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet miner: trains its assigned unit each round")
    env = TeamEnv.from_environ()
    team = Team(env, config.neuron.device) if env is not None else None
    try:
        if team is None or team.is_first:
            asyncio.run(run_miner(config, team))
        else:
            setup_logging(f"miner:{config.wallet.hotkey}:rank{team.rank}", log_level(config.logging))
            follow_orders(team, config.neuron.torch_threads)
    except CannotStart as exc:  # one line with what to do, not a traceback
        logger.error("miner cannot start: {}", exc)
        raise SystemExit(1) from None
    finally:
        if team is not None:
            team.close()


if __name__ == "__main__":
    main(sys.argv[1:])
