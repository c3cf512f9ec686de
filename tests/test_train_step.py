"""The inner step under torch.compile: same training as eager, compiled once per model."""
import pytest
import torch

from template.config import parse_config
from template.training import loss
from template.training.inner_loop import train_inner
from template.training.model import build_model, load_model_state, model_state
from template.training.presets import PRESET_SETTINGS
from template.training.shards import ShardSpec, extract, sub_state
from template.training.train_step import (clip_and_step, forward_backward, should_compile,
                                          uses_fused_adamw)


def pages(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 512, (16, 32), generator=torch.Generator().manual_seed(seed))


# 3 AdamW steps of 4 sequences at 3e-3, no warmup.
RECIPE = PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=3, batch_size=4, learning_rate=3e-3,
                                                       warmup_steps=0)


def test_compiled_inner_loop_trains_like_eager_and_reuses_its_compilation():
    eager, compiled = build_model("tiny", 512, 0, "cpu"), build_model("tiny", 512, 0, "cpu")
    start = model_state(eager)
    a = train_inner(eager, pages(), RECIPE, seed=1)
    b = train_inner(compiled, pages(), RECIPE, seed=1, compile=True)
    assert b.loss_first == pytest.approx(a.loss_first, abs=1e-4)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(p, q, atol=1e-4), name
        assert not torch.equal(p.detach(), start[name]), f"{name} did not train"
    step = forward_backward(compiled, compile=True)
    load_model_state(compiled, start)  # next round: a new base loaded in place
    c = train_inner(compiled, pages(), RECIPE, seed=1, compile=True)
    assert forward_backward(compiled, compile=True) is step
    assert c.loss_first == pytest.approx(a.loss_first, abs=1e-4)


def assert_same_gradients(eager: torch.nn.Module, compiled: torch.nn.Module, batch: torch.Tensor) -> None:
    """One step eager and one compiled give the same loss and gradients (to float rounding;
    parameters are not compared after AdamW, which turns rounding in near-zero gradients into
    lr-sized steps)."""
    loss_eager = forward_backward(eager, compile=False)(batch)
    loss_compiled = forward_backward(compiled, compile=True)(batch)
    assert float(loss_compiled) == pytest.approx(float(loss_eager), rel=1e-5)
    grads = {name: p.grad for name, p in compiled.named_parameters() if p.requires_grad}
    trained = [(name, p.grad) for name, p in eager.named_parameters() if p.requires_grad]
    assert trained and sorted(grads) == sorted(name for name, _ in trained)
    for name, grad in trained:
        assert torch.linalg.norm(grads[name] - grad) <= 1e-5 * torch.linalg.norm(grad), name


def test_compiled_step_trains_a_width_shard_like_eager():
    """The compiled step goes through the sub-model's row-sliced embedding and head."""
    full = model_state(build_model("tiny", 512, 0, "cpu"))
    spec = ShardSpec("width", 1, 4)
    (eager, _), (compiled, _) = extract(full, spec, "tiny", 512), extract(full, spec, "tiny", 512)
    start = sub_state(compiled)
    assert_same_gradients(eager, compiled, pages()[:4])
    a = train_inner(eager, pages(), RECIPE, seed=1)
    b = train_inner(compiled, pages(), RECIPE, seed=1, compile=True)
    assert b.loss_last == pytest.approx(a.loss_last, abs=1e-3)
    for name, p in compiled.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p.detach(), start[name]), f"{name} did not train"


def recording_compile(graphs: list):
    """torch.compile that keeps the FX graphs Dynamo hands to Inductor."""
    from torch._inductor.compile_fx import compile_fx
    real = torch.compile

    def backend(gm, inputs):
        graphs.append(gm)
        return compile_fx(gm, inputs)
    return lambda fn, **kw: real(fn, backend=backend, **kw)


