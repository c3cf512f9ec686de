"""End-to-end DiLoCo rounds on the real corpus with the demo defaults (slow)."""
from pathlib import Path

import pytest

from template.training.config import TrainingConfig
from template.training.model import configure_torch_threads
from template.training.pages import build_page_store
from template.training.simulation import run_simulation

CACHE = Path.home() / ".cache" / "deai"


@pytest.mark.slow
def test_eight_compressed_rounds_cut_heldout_loss_by_a_quarter():
    configure_torch_threads(1)  # a demo miner gets one thread
    cfg = TrainingConfig()
    store = build_page_store(CACHE, cfg.vocab_size, cfg.page_len, cfg.heldout_fraction)
    result = run_simulation(cfg, store, rounds=8, miners=3, compression=cfg.compression)
    print("held-out loss per round:", [round(x, 4) for x in result.heldout_loss])
    assert result.relative_drop >= 0.25, result.heldout_loss
    assert all(b < a for a, b in zip(result.heldout_loss, result.heldout_loss[1:]))
    assert sum(result.inner_seconds) / len(result.inner_seconds) <= 15.0
    # honest miners pass the assigned-vs-random test in most rounds
    positive = sum(g > 0 for g in result.assigned_minus_control)
    assert positive >= 0.75 * len(result.assigned_minus_control)


def test_two_quick_rounds_on_fixture_text_reduce_heldout_loss(tmp_path):
    from tests.fixture_text import fixture_text

    configure_torch_threads(1)
    cfg = TrainingConfig(vocab_size=300, page_len=32, inner_steps=8, batch_size=4,
                         pages_per_assignment=8)
    store = build_page_store(tmp_path, cfg.vocab_size, cfg.page_len, text=fixture_text())
    result = run_simulation(cfg, store, rounds=2, miners=3, compression=cfg.compression,
                            eval_pages=16, proof_pages=4)
    assert len(result.heldout_loss) == 3 and result.heldout_loss[2] < result.heldout_loss[0]
    assert len(result.inner_seconds) == 6 and result.compression_ratio > 1
