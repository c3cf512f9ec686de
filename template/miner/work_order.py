"""Whether a work order is what the chain and the shared data say it must be (a pure check)."""
from __future__ import annotations

from protocol.messages import TrainRequest
from template.chain.round_clock import round_at
from template.training.assignment import assigned_pages, round_seed
from template.training.workload import Workload


def check_round_is_open(order: TrainRequest, current_block: int, round_blocks: int, train_blocks: int,
                        now: float) -> str | None:
    """An order is for the round open on the chain right now (from its seed block, just before it
    starts, to its deadline), on the subnet's schedule, with a deadline still ahead: nobody can
    queue work for a past or future round."""
    window = round_at(order.round_block, round_blocks, train_blocks)
    if (order.round_index, order.round_block, order.deadline_block) != \
            (window.index, window.start_block, window.deadline_block):
        return (f"round {order.round_index} from block {order.round_block} to {order.deadline_block} is not on "
                f"this subnet's schedule ({round_blocks} blocks a round, {train_blocks} to train)")
    if not window.seed_block <= current_block < window.deadline_block:
        return f"round {order.round_index} is not open for training at block {current_block}"
    if order.deadline_unix <= now:
        return "the order's deadline has passed"
    return None


def check_checkpoint_source(order: TrainRequest, sender_axon: str | None) -> str | None:
    """The base checkpoint comes only from the sending validator's own address on the chain, so
    an order cannot send the miner to any other server (no request forgery through the miner)."""
    if not sender_axon:
        return "the sending validator has no address on the chain to serve its checkpoint from"
    expected = f"http://{sender_axon}/v1/checkpoint/{order.base_checkpoint}"
    if order.checkpoint_url != expected:
        return f"checkpoint_url must be the sender's own published address: {expected}"
    return None


def check_work_order(order: TrainRequest, workload: Workload, hotkey: str, seed_block_hash: str) -> str | None:
    """None when the order can be trained; else why not. `seed_block_hash` is the chain's hash
    of the round's seed block (`RoundWindow.seed_block`)."""
    if order.dataset != workload.dataset_id:
        return f"dataset mismatch: validator uses {order.dataset[:12]}, this miner {workload.dataset_id[:12]}"
    if order.model_preset != workload.preset_name:
        return f"model preset mismatch: validator uses {order.model_preset}, this miner {workload.preset_name}"
    if order.unit.kind == "shard" and workload.shard_refusal:
        return f"no {order.unit.label} shard of this model: {workload.shard_refusal}"
    if len(order.pages) != order.recipe.pages_per_miner:
        return f"{len(order.pages)} pages assigned, the recipe says {order.recipe.pages_per_miner}"
    seed = round_seed(seed_block_hash, order.round_index)
    if seed.hex() != order.seed:
        return f"seed is not sha256(hash of the round's seed block, round {order.round_index})"
    if list(order.pages) != assigned_pages(seed, hotkey, workload.pages.train_ids, len(order.pages)):
        return "pages do not match the public assignment for this round seed and hotkey"
    return None
