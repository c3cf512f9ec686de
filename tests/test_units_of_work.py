"""Units of work: a miner whose declared capacity cannot hold the model trains a width shard;
its contribution comes back in full-model coordinates, is scored among its unit's peers and
merged by coverage."""
from __future__ import annotations

import math
import time

import pytest
import torch
from bittensor.sp_core import Keypair

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import TrainRequest, UnitOfWork
from protocol.payload import decode_tensors
from template.miner.worker import MinerWorker
from template.validation.round import (Received, RoundContext, aggregate_in_arrival_order,
                                         score_contributions)
from template.training.presets import PRESET_SETTINGS
from template.training.workload import Workload
from template.validator.unit_sizing import full_training_gb, spread_windows, unit_for, units_by_capacity
from template.training.assignment import assigned_pages, round_seed
from template.training.checkpoint import save_checkpoint, state_hash
from template.training.model import build_model, load_model_state, model_state
from template.training.pages import build_page_store
from template.training.shards import ShardSpec, shard_mask
from template.validation.scoring import ScoringConfig
from tests.fixture_text import fixture_text

VOCAB, PAGE_LEN = 300, 32
SEED_HASH = "0x" + "11" * 32


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    pages = build_page_store(tmp_path_factory.mktemp("cache"), VOCAB, PAGE_LEN, text=fixture_text(1500))
    return Workload("tiny", VOCAB, pages, PRESET_SETTINGS["tiny"].recipe.with_overrides(compression={"topk": 512}))


@pytest.fixture(scope="module")
def base_state():
    return model_state(build_model("tiny", VOCAB, seed=3, device="cpu"))


def test_a_model_without_width_shards_gives_a_too_small_miner_no_work_and_says_why():
    why = "width shards are cut only from the Llama layout; gpt_neox models are trained whole"
    units, refused = units_by_capacity({"big": 8.0, "small": 0.6}, 2.0, 3, max_shards=1, shard_refusal=why)
    assert units == {"big": UnitOfWork()}
    assert refused == {"small": f"declares 0.6 GB, full-model training needs 2.0 GB, and {why}"}
    shardable, none_refused = units_by_capacity({"big": 8.0, "small": 0.6}, 2.0, 3, max_shards=4)
    assert shardable["small"].kind == "shard" and not none_refused


def test_full_model_when_capacity_holds_it():
    assert unit_for(8.0, 2.0, round_index=5) == UnitOfWork()


def test_small_capacity_gets_width_shards_that_roll_with_the_round():
    units = [unit_for(0.6, 2.0, round_index=r, max_count=4) for r in range(4)]
    assert all(u.kind == "shard" and u.scheme == "width" and u.count == 4 for u in units)
    assert sorted(u.index for u in units) == [0, 1, 2, 3]  # every window in turn


def test_shard_miners_are_spread_over_windows_with_peers_on_each():
    full = {f"big{i}": UnitOfWork() for i in range(3)}
    small = {f"small{i}": unit_for(0.6, 2.0, round_index=7, max_count=4) for i in range(8)}
    units = spread_windows(full | small, round_index=7, peers_per_window=2)
    assert all(units[hk] == UnitOfWork() for hk in full)
    windows = [units[hk].index for hk in small]
    assert sorted(set(windows)) == [0, 1, 2, 3]  # 8 miners, 2 per window: every window trained
    assert all(windows.count(w) == 2 for w in set(windows))
    few = spread_windows({f"s{i}": unit_for(0.6, 2.0, 3, 4) for i in range(3)}, 3, peers_per_window=2)
    assert len({u.index for u in few.values()}) == 1  # 3 miners: one window keeps 2+ peers
    later = spread_windows(small, round_index=8, peers_per_window=2)
    assert [later[hk].index for hk in small] != windows  # windows roll with the round


def test_shard_count_never_exceeds_the_presets_limit():
    assert unit_for(0.0001, 100.0, round_index=0, max_count=4).count == 4


def test_full_training_estimate_grows_with_the_model():
    assert full_training_gb("small", 8192, 16, 512) > full_training_gb("tiny", 1024, 16, 128)


