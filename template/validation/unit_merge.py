"""Merging accepted contributions of several units of work (whole model, width/layer shards)
into one outer-step update, deterministically (the round record keeps the order)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from loguru import logger

from protocol.messages import UnitOfWork
from template.training.compression import shapes_of
from template.training.shards import ShardSpec, coverage_mean, shard_mask
from template.training.model import ModelPreset
from template.validation.aggregation import aggregate, coldkey_capped_weights, median_norm_clip


def merge_units(order: list[str], accepted: dict[str, Mapping[str, torch.Tensor]], units: dict[str, UnitOfWork],
                preset: ModelPreset | str, vocab_size: int, min_per_unit: int = 2, coldkeys: dict[str, str] | None = None,
                weights: Mapping[str, float] | None = None) -> tuple[list[str], dict[str, torch.Tensor] | None]:
    """Whole-model contributions: median-norm clip and mean. With shards, each unit is clipped
    among its own peers, a unit with fewer than `min_per_unit` accepted is left out, and every
    coordinate is the mean over the contributions that trained it. Within a unit no coldkey
    weighs more than a third (`coldkeys`: hotkey -> coldkey; a hotkey missing is its own).
    `weights` (hotkey -> weight relative to 1; missing: 1) are the collusion groups' shares.
    Returns the hotkeys merged, in order, and the update (None: the model stays unchanged)."""
    owner = lambda hk: (coldkeys or {}).get(hk, hk)  # noqa: E731
    shares = dict(weights or {})
    base = lambda members: [float(shares.get(hk, 1.0)) for hk in members]  # noqa: E731
    groups: dict[str, list[str]] = {}
    for hk in order:
        groups.setdefault(units[hk].label, []).append(hk)
    if set(groups) <= {"full"}:
        merged = aggregate([accepted[hk] for hk in order], min_per_unit, [owner(hk) for hk in order],
                           base(order)) if order else None
        if merged is None and order:
            logger.info("fewer accepted contributions than the aggregation minimum: model unchanged")
        return order, merged
    kept, clipped, masks, weights = [], [], [], []
    for label, members in groups.items():
        if len(members) < min_per_unit:
            logger.info("unit {}: {} accepted, fewer than {}: left unchanged", label, len(members), min_per_unit)
            continue
        unit = units[members[0]]
        spec = ShardSpec(unit.scheme, unit.index, unit.count)
        shapes = shapes_of(accepted[members[0]])
        mask = shard_mask(spec, preset, vocab_size, shapes)
        capped = coldkey_capped_weights([owner(hk) for hk in members], base=base(members))
        # relative to 1 per contribution, so that units overlapping on a coordinate weigh as before
        weights += [w * len(members) for w in capped] if capped else [1.0] * len(members)
        for hk, delta in zip(members, median_norm_clip([accepted[hk] for hk in members], capped)):
            kept.append(hk)
            clipped.append(delta)
            masks.append(mask)
    if not kept:
        return [], None
    return kept, coverage_mean(clipped, masks, weights if any(w != 1.0 for w in weights) else None)
