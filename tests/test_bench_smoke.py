"""Each benchmark runs end to end at a tiny --smoke setting and prints its table (no timing
assertions: benchmarks are never asserted)."""
import pytest

from bench import (adversarial_rounds, assignment_power, collective, compression, compression_variants, rounds,
                   throughput, validator_memory)


def test_rounds_driver_runs_miners_and_validator_and_cuts_heldout_loss(capsys):
    result = rounds.main(["--smoke"])
    assert "held-out loss" in capsys.readouterr().out
    assert len(result.heldout) == 3 and result.heldout[-1] < result.heldout[0]
    # every honest contribution went as bytes through the validator's scoring and was merged
    assert result.merged == [3, 3] and len(result.body_bytes) == 6
    assert all(r.accepted and r.assignment is not None for rs in result.reports for r in rs.values())
    assert result.compression_ratio > 50


def test_rounds_driver_merges_research_codecs_unscored():
    result = rounds.main(["--smoke", "--no-compression"])
    assert result.merged == [3, 3] and not result.body_bytes
    assert {r.reason for rs in result.reports for r in rs.values()} == {rounds.NOT_SCORED}


def test_throughput_bench_prints_its_table(capsys):
    rows = throughput.main(["--smoke"])
    out = capsys.readouterr().out
    assert "tok/s" in out and "MFU" in out
    assert {r["row"] for r in rows} >= {"miner-full", "miner-width", "miner-layers"}


def test_compression_bench_prints_its_table_and_plot(capsys, tmp_path):
    rows = compression.main(["--smoke", "--plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "x smaller" in out and "vs dense @1" in out
    assert rows[1]["ratio"] > 200
    assert (tmp_path / "c.png").exists()


def test_compression_variants_bench_counts_every_codec(capsys):
    rows = compression_variants.main(["--smoke"])
    assert "x smaller" in capsys.readouterr().out
    assert rows[0]["ratio"] == 1.0 and all(r["ratio"] > 200 for r in rows[1:])


def test_collective_bench_prints_its_table(capsys, tmp_path):
    results = collective.main(["--smoke", "--plot", str(tmp_path / "c.png"),
                               "--out", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert "/diloco (eq tokens)" in out
    assert {r.arm for r in results} == set(collective.DEFAULT_ARMS)
    assert (tmp_path / "c.png").exists() and (tmp_path / "c.json").exists()


def test_assignment_power_bench_counts_passes_per_unit_and_miner(capsys):
    rows = assignment_power.main(["--smoke"])
    assert "z >= 1" in capsys.readouterr().out
    assert {(r["unit"], r["miner"]) for r in rows} == {(u, m) for u in ("full", "width 1/4")
                                                      for m in ("honest", "wrong data")}
    assert all(r["passed"].endswith("/2") and r["z_min"] <= r["z_median"] <= r["z_max"] for r in rows)


def test_validator_memory_bench_runs_both_modes_to_the_same_aggregate(capsys):
    rows = validator_memory.main(["--smoke"])
    assert "peak RSS MiB" in capsys.readouterr().out
    packed, dense = sorted(rows, key=lambda r: r["mode"] != "packed")
    assert (packed["mode"], dense["mode"]) == ("packed", "dense") and packed["miners"] == 3
    assert packed["merged_norm"] == dense["merged_norm"] > 0  # the same round either way


def test_validator_host_sweep_fits_the_growth_in_the_number_of_contributions(capsys):
    assert validator_memory.growth_exponent([{"miners": 16, "seconds": 2.0}, {"miners": 64, "seconds": 8.0},
                                             {"miners": 256, "seconds": 32.0}]) == pytest.approx(1.0)
    assert validator_memory.growth_exponent([{"miners": 4, "seconds": 1.0}, {"miners": 8, "seconds": 4.0}]) \
        == pytest.approx(2.0)
    rows = validator_memory.main(["--preset", "tiny", "--miners", "2,4", "--modes", "packed"])
    assert [r["miners"] for r in rows] == [2, 4]
    assert "seconds grow as N^" in capsys.readouterr().out


def test_adversarial_harness_in_process_writes_its_table_and_pays_freeloaders_nothing(capsys, tmp_path):
    result = adversarial_rounds.main(["--smoke", "--attackers", "zero:1,copy:1", "--out", str(tmp_path)])
    assert "| strategy |" in capsys.readouterr().out
    assert {"result.json", "table.md", "strategies.png"} <= {p.name for p in tmp_path.iterdir()}
    share = {m.behaviour: result.emission_share(m) for m in result.miners if m.behaviour != "honest"}
    assert share == {"zero": 0.0, "copy": 0.0}
    assert sum(result.emission_share(m) for m in result.miners if m.behaviour == "honest") == pytest.approx(1.0)
