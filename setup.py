"""deAI subnet: incentivized, decentralized training on Bittensor."""
from setuptools import find_packages, setup

# torch is pinned to the CPU wheel that lies on the dev/CI machines; GPU hosts install their
# own CUDA build of the same version before `pip install -e .`.
INSTALL_REQUIRES = [
    "bittensor==11.3.0",
    "torch==2.13.0",
    "transformers==5.23.0",
    "datasets==5.2.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "fastapi==0.163.2",
    "uvicorn==0.54.0",
    "httpx==0.28.1",
    "pydantic==2.14.4",
    "wandb==0.31.0",
    "loguru==0.7.3",
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "rich==15.0.0",
]
TEST_REQUIRES = ["pytest==9.2.0", "hypothesis==6.170.15"]

setup(
    name="deai-subnet",
    version="0.1.0",
    description="Bittensor subnet for incentivized, decentralized training (DiLoCo-style rounds).",
    python_requires=">=3.11,<3.12",
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
