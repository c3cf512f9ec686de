"""Shard geometry the benches report: the shard's own tensor shapes and the fraction of the
model a shard trains (the product needs neither: it works in full-model coordinates)."""
from __future__ import annotations

from collections.abc import Mapping

from template.training.model import ModelPreset
from template.training.shards import ShardPlan, ShardSpec, shard_mask, sub_param_name


def sub_shapes(plan: ShardPlan, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shapes of the shard's own tensors (what its sub-model trains), keyed by sub-model name."""
    out = {}
    for name, s in plan.items():
        shape = list(shapes[name])
        if s.rows is not None:
            shape[0] = len(s.rows)
        if s.cols is not None:
            shape[1] = len(s.cols)
        out[sub_param_name(s.sub_name)] = tuple(shape)
    return out


def trained_fraction(spec: ShardSpec, preset: ModelPreset | str, vocab_size: int,
                     shapes: Mapping[str, tuple[int, ...]]) -> float:
    """Share of the model's coordinates the shard trains."""
    masks = shard_mask(spec, preset, vocab_size, shapes)
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
