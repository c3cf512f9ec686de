"""Validator entry point: parse config, run. See template/validator/lifecycle.py for the lifecycle."""
import asyncio
import sys

from template.validator.lifecycle import run_validator
from template.config import parse_config

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "model", "round", "recipe", "validator"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet validator: runs rounds, scores miners, sets weights")
    asyncio.run(run_validator(config))


if __name__ == "__main__":
    main(sys.argv[1:])
