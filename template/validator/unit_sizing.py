"""How much of the model each miner trains: the whole model when its declared memory holds
full-model training, else a width shard; and where the round's shard miners sit."""
from __future__ import annotations

import hashlib

from protocol.messages import UnitOfWork
from template.training.model import PRESETS


# Full-model training holds fp32 weights, gradients and two AdamW moments (16 bytes a parameter),
# activations, and the runtime itself (torch + transformers, ~0.5 GB measured on CPU).
TRAINING_BYTES_PER_PARAM = 16
RUNTIME_GB = 0.5
MAX_SHARDS = 8


def full_training_gb(preset_name: str, vocab_size: int, batch_size: int, page_len: int) -> float:
    preset = PRESETS[preset_name]
    params = preset.n_layers * (4 * preset.d_model ** 2 + 3 * preset.d_model * preset.d_ff) \
        + 2 * vocab_size * preset.d_model
    activations = batch_size * page_len * (preset.n_layers * 16 * preset.d_model + 2 * vocab_size) * 4
    return (params * TRAINING_BYTES_PER_PARAM + activations) / 2**30 + RUNTIME_GB


def unit_for(capacity_gb: float, required_gb: float, round_index: int, max_count: int = MAX_SHARDS) -> UnitOfWork:
    """The whole model when the miner's declared capacity holds it; else the smallest number of
    width shards whose share fits, at window `round_index % count` (`spread_windows` then places
    the round's shard miners). Width slices, not layer ranges: bench/collective.py measured quarter
    width shards at 1.07x full-model DiLoCo's held-out loss, layer ranges at 1.23x (bench/README.md).
    A shard's pay follows its measured gain."""
    if capacity_gb >= required_gb:
        return UnitOfWork()
    count = 2
    while count < min(MAX_SHARDS, max_count) and (required_gb - RUNTIME_GB) / count + RUNTIME_GB > capacity_gb:
        count *= 2
    return UnitOfWork(kind="shard", scheme="width", index=round_index % count, count=count)


def spread_windows(units: dict[str, UnitOfWork], round_index: int, peers_per_window: int = 2
                   ) -> dict[str, UnitOfWork]:
    """Spread the round's shard miners over as many windows as keep `peers_per_window` miners on
    each (peers on the same coordinates make the norm, duplicate and aggregation statistics
    work); the windows roll with the round (FedRolex) so every coordinate gets trained.

    Measured (bench/collective.py, tiny, K=4 quarter shards, 16 rounds): every miner on one
    window 1.21x full DiLoCo's loss, two windows of two miners 1.11x, four windows 1.05x.
    Miners are grouped in an order drawn from the round, so peers change every round."""
    out = dict(units)
    by_count: dict[int, list[str]] = {}
    for hotkey, unit in units.items():
        if unit.kind == "shard":
            by_count.setdefault(unit.count, []).append(hotkey)
    for count, hotkeys in by_count.items():
        groups = max(1, min(count, len(hotkeys) // max(1, peers_per_window)))
        ordered = sorted(hotkeys, key=lambda hk: hashlib.sha256(f"{round_index}/{hk}".encode()).digest())
        for i, hotkey in enumerate(ordered):
            index = (round_index + (i % groups) * count // groups) % count
            out[hotkey] = units[hotkey].model_copy(update={"index": index})
    return out
