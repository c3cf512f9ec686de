"""The real btcli against a running simnet, as a newcomer uses it.

btcli is bittensor's own command line, run unchanged by ``python -m simnet btcli`` (which only
points the SDK client btcli builds at simnet). Each command runs as its own process with
``--json``; it must exit 0, and what it prints must agree with the chain read independently
through the SDK. The fast tests cover the newcomer's path (create a wallet, fund it from the
dev account, register a miner hotkey, stake, read balance, metagraph and hyperparameters);
the slow one adds the rest of the commands the docs list (subnet creation, a validator,
unstaking, overview, subnets list, weights).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest

from simnet.client import SimSubstrate
from simnet.state import ALICE_SEED, dev_address
from template.chain.simnet_process import DevWallet, SimnetProcess

REPO = Path(__file__).resolve().parents[1]
RAO = 10**9
OWNER = DevWallet.from_uri("//Alice")
FUNDING_TAO = 50
STAKE_TAO = 20


def run(coro):
    return asyncio.run(coro)


class Btcli:
    """``python -m simnet btcli --url URL <args> --wallet-path W --json`` in a child process,
    with its own HOME (btcli's caches) and no terminal (nothing may prompt)."""

    def __init__(self, url: str, root: Path):
        self.url = url
        self.wallets = root / "wallets"
        self.env = dict(os.environ, HOME=str(root / "home"), PYTHONPATH=str(REPO),
                        COLUMNS="200", NO_COLOR="1")
        for name in ("BT_NETWORK", "BT_WALLET", "BT_WALLET_HOTKEY", "BT_WALLET_PATH"):
            self.env.pop(name, None)

    def start(self, *args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "simnet", "btcli", "--url", self.url, *args,
                   "--wallet-path", str(self.wallets), "--json"]
        return subprocess.Popen(command, cwd=str(REPO), env=self.env, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    @staticmethod
    def output(process: subprocess.Popen) -> Any:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"{process.args[4:]} exited {process.returncode}:\n{out}\n{err}"
        return json.loads(out)

    def __call__(self, *args: str) -> Any:
        return self.output(self.start(*args))

    def together(self, *commands: list[str]) -> list[Any]:
        """Commands that do not depend on each other, run at once."""
        processes = [self.start(*command) for command in commands]
        return [self.output(process) for process in processes]


async def free_rao(client: bt.Client, coldkey: str) -> int:
    return int((await client.balances.get(coldkey)).rao)


@dataclass
class Newcomer:
    sim: SimnetProcess
    netuid: int
    wallets: Path
    out: dict[str, Any]      # each command's JSON
    free: dict[str, int]     # the coldkey's free rao, read through the SDK after each step
    burn_rao: int            # the registration price just before `subnets register`


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    root = tmp_path_factory.mktemp("btcli-newcomer")
    with SimnetProcess(root / "chain.db") as sim:
        async def owner_starts_a_subnet() -> int:
            async with sim.client() as client:
                netuid = (await client.execute(bt.RegisterSubnet(), OWNER)).data["netuid"]
                assert (await client.execute(bt.StartCall(netuid=netuid), OWNER)).success
                return netuid

        netuid = run(owner_starts_a_subnet())
        cli = Btcli(sim.url, root)
        out: dict[str, Any] = {}
        free: dict[str, int] = {}

        async def after(step: str, coldkey: str) -> None:
            async with sim.client() as client:
                free[step] = await free_rao(client, coldkey)

        async def burn() -> int:
            async with sim.client() as client:
                return int((await client.subnets.info(netuid)).burn.rao)

        out["create"], out["dev"] = cli.together(
            ["wallet", "create", "-w", "me", "-H", "miner", "--no-password"],
            ["wallet", "regen-coldkey", "-w", "dev", "--seed", ALICE_SEED, "--no-password"])
        me = out["create"]["coldkey_ss58"]
        out["transfer"] = cli("wallet", "transfer", "-w", "dev", "--dest", me,
                              "--amount", str(FUNDING_TAO), "--yes")
        run(after("transfer", me))
        burn_rao = run(burn())
        out["register"] = cli("subnets", "register", "--netuid", str(netuid),
                              "-w", "me", "-H", "miner", "--yes")
        run(after("register", me))
        out["stake"] = cli("stake", "add", "--netuid", str(netuid), "-w", "me", "-H", "miner",
                           "--amount", str(STAKE_TAO), "--yes")
        run(after("stake", me))
        out["balance"], out["metagraph"], out["hyperparameters"] = cli.together(
            ["wallet", "balance", "-w", "me"],
            ["subnets", "metagraph", str(netuid)],
            ["subnets", "hyperparameters", str(netuid)])
        yield Newcomer(sim, netuid, cli.wallets, out, free, burn_rao)


def miner_hotkey(newcomer: Newcomer) -> str:
    pub = newcomer.wallets / "me" / "hotkeys" / "minerpub.txt"
    return json.loads(pub.read_text())["ss58Address"]


def test_wallet_create_writes_the_coldkey_it_reports(newcomer):
    pub = json.loads((newcomer.wallets / "me" / "coldkeypub.txt").read_text())
    assert pub["ss58Address"] == newcomer.out["create"]["coldkey_ss58"]
    assert (newcomer.wallets / "me" / "hotkeys" / "miner").is_file()


def test_the_documented_dev_seed_is_the_funded_sudo_account(newcomer):
    assert newcomer.out["dev"]["ss58"] == dev_address("//Alice")


def test_a_transfer_from_the_dev_account_funds_the_new_coldkey(newcomer):
    assert newcomer.out["transfer"]["success"] is True
    assert newcomer.free["transfer"] == FUNDING_TAO * RAO


def test_register_burns_the_price_and_gives_the_miner_hotkey_a_uid(newcomer):
    result = newcomer.out["register"]
    assert result["success"] is True and result["data"]["shielded"] is True
    assert newcomer.free["transfer"] - newcomer.free["register"] == newcomer.burn_rao

    async def chain():
        substrate = SimSubstrate(newcomer.sim.url)
        async with bt.Client("ws://localsim.invalid", substrate=substrate) as client:
            uid = await client.read("uid", hotkey_ss58=miner_hotkey(newcomer),
                                    netuid=newcomer.netuid)
            inner = await substrate.find_extrinsic(result["data"]["inner_extrinsic_hash"],
                                                   result["block_hash"])
            return uid, inner
    uid, inner = run(chain())
    assert uid is not None
    assert inner is not None and inner.success  # the shielded burned_register itself


def test_stake_add_puts_the_tao_on_the_hotkey_as_alpha(newcomer):
    assert newcomer.out["stake"]["success"] is True
    assert newcomer.free["register"] - newcomer.free["stake"] == STAKE_TAO * RAO

    async def staked():
        async with newcomer.sim.client() as client:
            return await client.read("stake", coldkey_ss58=newcomer.out["create"]["coldkey_ss58"],
                                     hotkey_ss58=miner_hotkey(newcomer), netuid=newcomer.netuid)
    assert run(staked()).rao == STAKE_TAO * RAO  # simnet's pool swaps 1:1


def test_balance_shows_the_free_tao_and_the_stake_on_chain(newcomer):
    balance = newcomer.out["balance"]
    assert round(balance["free_tao"] * RAO) == newcomer.free["stake"]
    assert balance["stake_value_tao"] == pytest.approx(STAKE_TAO)
    assert balance["stake_positions"] == 1


def test_metagraph_json_is_the_chains_metagraph(newcomer):
    async def metagraph():
        async with newcomer.sim.client() as client:
            return await client.subnets.metagraph(newcomer.netuid)
    mg = run(metagraph())
    shown = newcomer.out["metagraph"]
    assert shown["hotkeys"] == mg.hotkeys and shown["coldkeys"] == mg.coldkeys
    assert shown["total_stake"] == [n.total_stake.rao for n in mg.neurons]
    uid = shown["hotkeys"].index(miner_hotkey(newcomer))
    assert shown["coldkeys"][uid] == newcomer.out["create"]["coldkey_ss58"]
    assert shown["total_stake"][uid] == STAKE_TAO * RAO


def test_hyperparameters_json_is_the_chains_hyperparameters(newcomer):
    async def chain():
        async with newcomer.sim.client() as client:
            params = await client.read("subnet_hyperparameters", netuid=newcomer.netuid)
            mult = await client.query(bt.storage.SubtensorModule.BurnIncreaseMult,
                                      [newcomer.netuid])
            auto_lock = await client.query(("SubtensorModule", "OwnerCutAutoLockEnabled"),
                                           [newcomer.netuid])
            return params, mult, auto_lock
    params, mult, auto_lock = run(chain())
    shown = newcomer.out["hyperparameters"]
    assert {name: shown[name] for name in params} == params
    assert shown["burn_increase_mult"] == mult["bits"]
    assert shown["burn_increase_mult"] / 2**64 == pytest.approx(1.26)
    assert shown["owner_cut_auto_lock_enabled"] is auto_lock is False


# -- the other commands the docs list: btcli alone from a fresh chain (slow: ~20 commands) --


@dataclass
class Operator:
    sim: SimnetProcess
    netuid: int
    me: str                  # the newcomer's coldkey
    hotkeys: dict[str, str]  # name -> ss58
    out: dict[str, Any]


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """The dev account creates and starts a subnet and turns commit-reveal off; the newcomer
    registers a miner and a validator, stakes, unstakes part, and (after the epoch that gives
    the validator its permit) sets weights; then the read commands run."""
    root = tmp_path_factory.mktemp("btcli-operator")
    with SimnetProcess(root / "chain.db") as sim:
        cli = Btcli(sim.url, root)
        out: dict[str, Any] = {}
        out["create"], _ = cli.together(
            ["wallet", "create", "-w", "me", "-H", "miner", "--no-password"],
            ["wallet", "regen-coldkey", "-w", "dev", "--seed", ALICE_SEED, "--no-password"])
        cli.together(["wallet", "new-hotkey", "-w", "me", "-H", "validator"],
                     ["wallet", "new-hotkey", "-w", "dev", "-H", "owner"])
        me = out["create"]["coldkey_ss58"]
        hotkeys = {name: json.loads((cli.wallets / "me" / "hotkeys" / f"{name}pub.txt")
                                    .read_text())["ss58Address"] for name in ("miner", "validator")}
        out["transfer"] = cli("wallet", "transfer", "-w", "dev", "--dest", me, "--amount", "500",
                              "--yes")
        out["subnet"] = cli("subnets", "create", "-w", "dev", "-H", "owner", "--yes")
        netuid = str(out["subnet"]["data"]["netuid"])
        out["start"] = cli("hparams", "start", "--netuid", netuid, "-w", "dev", "--yes")
        out["cr_off"] = cli("hparams", "set", "--netuid", netuid, "--name",
                            "commit_reveal_weights_enabled", "--value", "false", "-w", "dev",
                            "--yes")
        for name in ("miner", "validator"):
            out[f"register_{name}"] = cli("subnets", "register", "--netuid", netuid,
                                          "-w", "me", "-H", name, "--yes")
        out["stake_add"] = cli("stake", "add", "--netuid", netuid, "-w", "me", "-H", "validator",
                               "--amount", "100", "--yes")
        out["stake_remove"] = cli("stake", "remove", "--netuid", netuid, "-w", "me",
                                  "-H", "validator", "--amount", "10", "--yes")
        sim.advance(101)  # past weights_rate_limit, and epochs: the validator holds a permit
        out["uids"] = cli("wallet", "registrations", "-w", "me")
        miner_uid = next(r["uid"] for h in out["uids"][0]["hotkeys"] if h["name"] == "miner"
                         for r in h["registrations"])
        out["weights_set"] = cli("misc", "weights", "set", "--netuid", netuid,
                                 "--uids", str(miner_uid), "--weights", "1.0",
                                 "-w", "me", "-H", "validator", "--yes")
        (out["weights"], out["overview"], out["list"], out["stakes"], out["show"],
         out["balance"]) = cli.together(
            ["query", "weights", "--netuid", netuid], ["wallet", "overview", "-w", "me"],
            ["subnets", "list"], ["stake", "list", "-w", "me"], ["subnets", "show", netuid],
            ["wallet", "balance", "-w", "me"])
        yield Operator(sim, int(netuid), me, hotkeys, out)


def chain_read(sim: SimnetProcess, read):
    async def go():
        async with sim.client() as client:
            return await read(client)
    return run(go())


@pytest.mark.slow
def test_btcli_creates_starts_and_configures_a_subnet(operator):
    out, netuid = operator.out, operator.netuid
    assert all(out[step]["success"] for step in ("subnet", "start", "cr_off"))

    async def read(client):
        owner = await client.query(bt.storage.SubtensorModule.SubnetOwner, [netuid])
        first = await client.query(bt.storage.SubtensorModule.FirstEmissionBlockNumber, [netuid])
        return owner, first, await client.subnets.commit_reveal_enabled(netuid)
    owner, first_emission, commit_reveal = chain_read(operator.sim, read)
    assert owner == dev_address("//Alice") and first_emission is not None
    assert commit_reveal is False


@pytest.mark.slow
def test_registrations_list_the_uids_the_chain_gave(operator):
    rows = {h["name"]: h["registrations"] for h in operator.out["uids"][0]["hotkeys"]}

    async def read(client):
        return {name: await client.read("uid", hotkey_ss58=hotkey, netuid=operator.netuid)
                for name, hotkey in operator.hotkeys.items()}
    uids = chain_read(operator.sim, read)
    assert rows == {name: [{"netuid": operator.netuid, "uid": uid}] for name, uid in uids.items()}


@pytest.mark.slow
def test_stake_remove_returns_the_alpha_as_tao(operator):
    assert operator.out["stake_add"]["success"] and operator.out["stake_remove"]["success"]
    shown = {row["hotkey"]: row["stake_amount"] for row in operator.out["stakes"]}

    async def read(client):
        return {hotkey: (await client.read("stake", coldkey_ss58=operator.me,
                                           hotkey_ss58=hotkey, netuid=operator.netuid)).rao
                for hotkey in operator.hotkeys.values()}
    staked = chain_read(operator.sim, read)
    assert {hotkey: round(amount * RAO) for hotkey, amount in shown.items()} == \
        {hotkey: rao for hotkey, rao in staked.items() if rao}
    # 100 staked, 10 unstaked, plus the validator's dividends since (alpha, 1:1)
    assert staked[operator.hotkeys["validator"]] >= 90 * RAO


@pytest.mark.slow
def test_overview_and_balance_agree_with_the_chain(operator):
    overview, balance = operator.out["overview"][0], operator.out["balance"]

    async def read(client):
        positions = await client.read("stake_for_coldkey", coldkey_ss58=operator.me)
        return await free_rao(client, operator.me), {p.hotkey: p.stake.rao for p in positions}
    free, staked = chain_read(operator.sim, read)
    for shown in (overview, balance):
        assert round(shown["free_tao"] * RAO) == free
        assert round(shown["stake_value_tao"] * RAO) == sum(staked.values())  # price 1.0
    assert {row["hotkey"]: round(row["stake_amount"] * RAO) for row in overview["stakes"]} \
        == staked


@pytest.mark.slow
def test_subnets_list_and_show_agree_with_the_chain(operator):
    netuid = operator.netuid

    async def read(client):
        info = await client.subnets.info(netuid)
        price = await client.read("alpha_price", netuid=netuid)
        return info, price["tao_per_alpha"]
    info, price = chain_read(operator.sim, read)
    (listed,) = [row for row in operator.out["list"] if row["netuid"] == netuid]
    assert [row["netuid"] for row in operator.out["list"]] == [netuid]
    for shown in (listed, operator.out["show"]):
        assert shown["tempo"] == info.tempo and shown["neurons"] == info.neuron_count
        assert round(shown["burn_tao"] * RAO) == info.burn.rao
    assert listed["price_tao_per_alpha"] == price == 1.0
    assert operator.out["show"]["owner_coldkey"] == dev_address("//Alice")


@pytest.mark.slow
def test_weights_set_by_btcli_read_back_from_storage(operator):
    assert operator.out["weights_set"]["success"] is True

    async def read(client):
        rows = await client.query_map(bt.storage.SubtensorModule.Weights, [operator.netuid])
        validator = await client.read("uid", hotkey_ss58=operator.hotkeys["validator"],
                                      netuid=operator.netuid)
        miner = await client.read("uid", hotkey_ss58=operator.hotkeys["miner"],
                                  netuid=operator.netuid)
        return dict(rows), validator, miner
    rows, validator, miner = chain_read(operator.sim, read)
    assert rows == {validator: [(miner, 65535)]}
    assert operator.out["weights"] == {str(validator): {str(miner): 1.0}}
