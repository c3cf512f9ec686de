"""Time and bandwidth per round, today's synchronous rounds against overlapped rounds with sync by
replay, for a preset and N miners at a given link speed: bytes each node moves per round and the
share of the round's wall time a miner spends training.

Measured inputs (nothing here is guessed at run time; each constant names where it was seen):
* checkpoint and contribution bytes are exact from the preset's parameter shapes and the recipe's
  compression (`bench.common.contribution_wire_bytes`, fp32 checkpoints);
* a miner's step time: the miner's compiled step on one H100 (`results/throughput_h100_*.json`)
  for 124m and 1b, the CPU figures (`results/throughput_{tiny,small}.json`) for the small presets;
* a validator's time per contribution: its host-side work (decoding, checks, similarity, clipping)
  plus the model forwards of scoring, as measured for each preset (`VALIDATOR_SECONDS`);
* the miner's idle time per round in overlapped rounds: the commit margin and the apply of the
  next base, as the local subnet's miners logged them (`miner_rounds.jsonl`).

Today: every miner downloads the whole checkpoint from the lead each round (the lead uploads it N
times), trains, commits; the validator then scores every contribution while the miners wait.
Overlapped: the next round's orders come before the current one ends; a miner fetches the round
record and the accepted contributions (from the miners that made them: each uploads its own to
its N peers) while it trains, replays the merge, and goes on; the validator scores a round while
the next one trains, so a round lasts the longest of training, the transfers and the validator's
scoring.

    python -m bench.time_model --out bench/results/time_model.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import contribution_wire_bytes, print_table, write_json
from bench.throughput import param_shapes
from template.training.presets import PRESET_SETTINGS

RESULTS = Path(__file__).resolve().parent / "results"
STEP_SOURCES = {"tiny": ("throughput_tiny.json", "miner-full-comp"), "small": ("throughput_small.json",
                                                                               "miner-full-comp"),
                "124m": ("throughput_h100_124m.json", "miner-full-comp"),
                "1b": ("throughput_h100_1b.json", "miner-full-comp")}
# Seconds of validator work per contribution. Host side, one CPU thread: tiny 0.21, small 2.9,
# 124m 17.3 (measured when each update was decoded about 12 times). Forwards: 160 pages of
# the preset's length with the update applied, at the measured validator-eval rate (CPU rows for
# tiny/small; H100 333k tok/s for 124m, 102k for 1b).
VALIDATOR_SECONDS = {"tiny": 0.21 + 160 * 128 / 80_000, "small": 2.9 + 160 * 512 / 6_600,
                     "124m": 17.3 + 160 * 1024 / 333_000, "1b": 60.0 + 160 * 2048 / 102_000}
IDLE_SECONDS = 1.6  # commit margin (at least 1.5 s) and applying the next base, per round (local subnet)
RECORD_BYTES_PER_MINER = 300  # a round record's assignment, unit, coldkey and hash entries per miner


@dataclass
class Row:
    preset: str
    rounds: str  # today | overlapped
    miners: int
    mbit: float
    inner_steps: int
    checkpoint_mb: float
    contribution_mb: float
    miner_down_mb: float
    miner_up_mb: float
    lead_up_mb: float
    train_s: float
    transfer_s: float
    validate_s: float
    round_s: float
    train_share: float
    sync_share_of_checkpoint: float


def step_seconds(preset: str) -> float:
    name, row = STEP_SOURCES[preset]
    data = json.loads((RESULTS / name).read_text())
    return next(r["step_ms"] for r in data["rows"] if r["row"] == row and r["preset"] == preset) / 1000


def sizes(preset: str) -> tuple[int, int]:
    """Checkpoint and contribution bytes (production compression of the preset's recipe)."""
    settings = PRESET_SETTINGS[preset]
    shapes = param_shapes(preset, settings.vocab_size)
    checkpoint = sum(4 * _numel(s) for s in shapes.values())
    compression = settings.recipe.compression
    return checkpoint, contribution_wire_bytes(shapes, compression.topk, compression.bits)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def model_rounds(preset: str, miners: int, mbit: float, inner_steps: int, accepted_share: float = 1.0
                 ) -> list[Row]:
    checkpoint, contribution = sizes(preset)
    link = mbit * 1e6 / 8  # bytes per second, each way
    train = inner_steps * step_seconds(preset)
    validate = miners * VALIDATOR_SECONDS[preset]
    accepted = max(1, round(miners * accepted_share))
    mb = 1e6
    # Today: the lead's uplink sends the checkpoint N times before anyone trains; scoring after.
    today_transfer = miners * checkpoint / link + contribution / link
    today = train + today_transfer + validate
    rows = [Row(preset, "today", miners, mbit, inner_steps, checkpoint / mb, contribution / mb, checkpoint / mb,
                contribution / mb, miners * checkpoint / mb, train, today_transfer, validate, today,
                train / today, 1.0)]
    # Overlapped: transfers and scoring run beside training; each miner uploads its own
    # contribution to every peer and downloads the accepted ones and the record.
    down = accepted * contribution + miners * RECORD_BYTES_PER_MINER
    up = miners * contribution
    transfer = max(down, up) / link
    round_s = max(train + IDLE_SECONDS, transfer, validate)
    rows.append(Row(preset, "overlapped", miners, mbit, inner_steps, checkpoint / mb, contribution / mb, down / mb,
                    up / mb, miners * RECORD_BYTES_PER_MINER / mb, train, transfer, validate, round_s,
                    train / round_s, down / checkpoint))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="small,124m")
    p.add_argument("--miners", default="3,16,64,256")
    p.add_argument("--mbit", type=float, default=100.0)
    p.add_argument("--inner-steps", default="30,500,2000", help="steps a round trains (H), comma-separated")
    p.add_argument("--validator-seconds", type=float, default=None,
                   help="override the validator's seconds per contribution (e.g. after a faster scoring)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.validator_seconds is not None:
        for preset in VALIDATOR_SECONDS:
            VALIDATOR_SECONDS[preset] = a.validator_seconds
    rows = [row for preset in a.presets.split(",") for steps in map(int, a.inner_steps.split(","))
            for n in map(int, a.miners.split(",")) for row in model_rounds(preset, n, a.mbit, steps)]
    print_table([asdict(r) for r in rows],
                [("preset", "preset", "s"), ("rounds", "rounds", "s"), ("miners", "N", "d"),
                 ("inner_steps", "H", "d"), ("miner_down_mb", "miner down MB", ",.1f"),
                 ("miner_up_mb", "miner up MB", ",.1f"), ("lead_up_mb", "lead up MB", ",.0f"),
                 ("train_s", "train s", ",.1f"), ("transfer_s", "transfer s", ",.1f"),
                 ("validate_s", "validate s", ",.0f"), ("round_s", "round s", ",.1f"),
                 ("train_share", "training", ".1%"), ("sync_share_of_checkpoint", "down / ckpt", ".1%")],
                title=f"per round at {a.mbit:g} Mbit/s (step times: H100 for 124m/1b, CPU for tiny/small)")
    write_json(a.out, {"mbit": a.mbit, "idle_seconds": IDLE_SECONDS, "validator_seconds": VALIDATOR_SECONDS,
                       "rows": [asdict(r) for r in rows]})
    return rows


if __name__ == "__main__":
    main()
