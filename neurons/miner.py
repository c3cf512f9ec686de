"""Miner entry point: parse config, run. See template/miner/lifecycle.py for the lifecycle."""
import asyncio
import sys

from template.miner.lifecycle import run_miner
from template.config import parse_config

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "model", "round", "miner"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet miner: trains its assigned unit each round")
    asyncio.run(run_miner(config))


if __name__ == "__main__":
    main(sys.argv[1:])
