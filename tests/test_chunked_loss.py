"""The chunked, recomputed LM loss (used when logits are large) equals the dense one."""
import torch

from template.training import loss as lm_loss
from template.training.model import build_model


def loss_and_grads(model, batch, threshold, monkeypatch):
    monkeypatch.setattr(lm_loss, "CHUNKED_LOSS_MIN_LOGITS", threshold)
    monkeypatch.setattr(lm_loss, "LOSS_CHUNK_TOKENS", 100)  # several chunks, a ragged last one
    model.zero_grad()
    loss = lm_loss.causal_lm_loss(model, batch)
    loss.backward()
    return loss.detach().item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_chunked_loss_matches_dense_loss_and_gradients(monkeypatch):
    model = build_model("tiny", 300, seed=1, device="cpu")
    batch = torch.randint(0, 300, (3, 90), generator=torch.Generator().manual_seed(0))
    dense, dense_grads = loss_and_grads(model, batch, 10**12, monkeypatch)
    chunked, chunked_grads = loss_and_grads(model, batch, 1, monkeypatch)
    assert abs(dense - chunked) < 1e-5
    for name, grad in dense_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6)
