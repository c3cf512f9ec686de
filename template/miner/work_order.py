"""Whether a work order is what the chain and the shared data say it must be (a pure check)."""
from __future__ import annotations

from protocol.messages import TrainRequest
from template.training.assignment import assigned_pages, round_seed
from template.training.workload import Workload


def check_work_order(order: TrainRequest, workload: Workload, hotkey: str, round_block_hash: str) -> str | None:
    """None when the order can be trained; else why not. `round_block_hash` is the chain's hash
    of `order.round_block`."""
    if order.dataset != workload.dataset_id:
        return f"dataset mismatch: validator uses {order.dataset[:12]}, this miner {workload.dataset_id[:12]}"
    if order.model_preset != workload.preset_name:
        return f"model preset mismatch: validator uses {order.model_preset}, this miner {workload.preset_name}"
    if len(order.pages) != order.recipe.pages_per_miner:
        return f"{len(order.pages)} pages assigned, the recipe says {order.recipe.pages_per_miner}"
    seed = round_seed(round_block_hash, order.round_index)
    if seed.hex() != order.seed:
        return f"seed is not sha256(hash of block {order.round_block}, round {order.round_index})"
    if list(order.pages) != assigned_pages(seed, hotkey, workload.pages.train_ids, len(order.pages)):
        return "pages do not match the public assignment for this round seed and hotkey"
    return None