@pytest.mark.parametrize("unit", ["full", "width"])
def test_compiled_step_with_the_chunked_loss_matches_the_dense_eager_step(unit, monkeypatch):
    full = model_state(build_model("tiny", 512, 0, "cpu"))
    spec = ShardSpec(unit, 1 if unit == "width" else 0, 4 if unit == "width" else 1)
    (eager, _), (compiled, _) = extract(full, spec, "tiny", 512), extract(full, spec, "tiny", 512)
    batch = pages()[:4]
    loss_eager = forward_backward(eager, compile=False, loss_mode="dense")(batch)
    monkeypatch.setattr(loss, "LOSS_CHUNK_TOKENS", 40)  # 124 targets a batch: 4 chunks, one short
    graphs = []
    monkeypatch.setattr(torch, "compile", recording_compile(graphs))
    loss_compiled = forward_backward(compiled, compile=True, loss_mode="chunked")(batch)
    assert any("autograd_function_apply" in g.code for g in graphs)  # the chunked loss, compiled
    assert float(loss_compiled) == pytest.approx(float(loss_eager), rel=1e-5)
    trained = [(n, p) for n, p in eager.named_parameters() if p.requires_grad]
    grads = {n: p.grad for n, p in compiled.named_parameters() if p.requires_grad}
    assert trained and sorted(grads) == sorted(n for n, _ in trained)
    for name, p in trained:
        assert torch.linalg.norm(grads[name] - p.grad) <= 1e-5 * torch.linalg.norm(p.grad), name


def test_compiled_steps_are_cached_per_loss_mode():
    model = build_model("tiny", 512, 0, "cpu")
    dense = forward_backward(model, compile=True, loss_mode="dense")
    chunked = forward_backward(model, compile=True, loss_mode="chunked")
    assert dense is not chunked
    assert forward_backward(model, compile=True, loss_mode="dense") is dense


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipping, and a norm below the limit
def test_clip_folded_into_fused_adamw_equals_clip_then_step(max_norm):
    """`clip_and_step` with fused AdamW (gradients divided inside the kernel) moves the
    parameters exactly as clip_grad_norm_ followed by a plain AdamW step."""
    models = [build_model("tiny", 512, 0, "cpu") for _ in range(2)]
    for m in models:
        forward_backward(m, compile=False)(pages()[:4])
    plain = torch.optim.AdamW(models[0].parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    fused = torch.optim.AdamW(models[1].parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    assert not uses_fused_adamw(plain) and uses_fused_adamw(fused)
    start = model_state(models[0])
    clip_and_step(plain, list(models[0].parameters()), max_norm)
    clip_and_step(fused, list(models[1].parameters()), max_norm)
    assert not hasattr(fused, "grad_scale")
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
        assert not torch.equal(p.detach(), start[name]), name


def test_compile_mode_auto_compiles_on_cuda_only():
    assert should_compile("auto", torch.device("cuda")) is True
    assert should_compile("auto", torch.device("cpu")) is False
    assert should_compile("on", torch.device("cpu")) is True
    assert should_compile("off", torch.device("cuda")) is False
    with pytest.raises(ValueError, match="compile mode"):
        should_compile("fast", torch.device("cpu"))


def test_miner_refuses_an_unknown_compile_mode():
    with pytest.raises(SystemExit, match="--miner.compile 'fast'"):
        parse_config(["--miner.compile", "fast"], ["miner"], "test")
    assert parse_config(["--miner.compile", "off"], ["miner"], "test").miner.compile == "off"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_miner_step_is_bf16_fused_and_compiled_by_default():
    device = torch.device("cuda")
    model = build_model("tiny", 512, 0, device)
    start = model_state(model)
    stats = train_inner(model, pages().to(device), RECIPE,
                        compile=should_compile("auto", device))
    assert stats.steps == 3 and torch.isfinite(torch.tensor(stats.loss_last))
    assert getattr(model, "_deai_compiled_step", None)  # compiled steps, cached on the model
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach().cpu(), start[n])]
    assert len(moved) == len(start)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_chunked_loss_matches_the_dense_one_under_bf16_and_compile():
    device = torch.device("cuda")
    dense_model = build_model("tiny", 512, 0, device)
    chunked_model = build_model("tiny", 512, 0, device)
    batch = pages().to(device)
    dense = forward_backward(dense_model, compile=True, loss_mode="dense")(batch)
    chunked = forward_backward(chunked_model, compile=True, loss_mode="chunked")(batch)
    assert float(chunked) == pytest.approx(float(dense), rel=1e-2)
    for (name, p), q in zip(dense_model.named_parameters(), chunked_model.parameters()):
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
        assert cos > 0.99, (name, float(cos))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_clip_folded_into_fused_adamw_equals_clip_then_step():
    device = torch.device("cuda")
    models = [build_model("tiny", 512, 0, device) for _ in range(2)]
    for m in models:
        forward_backward(m, compile=False)(pages().to(device))
    plain = torch.optim.AdamW(models[0].parameters(), lr=1e-2, foreach=True)
    fused = torch.optim.AdamW(models[1].parameters(), lr=1e-2, fused=True)
    clip_and_step(plain, list(models[0].parameters()), 1e-3)
    clip_and_step(fused, list(models[1].parameters()), 1e-3)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
