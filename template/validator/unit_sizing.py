"""How much of the model each miner trains: the whole model when its declared memory holds
full-model training, else a width shard; and where the round's shard miners sit."""
from __future__ import annotations

import hashlib

from protocol.messages import UnitOfWork
from template.training.memory import RUNTIME_GB, full_training_gb  # noqa: F401 - sized here

MAX_SHARDS = 8


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


def units_by_capacity(capacities: dict[str, float], required_gb: float, round_index: int, max_shards: int,
                      shard_refusal: str | None = None) -> tuple[dict[str, UnitOfWork], dict[str, str]]:
    """Each miner's unit from its declared capacity, shard miners spread over windows. A model
    no width shard can be cut from (`shard_refusal`, e.g. a GPT-NeoX) gives a miner too small
    for it no work: the second dict says why, by hotkey."""
    units, refused = {}, {}
    for hotkey, capacity in capacities.items():
        if capacity < required_gb and shard_refusal:
            refused[hotkey] = (f"declares {capacity:.1f} GB, full-model training needs {required_gb:.1f} GB, "
                               f"and {shard_refusal}")
        else:
            units[hotkey] = unit_for(capacity, required_gb, round_index, max_shards)
    return spread_windows(units, round_index), refused


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
