"""End-to-end DiLoCo rounds through the product's own miner and validator code
(`bench/rounds.py`): held-out loss falls round after round with the demo recipe (slow)."""
import statistics
from pathlib import Path

import pytest

from bench.rounds import RoundsSetting, run_rounds
from protocol.recipe import CompressionConfig, Recipe
from template.training.model import configure_torch_threads
from template.training.pages import build_page_store
from template.training.workload import Workload

CACHE = Path.home() / ".cache" / "deai"


@pytest.mark.slow
def test_eight_compressed_rounds_cut_heldout_loss_by_a_quarter():
    workload = Workload.build("tiny", "shakespeare", CACHE, torch_threads=1)  # a demo miner gets one thread
    setting = RoundsSetting(workload.preset_name, workload.vocab_size, workload.recipe, miners=3, rounds=8)
    result = run_rounds(setting, workload.pages)
    print("held-out loss per round:", [round(x, 4) for x in result.heldout])
    assert result.relative_drop >= 0.25, result.heldout
    assert all(b < a for a, b in zip(result.heldout, result.heldout[1:]))
    assert statistics.mean(result.inner_seconds) <= 15.0
    # the validator accepts honest miners in most rounds, and their updates pass the
    # assigned-vs-random test with a positive gain difference
    assert sum(result.merged) >= 0.75 * 3 * 8, result.rejected
    diffs = result.assignment_diffs
    assert sum(d > 0 for d in diffs) >= 0.75 * 3 * 8


def test_two_quick_rounds_on_fixture_text_reduce_heldout_loss(tmp_path):
    from tests.fixture_text import fixture_text

    configure_torch_threads(1)
    store = build_page_store(tmp_path, 300, 32, text=fixture_text())
    recipe = Recipe(inner_steps=8, batch_size=4, learning_rate=3e-3, warmup_steps=3, pages_per_miner=8,
                    compression=CompressionConfig(topk=128))
    setting = RoundsSetting("tiny", 300, recipe, miners=3, rounds=2, eval_pages=16, heldout_count=16,
                            control_count=4)
    result = run_rounds(setting, store, log=None)
    assert len(result.heldout) == 3 and result.heldout[2] < result.heldout[0]
    assert len(result.inner_seconds) == 6 and result.compression_ratio > 1
    assert len(result.body_bytes) == 6 and len(result.reports) == 2  # every contribution went through the validator
