"""The chunked loss with fused gradients (`LinearCrossEntropy`) equals the dense one: loss and
every gradient, for plain, tied-head and width-shard models, eager and compiled."""
import pytest
import torch

from template.training import loss as lm_loss
from template.training.model import build_model, model_state
from template.training.shards import ShardSpec, extract, loss_mode


def loss_and_grads(model, batch, mode, monkeypatch):
    monkeypatch.setattr(lm_loss, "LOSS_CHUNK_TOKENS", 100)  # several chunks, a ragged last one
    model.zero_grad(set_to_none=True)
    loss = lm_loss.causal_lm_loss(model, batch, mode)
    loss.backward()
    return loss.detach().item(), {n: p.grad.clone() for n, p in model.named_parameters()
                                  if p.requires_grad}


def assert_same(model, batch, monkeypatch):
    dense, dense_grads = loss_and_grads(model, batch, "dense", monkeypatch)
    calls = []
    real = lm_loss.LinearCrossEntropy.apply
    monkeypatch.setattr(lm_loss.LinearCrossEntropy, "apply",
                        staticmethod(lambda *a: calls.append(1) or real(*a)))
    chunked, chunked_grads = loss_and_grads(model, batch, "chunked", monkeypatch)
    assert calls, "the chunked path was not taken"
    assert abs(dense - chunked) < 1e-5
    assert sorted(chunked_grads) == sorted(dense_grads) and dense_grads
    for name, grad in dense_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("preset", ["tiny", "124m-shaped"])
def test_chunked_loss_matches_dense_loss_and_gradients(preset, monkeypatch):
    # "124m-shaped": the tiny model with a tied head (one table is embedding and head).
    model = build_model("tiny", 300, seed=1, device="cpu")
    if preset != "tiny":
        model.lm_head.weight = model.model.embed_tokens.weight
    batch = torch.randint(0, 300, (3, 90), generator=torch.Generator().manual_seed(0))
    assert_same(model, batch, monkeypatch)


def test_chunked_loss_on_a_width_shard_trains_only_its_vocabulary_rows(monkeypatch):
    full = model_state(build_model("tiny", 300, seed=1, device="cpu"))
    spec = ShardSpec("width", 2, 4)
    model, _ = extract(full, spec, "tiny", 300)
    assert loss_mode(spec) == "chunked" and loss_mode(ShardSpec("full")) == "auto"
    batch = torch.randint(0, 300, (3, 90), generator=torch.Generator().manual_seed(2))
    assert_same(model, batch, monkeypatch)
    assert model.lm_head.table.part.grad is not None


def test_auto_mode_chunks_only_above_the_threshold(monkeypatch):
    batch = torch.zeros(4, 32, dtype=torch.long)
    assert not lm_loss.uses_chunked_loss("auto", batch, 512)
    monkeypatch.setattr(lm_loss, "CHUNKED_LOSS_MIN_LOGITS", 4 * 32 * 512)
    assert lm_loss.uses_chunked_loss("auto", batch, 512)
    assert lm_loss.uses_chunked_loss("chunked", batch, 2) and not lm_loss.uses_chunked_loss("dense", batch, 10**9)
    with pytest.raises(ValueError, match="loss mode"):
        lm_loss.uses_chunked_loss("fast", batch, 512)


def test_without_autograd_the_loss_is_the_dense_one():
    model = build_model("tiny", 300, seed=1, device="cpu")
    batch = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = lm_loss.causal_lm_loss(model, batch, "chunked")
        b = lm_loss.causal_lm_loss(model, batch, "dense")
    assert float(a) == float(b)
