"""Fine-tuning a pretrained model: --model.name_or_path loads any causal LM (tiny random-weight
Llama, Mistral, Qwen2, Qwen3 and GPT-NeoX models saved with save_pretrained here, loaded through
the same code a hub id goes through), rounds exchange its parameters by name, and its name on
the wire is its initial weights' content hash."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from protocol.messages import TrainRequest, UnitOfWork
from template.config import build_workload, parse_config
from template.miner.work_order import check_work_order
from template.training.checkpoint import checkpoint_bytes, state_hash
from template.training.compression import CompressedUpdate, compress, decompress, shapes_of
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import load_model_state, model_state
from template.training.outer_step import apply_outer_step
from template.training.presets import PRESET_SETTINGS
from template.training.pretrained import PretrainedSource, load_pretrained, pretrained_architecture
from template.training.shards import ShardSpec, delta_to_full, extract, shard_mask, sub_state
from template.training.workload import Workload
from template.validation.unit_merge import merge_units
from tests.fixture_text import fixture_text
from tests.tiny_models import FAMILIES, MODEL_VOCAB, SHARDABLE, save_tiny_model

RECIPE = PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=4, batch_size=4, compression={"topk": 256})
PAGE_LEN = 32


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in fixture_text(800).splitlines()))
    return f"hub:{path}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> a save_pretrained folder of a tiny random model of it."""
    return {family: save_tiny_model(tmp_path_factory.mktemp(family), family) for family in FAMILIES}


def workload_of(folder, corpus, cache) -> Workload:
    return Workload.build("tiny", corpus, cache, page_len=PAGE_LEN, pretrained=PretrainedSource(str(folder)),
                          recipe_overrides={"inner_steps": 4, "batch_size": 4})


def order_from(work: Workload, unit: UnitOfWork = UnitOfWork()) -> TrainRequest:
    """A work order for `work`'s model and pages (the checks before the seed's look at these)."""
    return TrainRequest(netuid=1, round_index=0, round_block=0, seed="0" * 64, base_checkpoint="a" * 64,
                        dataset=work.dataset_id, model_preset=work.preset_name, unit=unit,
                        checkpoint_url="http://127.0.0.1:1/v1/checkpoint/" + "a" * 64, pages=[0] * 48, recipe=RECIPE,
                        deadline_block=10, deadline_unix=1e10)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_round_of_any_family_is_exchanged_and_merged_by_parameter_name(family, saved, corpus, tmp_path):
    work = workload_of(saved[family], corpus, tmp_path)
    model = work.initial_model(seed=0, device=torch.device("cpu"))
    base = model_state(model)
    assert work.preset_name == "pt-" + state_hash(base)[:32]  # the name on the wire is the initial checkpoint's hash
    assert work.vocab_size == MODEL_VOCAB and work.architecture.model_type == family
    assert len(checkpoint_bytes(base)) <= work.checkpoint_size_bound  # a miner's download bound lets it through
    stats = train_inner(model, work.pages.pages(work.pages.train_ids[:16]), RECIPE, seed=1)
    assert stats.loss_last < stats.loss_first
    delta = pseudo_gradient(base, model)
    assert set(delta) == set(base)  # every parameter, by name (tied ones once)
    update, _ = compress(delta, None, RECIPE.compression)
    shapes = shapes_of(base)
    decoded = decompress(CompressedUpdate.from_tensors(update.to_tensors(), shapes, RECIPE.compression), shapes)
    _, merged = merge_units(["a", "b"], {"a": decoded, "b": decoded}, {"a": UnitOfWork(), "b": UnitOfWork()},
                            work.architecture, work.vocab_size, min_per_unit=2)
    stepped = apply_outer_step(base, merged, RECIPE.outer_lr)
    again = work.model_from(stepped, torch.device("cpu"))  # the next round's base, in a fresh model
    assert state_hash(model_state(again)) == state_hash(stepped) != state_hash(base)


def test_the_same_weights_have_one_name_wherever_they_are_loaded_from(saved, tmp_path):
    copy = shutil.copytree(saved["llama"], tmp_path / "elsewhere")
    other = save_tiny_model(tmp_path / "other-seed", "llama", seed=1)
    ids = [load_pretrained(PretrainedSource(str(p))).architecture.name for p in (saved["llama"], copy, other)]
    assert ids[0] == ids[1] != ids[2]


def test_a_miner_with_other_weights_refuses_the_validators_orders(saved, corpus, tmp_path):
    validator = workload_of(saved["llama"], corpus, tmp_path / "v")
    miner = workload_of(save_tiny_model(tmp_path / "m", "llama", seed=7), corpus, tmp_path / "m-cache")
    assert "model preset mismatch" in check_work_order(order_from(validator), miner, "hk", "0x" + "11" * 32)


