"""A neuron's start against a running simnet, through the real SDK: it registers for never more
than --neuron.max_burn_tao, a neuron that cannot register says so in one line (its balance, the
cost, what to do) instead of a traceback, and its chain handle keeps the last successful read
that /health reports."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from template.chain import bootstrap
from template.chain.neuron_chain import NeuronChain, RegistrationRefused
from template.chain.simnet_process import SimnetProcess, create_wallet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registration")
    with SimnetProcess(tmp / "chain.db", manual_clock=False, block_time=0.1) as sim:
        async def create() -> int:
            client = await sim.client().connect()
            try:
                owner = create_wallet(tmp / "wallets", "owner")
                await bootstrap.fund(client, bootstrap.DevWallet.from_uri("//Alice"), owner.coldkeypub.ss58_address,
                                     5_000)
                return await bootstrap.create_subnet(client, owner)
            finally:
                await client.close()

        yield sim, asyncio.run(create()), tmp / "wallets"


def register(sim, netuid: int, wallet, register: bool, cap: float) -> int:
    async def attempt() -> int:
        chain = await NeuronChain("sim", sim.url, wallet, netuid).connect()
        try:
            return await chain.ensure_registered(register, cap)
        finally:
            await chain.close()

    return asyncio.run(attempt())


def funded_wallet(sim, wallets: Path, name: str, tao: float):
    wallet = create_wallet(wallets, name)

    async def fund() -> None:
        client = await sim.client().connect()
        try:
            await bootstrap.fund(client, bootstrap.DevWallet.from_uri("//Alice"), wallet.coldkeypub.ss58_address, tao)
        finally:
            await client.close()

    asyncio.run(fund())
    return wallet


def test_an_unfunded_miner_says_in_one_line_what_registering_costs_and_what_to_do(subnet, tmp_path):
    sim, netuid, wallets = subnet
    create_wallet(wallets, "unfunded")
    done = subprocess.run([sys.executable, "-m", "neurons.miner", "--netuid", str(netuid), "--subtensor.network", "sim",
                           "--subtensor.chain_endpoint", sim.url, "--wallet.name", "unfunded", "--wallet.path",
                           str(wallets), "--logging.logging_dir", str(tmp_path), "--wandb.off"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "miner cannot start" in lines[0] and "Registering costs" in lines[0]
    assert "holds 0.0000 TAO" in lines[0] and "fund it" in lines[0]
    assert (tmp_path / "unfunded" / "default" / f"netuid{netuid}" / "miner" / "neuron.json").exists()


def test_without_neuron_register_nothing_is_spent(subnet):
    sim, netuid, wallets = subnet
    wallet = funded_wallet(sim, wallets, "careful", 100)
    with pytest.raises(RegistrationRefused, match=r"Registering costs .* TAO now .* or start with --neuron.register"):
        register(sim, netuid, wallet, register=False, cap=1_000)


def test_a_burn_above_the_cap_is_refused_and_below_it_paid(subnet):
    sim, netuid, wallets = subnet
    wallet = funded_wallet(sim, wallets, "capped", 100)
    with pytest.raises(RegistrationRefused, match=r"above --neuron.max_burn_tao 1e-06"):
        register(sim, netuid, wallet, register=True, cap=0.000001)
    uid = register(sim, netuid, wallet, register=True, cap=50)
    assert uid >= 1
    assert register(sim, netuid, wallet, register=False, cap=0) == uid  # registered: nothing to pay


def test_a_missing_subnet_is_named(subnet):
    sim, _, wallets = subnet
    with pytest.raises(RegistrationRefused, match="subnet 77 does not exist"):
        register(sim, 77, create_wallet(wallets, "lost"), register=True, cap=1)


def test_the_chain_handle_keeps_its_last_successful_read_fresh(subnet):
    sim, netuid, wallets = subnet

    async def read_twice():
        chain = await NeuronChain("sim", sim.url, create_wallet(wallets, "reader"), netuid).connect()
        reader = asyncio.create_task(chain.keep_reading(every=0.2))
        try:
            await asyncio.sleep(0.1)
            first = chain.last_read
            await asyncio.sleep(1.0)
            return first, chain.last_read
        finally:
            reader.cancel()
            await chain.close()

    first, later = asyncio.run(read_twice())
    assert first is not None and later.block > first.block and later.at_unix > first.at_unix


def test_a_record_commitment_keeps_the_digest_it_replaces_beside_it(subnet):
    """A commitment holds one value: a validator checking round r after the lead committed r+1
    must still find r's digest there (one back, not more: three fields at most)."""
    sim, netuid, wallets = subnet
    wallet = funded_wallet(sim, wallets, "committer", 100)
    register(sim, netuid, wallet, register=True, cap=50)
    digests = [f"{i:064x}" for i in (1, 2, 3)]

    async def commit_each() -> list[list[str]]:
        chain = await NeuronChain("sim", sim.url, wallet, netuid).connect()
        seen = []
        try:
            for digest in digests:
                assert await chain.commit_hash(digest, note="round")
                seen.append(await chain.committed_digest_list(chain.hotkey))
                await asyncio.sleep(0.3)  # the commitments pallet's rate limit is per block
        finally:
            await chain.close()
        return seen

    assert asyncio.run(commit_each()) == [[digests[0]], [digests[1], digests[0]], [digests[2], digests[1]]]
