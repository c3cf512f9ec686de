"""The training recipe of a round: every setting a miner trains with, and the compression and
outer step the validators apply. The lead plans one per round, sends it whole in each work
order and records it in the round record, so the miner trains with exactly what was planned
and a replay knows how the round was merged. Bounded like every other wire value."""
from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CompressionConfig(BaseModel):
    """Top-k per chunk with `bits`-bit values and error feedback (see template.training.compression)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk: int = Field(default=64, ge=2, le=1024, description="tile side; chunks hold chunk*chunk elements")
    topk: int = Field(default=32, ge=1, description="values kept per chunk (32 of 4096 = 0.78% density)")
    bits: int = Field(default=2, ge=1, le=8, description="bits per value code")
    ef_beta: float = Field(default=0.95, ge=0.0, le=1.0, description="error-feedback decay")

    @model_validator(mode="after")
    def _topk_fits(self) -> "CompressionConfig":
        if self.topk > self.chunk * self.chunk:
            raise ValueError(f"need 1 <= topk <= chunk^2, got topk {self.topk} for chunk {self.chunk}")
        return self

    @property
    def chunk_elems(self) -> int:
        return self.chunk * self.chunk

    @property
    def index_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.chunk_elems)))

    @property
    def codec_id(self) -> str:
        return f"topk-ef/chunk{self.chunk}/k{self.topk}/b{self.bits}"


class Recipe(BaseModel):
    """One round's training settings (one typed, frozen definition of each tunable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inner_steps: int = Field(ge=1, le=10_000, description="inner AdamW steps per round (H)")
    batch_size: int = Field(ge=1, le=4096, description="sequences per inner step")
    learning_rate: float = Field(gt=0.0, le=1.0, description="inner AdamW peak learning rate")
    warmup_steps: int = Field(default=0, ge=0, le=10_000, description="inner linear warmup steps, every round")
    final_lr_frac: float = Field(default=0.1, ge=0.0, le=1.0, description="cosine floor as a fraction of the peak")
    weight_decay: float = Field(default=0.1, ge=0.0, le=1.0, description="AdamW weight decay")
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0, description="AdamW first-moment decay")
    beta2: float = Field(default=0.95, ge=0.0, lt=1.0, description="AdamW second-moment decay")
    grad_clip: float = Field(default=1.0, gt=0.0, le=1e6, description="gradient norm clip per inner step")
    pages_per_miner: int = Field(ge=1, le=4096, description="pages assigned to each miner per round")
    max_passes: float = Field(default=10.0, ge=0.1, le=1000.0,
                              description="most passes over the assigned pages per round: a fast device stops "
                                          "there instead of memorising its pages until the deadline")
    compression: CompressionConfig = Field(default_factory=CompressionConfig)
    outer_lr: float = Field(default=1.0, gt=0.0, le=10.0, description="outer step size (plain averaging at 1.0)")

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with the given settings replaced (None leaves a setting as it is), validated."""
        fields = self.model_dump()
        fields.update({k: v for k, v in overrides.items() if v is not None and k != "compression"})
        compression = {**fields.pop("compression"), **{k: v for k, v in overrides.get("compression", {}).items()
                                                        if v is not None}}
        return Recipe(**fields, compression=CompressionConfig(**compression))


OVERRIDABLE = tuple(name for name in Recipe.model_fields if name != "compression")
COMPRESSION_OVERRIDABLE = ("chunk", "topk", "bits", "ef_beta")
