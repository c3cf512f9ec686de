"""Versioned request/response models (pydantic) for the validator <-> miner protocol.

Endpoints (all requests signed with btauth/1, see `protocol.auth`):
  POST /v1/train                    TrainRequest -> 202 TrainAccepted
  GET  /v1/commitment?round=R       -> 200 ContributionCommitment (signed sha256 and size of the bytes)
                                       202 not ready yet, 404 unknown round, 410 failed
  GET  /v1/contribution?round=R     -> 200 safetensors bytes (ContributionMeta in its metadata), only
                                       from the round's eval block on; 425 before it
  GET  /v1/info                     -> InfoResponse
Validators serve checkpoints:
  GET  /v1/checkpoint/latest        -> CheckpointInfo
  GET  /v1/checkpoint/{sha256}      -> safetensors bytes of that checkpoint
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.limits import MAX_CONTRIBUTION_BYTES, MAX_ROUND_OR_BLOCK
from protocol.recipe import Recipe
from protocol.version import PROTOCOL_VERSION, is_compatible

HEX64 = r"^[0-9a-f]{64}$"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol_version: str = PROTOCOL_VERSION

    @field_validator("protocol_version")
    @classmethod
    def _compatible(cls, value: str) -> str:
        if not is_compatible(value):
            raise ValueError(f"protocol version {value} is not compatible with {PROTOCOL_VERSION}")
        return value


class UnitOfWork(BaseModel):
    """What part of the model a miner trains: the whole model, or one shard of a scheme."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["full", "shard"] = "full"
    scheme: Literal["full", "layers", "width"] = "full"
    index: int = Field(default=0, ge=0, le=4096)
    count: int = Field(default=1, ge=1, le=4096)

    @model_validator(mode="after")
    def _consistent(self) -> "UnitOfWork":
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} out of range for count {self.count}")
        if (self.kind == "full") != (self.scheme == "full") or (self.kind == "full" and self.count != 1):
            raise ValueError("a full unit is scheme 'full', index 0, count 1; a shard names another scheme")
        return self

    @property
    def label(self) -> str:
        return "full" if self.kind == "full" else f"{self.scheme}-{self.index}/{self.count}"

    @classmethod
    def from_label(cls, label: str) -> "UnitOfWork":
        if label == "full":
            return cls()
        scheme, _, rest = label.partition("-")
        index, _, count = rest.partition("/")
        return cls(kind="shard", scheme=scheme, index=int(index), count=int(count))


class TrainRequest(_Message):
    """A round's work order for one miner. Everything in it can be recomputed from the chain."""

    netuid: int = Field(ge=0, le=65535)
    round_index: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    round_block: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    seed: str = Field(pattern=HEX64, description="sha256(round block hash, round index), hex")
    base_checkpoint: str = Field(pattern=HEX64, description="sha256 of the checkpoint to start from")
    dataset: str = Field(pattern=r"^[0-9a-f]{16,64}$", description="digest of the page store both sides use")
    model_preset: str = Field(max_length=64)
    checkpoint_url: str = Field(max_length=512, description="where the base checkpoint is served")
    base_round: int = Field(default=-1, ge=-1, le=MAX_ROUND_OR_BLOCK,
                            description="the last round merged into the base (-1: the initial weights); its "
                                        "record and merged contributions give the base from the one before")
    unit: UnitOfWork = UnitOfWork()
    pages: list[int] = Field(max_length=4096, description="the miner's assigned data pages")
    recipe: Recipe = Field(description="how to train and compress, exactly as the lead planned the round")
    deadline_block: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    deadline_unix: float = Field(gt=0, allow_inf_nan=False, description="wall clock seconds by which to be done")

    @field_validator("checkpoint_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("checkpoint_url must be an http(s) URL")
        return value


class TrainAccepted(_Message):
    round_index: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    status: Literal["accepted", "already_training", "done"]


class ContributionMeta(_Message):
    """Metadata carried inside the contribution's safetensors header (all values strings there)."""

    netuid: int
    round_index: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    base_checkpoint: str = Field(pattern=HEX64)
    hotkey: str = Field(min_length=40, max_length=64)
    unit: UnitOfWork = UnitOfWork()
    tokens_trained: int = Field(ge=0)
    inner_steps: int = Field(ge=0)
    loss_first: float
    loss_last: float
    train_seconds: float = Field(ge=0)
    compression: str = Field(max_length=128, description="codec id and parameters")


class ContributionCommitment(_Message):
    """A miner's signed promise of its contribution to a round, given before the deadline; the
    bytes follow only after it, so nobody can copy them while the round is open
    (`protocol.auth.sign_commitment`)."""

    netuid: int = Field(ge=0, le=65535)
    round_index: int = Field(ge=0, le=MAX_ROUND_OR_BLOCK)
    sha256: str = Field(pattern=HEX64, description="sha256 of the contribution bytes")
    size_bytes: int = Field(ge=1, le=MAX_CONTRIBUTION_BYTES)
    signature: str = Field(pattern=r"^0x[0-9a-f]{128}$", description="the hotkey's sr25519 signature")


class InfoResponse(_Message):
    hotkey: str
    version: str
    device: str
    capacity_gb: float = Field(ge=0, description="memory the miner can spend on training")
    model_preset: str
    behaviour: str = "honest"


class CheckpointInfo(_Message):
    round_index: int = Field(ge=-1, le=MAX_ROUND_OR_BLOCK, description="-1: the genesis checkpoint")
    sha256: str = Field(pattern=HEX64)
    size_bytes: int = Field(ge=0)
    model_preset: str
    vocab_size: int = Field(ge=1)

