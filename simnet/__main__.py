"""``python -m simnet serve|status|subnets|hyperparams|metagraph ...``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
