"""The simnet CLI, run as a subprocess against a simnet node: readable tables at a pipe's
default width (full numbers, no '…' truncation) and JSON that matches the SDK's metagraph."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import bittensor as bt
import pytest

from simnet.cli import fmt_alpha, fmt_unit, short_key
from template.chain.simnet_process import DevWallet, SimnetProcess

REPO = Path(__file__).resolve().parents[1]
OWNER = DevWallet.from_uri("//Alice")
VALI = DevWallet.from_uri("//Bob")
MINERS = [DevWallet.from_uri("//Charlie"), DevWallet.from_uri("//Dave")]


def run(coro):
    return asyncio.run(coro)


def cli(url: str, *args: str) -> str:
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(REPO))
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "simnet", *args, "--url", url],
                          capture_output=True, text=True, timeout=60, cwd=str(REPO), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("simnet-cli") / "chain.db") as sim:
        async def setup():
            async with sim.client() as client:
                netuid = (await client.execute(bt.RegisterSubnet(), OWNER)).data["netuid"]
                sudo = bt.calls.Sudo.sudo(call=await client.compose(
                    bt.calls.AdminUtils.sudo_set_commit_reveal_weights_enabled(
                        netuid=netuid, enabled=False)))
                assert (await client.submit_call(sudo, OWNER)).success
                assert (await client.execute(bt.StartCall(netuid=netuid), OWNER)).success
                for wallet in (VALI, *MINERS):
                    assert (await client.execute(bt.BurnedRegister(netuid=netuid),
                                                 wallet)).success
                assert (await client.execute(bt.ServeAxon(netuid=netuid, ip="127.0.0.1",
                                                          port=8091), MINERS[0])).success
                assert (await client.execute(bt.AddStake(
                    hotkey_ss58=VALI.hotkey.ss58_address, netuid=netuid, amount_tao=1234.5),
                    VALI)).success
                return netuid
        netuid = run(setup())
        sim.advance(101)

        async def weights():
            async with sim.client() as client:
                result = await client.execute(bt.SetWeights(
                    netuid=netuid, weights={2: 0.7, 3: 0.3}), VALI)
                assert result.success, result.error
        run(weights())
        sim.advance(25)

        async def metagraph():
            async with sim.client() as client:
                return await client.subnets.metagraph(netuid)
        yield sim, netuid, run(metagraph())


def test_metagraph_table_shows_full_numbers_at_80_columns(chain):
    sim, netuid, mg = chain
    out = cli(sim.url, "metagraph", "--netuid", str(netuid))
    for n in mg.neurons:
        line = next(l for l in out.splitlines() if short_key(n.hotkey) in l)
        assert line.split()[0] == str(n.uid)
        for text in (fmt_alpha(n.total_stake.rao / 1e9), fmt_unit(n.incentive),
                     fmt_unit(n.dividends), fmt_unit(n.consensus),
                     fmt_alpha(n.emission.rao / 1e9), str(n.last_update)):
            assert text in line, (text, line)
        assert len(line.rstrip()) <= 100, line
    vali = next(n for n in mg.neurons if n.hotkey == VALI.hotkey.ss58_address)
    assert vali.dividends > 0.9 and vali.total_stake.rao > 1234 * 10**9
    assert "," in fmt_alpha(vali.total_stake.rao / 1e9)  # >1000 alpha: thousands separator
    assert "127.0.0.1:8091" in out
    numbers = [tok for l in out.splitlines() for tok in l.split() if tok[:1].isdigit()]
    assert not [tok for tok in numbers if tok.endswith("…")], out


def test_metagraph_json_matches_the_sdk(chain):
    sim, netuid, mg = chain
    data = json.loads(cli(sim.url, "metagraph", "--netuid", str(netuid), "--json"))
    assert data["netuid"] == netuid and data["tempo"] == mg.tempo
    rows = {row["uid"]: row for row in data["neurons"]}
    assert sorted(rows) == [n.uid for n in mg.neurons]
    for n in mg.neurons:
        row = rows[n.uid]
        assert row["hotkey"] == n.hotkey and row["coldkey"] == n.coldkey
        assert row["stake_rao"] == n.total_stake.rao
        assert row["emission_rao"] == n.emission.rao
        assert row["permit"] == n.validator_permit
        assert row["incentive"] == pytest.approx(n.incentive)
        assert row["dividends"] == pytest.approx(n.dividends)
        assert row["consensus"] == pytest.approx(n.consensus)
        assert row["last_update"] == n.last_update
        assert row["axon"] == n.axon


def test_subnets_and_hyperparams_tables_and_json(chain):
    sim, netuid, mg = chain
    subnets = json.loads(cli(sim.url, "subnets", "--json"))["subnets"]
    row = next(r for r in subnets if r["netuid"] == netuid)
    assert row["owner"] == OWNER.coldkey.ss58_address and row["neurons"] == 4
    assert row["commit_reveal"] is False
    table = cli(sim.url, "subnets")
    line = next(l for l in table.splitlines() if short_key(OWNER.coldkey.ss58_address) in l)
    assert line.split()[0] == str(netuid) and fmt_alpha(row["burn_tao"]) in line
    assert "off" in line

    params = json.loads(cli(sim.url, "hyperparams", "--netuid", str(netuid), "--json"))
    hp = params["hyperparameters"]
    assert hp["tempo"] == mg.tempo and hp["commit_reveal_weights_enabled"] is False
    table = cli(sim.url, "hyperparams", "--netuid", str(netuid))
    for name in ("tempo", "weights_rate_limit", "max_validators", "immunity_period"):
        line = next(l for l in table.splitlines() if l.split()[:1] == [name])
        assert line.split()[1] == str(hp[name]), line


def test_hyperparams_show_the_sdks_reading_next_to_the_raw_value(chain):
    sim, netuid, mg = chain
    data = json.loads(cli(sim.url, "hyperparams", "--netuid", str(netuid), "--json"))
    raw = data["hyperparameters"]["burn_increase_mult"]
    assert raw / 2**64 == pytest.approx(1.26)
    assert data["readings"]["burn_increase_mult"] == "≈ 1.26"
    assert data["readings"]["kappa"] == "≈ 0.5"
    assert data["block_time"] == 0.25
    table = cli(sim.url, "hyperparams", "--netuid", str(netuid))
    rows = {l.split()[0]: l.split()[1:] for l in table.splitlines() if l.split()}
    assert rows["burn_increase_mult"] == [str(raw), "≈", "1.26"]
    # block counts are timed at this chain's 0.25 s blocks (the SDK would assume 12 s)
    assert rows["tempo"] == [str(mg.tempo), "≈", f"{mg.tempo * 0.25:g}s"]
    assert rows["immunity_period"][1:] == ["≈", "20m", "50s"]  # 5000 blocks


@pytest.mark.parametrize("view", [["metagraph", "--json"], ["metagraph"], ["hyperparams"]])
def test_a_reader_that_stops_early_gets_no_traceback(chain, view):
    sim, netuid, _ = chain
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "simnet", *view, "--netuid", str(netuid),
                                "--url", sim.url], cwd=str(REPO), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head` once it has what it wants: nothing will be read
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_without_url_the_cli_uses_simnet_url_from_the_environment(chain):
    sim, _, _ = chain
    env = dict(os.environ, PYTHONPATH=str(REPO), SIMNET_URL=sim.url)
    done = subprocess.run([sys.executable, "-m", "simnet", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == sim.url


@pytest.mark.parametrize("flag", [["--network", "finney"], ["-n", "test"], ["--network=local"]])
def test_simnet_btcli_refuses_a_network_flag(flag):
    done = subprocess.run([sys.executable, "-m", "simnet", "btcli", "subnets", "list", *flag],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 2
    assert "drop --network" in done.stderr and done.stdout == ""