def contribution(workload, base_state, tmp_path, hotkey_uri: str, unit: UnitOfWork, round_index: int = 4,
                 worker: MinerWorker | None = None):
    keypair = Keypair.create_from_uri(hotkey_uri)
    base_hash = state_hash(base_state)
    worker = worker or MinerWorker(keypair, workload, "honest", tmp_path / hotkey_uri.strip("/"), None,
                                   torch.device("cpu"))
    save_checkpoint(worker.checkpoints.directory / f"{base_hash}.safetensors", base_state)  # no HTTP needed
    seed = round_seed(SEED_HASH, round_index)
    pages = assigned_pages(seed, keypair.ss58_address, workload.pages.train_ids, 16)
    recipe = workload.recipe.with_overrides(inner_steps=8, batch_size=8, learning_rate=3e-3, warmup_steps=0)
    order = TrainRequest(netuid=1, round_index=round_index, round_block=40, seed=seed.hex(), base_checkpoint=base_hash,
                         dataset=workload.dataset_id, model_preset="tiny", checkpoint_url="http://203.0.113.1:1/x",
                         unit=unit, pages=pages, recipe=recipe, deadline_block=60, deadline_unix=time.time() + 120)
    assert worker.submit(order) == "accepted"  # the worker trains only the order it holds for the round
    body, _ = worker._contribution(order)
    return Received(uid=int(hotkey_uri[-1]), hotkey=keypair.ss58_address, assigned=pages, body=body,
                    arrival_index=int(hotkey_uri[-1]), unit=unit)


def test_shard_contribution_touches_only_its_coordinates(workload, base_state, tmp_path):
    unit = UnitOfWork(kind="shard", scheme="width", index=1, count=4)
    received = contribution(workload, base_state, tmp_path, "//shard1", unit)
    tensors, meta = decode_tensors(received.body, MAX_CONTRIBUTION_BYTES)
    assert meta["unit"] == unit.model_dump()
    ctx = RoundContext(1, 4, state_hash(base_state), b"\x02" * 32)
    from template.validation.round import decode_contribution

    delta, problem = decode_contribution(received, ctx, {n: tuple(t.shape) for n, t in base_state.items()},
                                         workload.compression)
    assert problem is None
    mask = shard_mask(ShardSpec("width", 1, 4), "tiny", VOCAB, {n: tuple(t.shape) for n, t in base_state.items()})
    outside = sum(float(delta[n][~mask[n]].abs().sum()) for n in delta)
    inside = sum(float(delta[n][mask[n]].abs().sum()) for n in delta)
    assert outside == 0.0 and inside > 0.0


def test_a_miner_carries_its_adamw_moments_while_it_trains_the_same_unit(workload, base_state, tmp_path):
    worker = MinerWorker(Keypair.create_from_uri("//carry1"), workload, "honest", tmp_path / "carry1", None,
                         torch.device("cpu"))

    def steps_done() -> set[float]:
        return {float(s["step"]) for s in worker._optimizer_state[1]["state"].values()}

    contribution(workload, base_state, tmp_path, "//carry1", UnitOfWork(), round_index=4, worker=worker)
    assert worker._optimizer_state[0] == "full" and steps_done() == {8.0}
    contribution(workload, base_state, tmp_path, "//carry1", UnitOfWork(), round_index=5, worker=worker)
    assert steps_done() == {16.0}  # continued from round 4's moments
    shard = UnitOfWork(kind="shard", scheme="width", index=2, count=4)
    contribution(workload, base_state, tmp_path, "//carry1", shard, round_index=6, worker=worker)
    assert worker._optimizer_state[0] == shard.label and steps_done() == {8.0}  # a new unit starts fresh


def test_contribution_for_another_unit_than_assigned_is_rejected(workload, base_state, tmp_path):
    received = contribution(workload, base_state, tmp_path, "//shard2", UnitOfWork(kind="shard", scheme="width",
                                                                                   index=0, count=4))
    received.unit = UnitOfWork()  # the validator assigned the whole model
    ctx = RoundContext(1, 4, state_hash(base_state), b"\x02" * 32)
    from template.validation.round import decode_contribution

    delta, problem = decode_contribution(received, ctx, {n: tuple(t.shape) for n, t in base_state.items()},
                                         workload.compression)
    assert delta is None and problem == "trained unit width-0/4, assigned full"


