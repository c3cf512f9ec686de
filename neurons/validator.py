"""Validator entry point: parse config, run. See template/validator/lifecycle.py for the lifecycle."""
import asyncio
import sys

from loguru import logger

from template.validator.lifecycle import run_validator
from template.config import parse_config
from template.utils.errors import CannotStart

SECTIONS = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "model", "round", "recipe", "validator"]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv, SECTIONS, "deAI subnet validator: runs rounds, scores miners, sets weights")
    try:
        asyncio.run(run_validator(config))
    except CannotStart as exc:  # one line with what to do, not a traceback
        logger.error("validator cannot start: {}", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