def test_a_bf16_checkpoint_is_trained_in_fp32_with_a_stable_identity(tmp_path):
    folder = save_tiny_model(tmp_path / "bf16", "qwen2", dtype=torch.bfloat16)
    first, second = (load_pretrained(PretrainedSource(str(folder))) for _ in range(2))
    assert {t.dtype for t in first.state.values()} == {torch.float32}
    assert first.architecture.name == second.architecture.name
    saved_bf16 = AutoModelForCausalLM.from_pretrained(folder)
    assert next(saved_bf16.parameters()).dtype == torch.bfloat16
    upcast = {n: p.detach().float() for n, p in saved_bf16.named_parameters()}
    assert state_hash(upcast) == state_hash(first.state)  # exactly the saved values, widened


def test_tied_embeddings_are_exchanged_once_and_stay_tied(tmp_path):
    loaded = load_pretrained(PretrainedSource(str(save_tiny_model(tmp_path / "tied", "qwen2", tie=True))))
    assert "model.embed_tokens.weight" in loaded.state and "lm_head.weight" not in loaded.state
    state = {n: t + 0.5 for n, t in loaded.state.items()}
    from template.training.model import empty_model

    model = empty_model(loaded.architecture, MODEL_VOCAB)
    load_model_state(model, state)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.lm_head.weight, state["model.embed_tokens.weight"])


def test_non_contiguous_parameters_are_exchanged_as_contiguous_tensors(saved):
    model = load_pretrained(PretrainedSource(str(saved["mistral"]))).model
    weight = model.model.layers[0].self_attn.o_proj.weight
    weight.data = weight.data.t().contiguous().t()  # same values, transposed strides (as some loaders leave them)
    assert not weight.is_contiguous()
    state = model_state(model)
    assert all(t.is_contiguous() for t in state.values())
    delta = {n: torch.full_like(t, 0.01) for n, t in state.items()}
    update, _ = compress(delta, None, RECIPE.compression)
    shapes = shapes_of(state)
    wire = CompressedUpdate.from_tensors(update.to_tensors(), shapes, RECIPE.compression)
    assert set(decompress(wire, shapes)) == set(state)


@pytest.mark.parametrize("family", SHARDABLE)
def test_a_whole_width_window_is_the_full_model(family, saved):
    """Width shards of the Llama-layout families: the window over every head and FFN unit is the
    model itself (same logits), so the cut follows the architecture's own layout."""
    loaded = load_pretrained(PretrainedSource(str(saved[family])))
    sub, _ = extract(loaded.state, ShardSpec("width", 0, 1), loaded.architecture, MODEL_VOCAB)
    batch = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(sub(input_ids=batch).logits, loaded.model(input_ids=batch).logits, atol=1e-5)


@pytest.mark.parametrize("family", SHARDABLE)
def test_a_half_width_shard_trains_only_its_window(family, saved):
    loaded = load_pretrained(PretrainedSource(str(saved[family])))
    spec = ShardSpec("width", 1, 2)
    sub, plan = extract(loaded.state, spec, loaded.architecture, MODEL_VOCAB)
    assert sub.config.num_key_value_heads == 1 and sub.config.num_attention_heads == 2
    start = sub_state(sub)
    tokens = torch.randint(0, 300, (8, 16), generator=torch.Generator().manual_seed(1))
    train_inner(sub, tokens, RECIPE, seed=0, loss_mode="chunked")
    shapes = shapes_of(loaded.state)
    full = delta_to_full(pseudo_gradient(start, sub), plan, shapes)
    mask = shard_mask(spec, loaded.architecture, MODEL_VOCAB, shapes)
    assert all(float(full[n][~mask[n]].abs().sum()) == 0.0 for n in full)
    assert all(float(full[n][mask[n]].abs().sum()) > 0.0 for n in full if n.endswith("q_proj.weight"))


def test_gpt_neox_gets_no_shards_and_says_why(saved, corpus, tmp_path):
    work = workload_of(saved["gpt_neox"], corpus, tmp_path)
    assert work.max_shards == 1 and "gpt_neox models are trained whole" in work.shard_refusal
    order = order_from(work, UnitOfWork(kind="shard", scheme="width", index=0, count=2))
    assert "no width-0/2 shard of this model" in check_work_order(order, work, "hk", "0x" + "11" * 32)


def test_the_flags_load_the_model_its_tokenizer_and_a_replay_reads_its_architecture(saved, corpus, tmp_path):
    config = parse_config(["--data.corpus", corpus, "--data.page_len", str(PAGE_LEN), "--neuron.cache_dir",
                           str(tmp_path), "--model.name_or_path", str(saved["qwen3"])],
                          ["neuron", "data", "model", "recipe"], "test")
    work = build_workload(config)
    assert work.preset_name.startswith("pt-") and work.architecture.head_size == 32
    assert int(work.pages.tokens.max()) < 300  # the model's own tokenizer (300 tokens), not a new BPE
    assert pretrained_architecture(PretrainedSource(str(saved["qwen3"]))).hf_config == work.architecture.hf_config