def score_mixed_round(workload, base_state, tmp_path, full: list[str], shards: list[str], shard: UnitOfWork,
                      eval_byte: bytes):
    """Contributions from whole-model miners `full` and shard miners `shards` (dev URIs), scored
    with lenient significance gates: (received, reports, accepted)."""
    received = [contribution(workload, base_state, tmp_path, uri, UnitOfWork()) for uri in full]
    received += [contribution(workload, base_state, tmp_path, uri, shard) for uri in shards]
    model = build_model("tiny", VOCAB, seed=0, device="cpu")
    load_model_state(model, base_state)
    ctx = RoundContext(1, 4, state_hash(base_state), eval_byte * 32)
    reports, accepted = score_contributions(model, base_state, received, ctx, workload.pages, workload.compression,
                                            ScoringConfig(z_min=0.0, assignment_z_min=-10.0, assignment_first_fail_z=-math.inf), 16, 8)
    return received, reports, accepted


def test_mixed_units_are_scored_per_unit_and_merged_by_coverage(workload, base_state, tmp_path):
    shard = UnitOfWork(kind="shard", scheme="width", index=0, count=2)
    received, reports, accepted = score_mixed_round(workload, base_state, tmp_path, ["//full1", "//full2"],
                                                    ["//part3", "//part4"], shard, b"\x02")
    assert set(reports) == {r.hotkey for r in received}
    for r in received:  # each unit's norm gate compares it with its own peers only
        assert reports[r.hotkey].median_norm is not None
    shard_norms = {reports[r.hotkey].median_norm for r in received[2:]}
    full_norms = {reports[r.hotkey].median_norm for r in received[:2]}
    assert shard_norms.isdisjoint(full_norms)
    units = {r.hotkey: r.unit for r in received}
    order, merged = aggregate_in_arrival_order(accepted, reports, units, "tiny", VOCAB)
    assert merged is not None and set(order) == set(accepted)
    assert all(torch.isfinite(t).all() for t in merged.values())


def test_error_feedback_is_kept_per_unit(workload, base_state, tmp_path):
    """A full-model round's residual must not leak into a later shard's contribution."""
    contribution(workload, base_state, tmp_path, "//mixed5", UnitOfWork(), round_index=4)
    unit = UnitOfWork(kind="shard", scheme="width", index=1, count=4)
    received = contribution(workload, base_state, tmp_path, "//mixed5", unit, round_index=5)
    from template.validation.round import decode_contribution

    shapes = {n: tuple(t.shape) for n, t in base_state.items()}
    delta, problem = decode_contribution(received, RoundContext(1, 5, state_hash(base_state), b"\x02" * 32), shapes,
                                         workload.compression)
    assert problem is None
    mask = shard_mask(ShardSpec("width", 1, 4), "tiny", VOCAB, shapes)
    assert sum(float(delta[n][~mask[n]].abs().sum()) for n in delta) == 0.0
    assert sorted(p.name for p in (tmp_path / "mixed5").glob("residual-*")) == [
        "residual-full.safetensors", "residual-width-1of4.safetensors"]


def test_hub_corpus_flag_builds_pages_from_that_dataset(tmp_path):
    """--data.corpus hub:<name>: the production path, here on a local .jsonl (no hub access)."""
    import json

    from template.training.tokenizer import build_tokenizer

    data = tmp_path / "corpus.jsonl"
    lines = fixture_text(1500).splitlines()
    data.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    built = Workload.build("tiny", f"hub:{data}", tmp_path / "cache", vocab_size=VOCAB, page_len=PAGE_LEN)
    assert built.pages.num_pages > 10 and built.pages.page_len == PAGE_LEN
    tokenizer = build_tokenizer(tmp_path / "cache", "\n\n\n".join(lines), VOCAB)  # the one trained on the stream
    first_pages = tokenizer.decode(built.pages.pages([0, 1, 2]).reshape(-1)).replace(tokenizer.eos_token, "\n")
    assert "\n".join(lines).startswith(first_pages)  # the pages are that dataset's rows, in order


def test_unknown_corpus_is_refused_with_the_choices(tmp_path):
    with pytest.raises(SystemExit, match="expected 'shakespeare' or 'hub:"):
        Workload.build("tiny", "wikipedia", tmp_path)
