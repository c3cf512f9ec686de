"""Miner entry point: parse config, run. See template/miner/lifecycle.py for the lifecycle.

Under torchrun (`torchrun --nproc_per_node N -m neurons.miner ...`) the first process is the
miner and the others train each unit with it (template/miner/team_lead.py)."""
import asyncio
import sys

from template.config import parse_config
from template.miner.lifecycle import run_miner
from template.miner.team_lead import follow_orders
from template.training.team import Team, TeamEnv
from template.utils.logging import setup_logging

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "model", "round", "miner"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet miner: trains its assigned unit each round")
    env = TeamEnv.from_environ()
    if env is None:
        asyncio.run(run_miner(config))
        return
    team = Team(env, config.neuron.device)
    try:
        if team.is_first:
            asyncio.run(run_miner(config, team))
        else:
            setup_logging(f"miner:{config.wallet.hotkey}:rank{team.rank}", config.logging.debug)
            follow_orders(team, config.neuron.torch_threads)
    finally:
        team.close()


if __name__ == "__main__":
    main(sys.argv[1:])
