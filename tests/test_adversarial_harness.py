"""The public adversarial harness, short: the real local subnet (simnet, a validator, honest miners
of different speeds, attackers as real miner processes), incentive and emission read from the
chain, held to the issue's bars (bench/adversary.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.adversary import RunResult, bars

REPO = Path(__file__).resolve().parents[1]


def run_harness(out: Path, *flags: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.adversarial", "--out", str(out), *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def logs(out: Path, lines: int = 30) -> str:
    return "".join(f"\n--- {p.name} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                   for p in sorted((out / "logs").glob("*.log")))


@pytest.mark.slow
def test_attacks_earn_nothing_lazy_and_sybils_earn_their_work_and_slow_honest_miners_their_share(tmp_path):
    result = run_harness(tmp_path, "--honest", "3", "--speeds", "1,1,0.33", "--rounds", "4",
                         "--attackers", "zero:1,copy_noise:1,stale:1,lazy_quarter:1,sybil_trio:3", "--check",
                         timeout=1500)
    context = result.stdout[-4000:] + result.stderr[-3000:] + logs(tmp_path)
    assert (tmp_path / "strategies.png").stat().st_size > 1000, context
    run = RunResult.from_json(json.loads((tmp_path / "result.json").read_text()))
    found = bars(run)
    names = {b.name.split(":")[0] for b in found}
    assert {"a3-zero", "a4-copy_noise", "a5-stale", "a6-lazy_quarter"} <= names, context
    assert any(b.name.startswith("sybil trio") for b in found), context
    assert all(b.passed for b in found), "\n".join(f"{b.name}: {b.measured:.4f} (limit {b.limit})" for b in found
                                                   if not b.passed) + context
    assert result.returncode == 0, context
