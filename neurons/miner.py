"""Miner entry point: parse config, run. See template/miner/lifecycle.py for the lifecycle."""
import asyncio
import sys

from loguru import logger

from template.miner.lifecycle import run_miner
from template.config import parse_config
from template.utils.errors import CannotStart

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "round", "miner"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet miner: trains its assigned unit each round")
    try:
        asyncio.run(run_miner(config))
    except CannotStart as exc:  # one line with what to do, not a traceback
        logger.error("miner cannot start: {}", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
