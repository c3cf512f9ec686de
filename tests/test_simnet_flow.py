"""The whole subnet lifecycle on simnet, through the real SDK (manual clock, no sleeps)."""

from __future__ import annotations

import asyncio

import bittensor as bt
import pytest

from template.chain.simnet_process import DevWallet, SimnetProcess, create_wallet


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("simnet") / "chain.db") as process:
        yield process


def run(coro):
    return asyncio.run(coro)


def test_subnet_lifecycle_and_restart(sim, tmp_path):
    owner = DevWallet.from_uri("//Alice")
    validator = create_wallet(tmp_path, "validator")
    miners = [create_wallet(tmp_path, f"miner{i}") for i in range(3)]
    state = {}

    async def setup():
        async with sim.client() as client:
            for wallet in [validator, *miners]:
                result = await client.execute(
                    bt.Transfer(dest_ss58=wallet.coldkeypub.ss58_address, amount_tao=1000), owner)
                assert result.success, result.error
            balance = await client.balances.get(validator.coldkeypub.ss58_address)
            assert balance.tao == 1000

            result = await client.execute(bt.RegisterSubnet(), owner)
            assert result.success, result.error
            netuid = state["netuid"] = result.data["netuid"]
            assert await client.read("uid", hotkey_ss58=owner.hotkey.ss58_address,
                                     netuid=netuid) == 0
            assert await client.subnets.commit_reveal_enabled(netuid) is True
            result = await client.execute(bt.SetHyperparameter(
                netuid=netuid, name="commit_reveal_weights_enabled", value=False), owner)
            assert result.success, result.error
            assert await client.subnets.commit_reveal_enabled(netuid) is False
            assert (await client.execute(bt.StartCall(netuid=netuid), owner)).success

            for wallet in [validator, *miners]:
                result = await client.execute(bt.BurnedRegister(netuid=netuid), wallet)
                assert result.success, result.error
                assert result.data["shielded"] is True
            for port, miner in enumerate(miners, start=8091):
                result = await client.execute(
                    bt.ServeAxon(netuid=netuid, ip="127.0.0.1", port=port), miner)
                assert result.success, result.error
            result = await client.execute(bt.AddStake(
                hotkey_ss58=validator.hotkey.ss58_address, netuid=netuid, amount_tao=100),
                validator)
            assert result.success, result.error
            info = {"fields": [{"Raw5": "0x" + b"hello".hex()}]}
            result = await client.submit_call(bt.calls.Commitments.set_commitment(
                netuid=netuid, info=info), miners[0], signer="hotkey")
            assert result.success, result.error

    run(setup())
    netuid = state["netuid"]
    sim.advance(101)  # past weights_set_rate_limit (100) since registration; epochs run too

    async def weights_and_epochs():
        async with sim.client() as client:
            uids = [await client.read("uid", hotkey_ss58=m.hotkey.ss58_address, netuid=netuid)
                    for m in miners]
            assert uids == [2, 3, 4]
            result = await client.execute(bt.SetWeights(
                netuid=netuid, weights={2: 0.5, 3: 0.3, 4: 0.2}), validator)
            assert result.success, result.error
            assert (await client.read("weights", netuid=netuid))[1] == pytest.approx(
                {2: 0.5, 3: 0.3, 4: 0.2}, abs=1e-4)
            commitment = await client.read("commitment", netuid=netuid,
                                           hotkey_ss58=miners[0].hotkey.ss58_address)
            assert commitment.data == "hello"

    run(weights_and_epochs())
    sim.advance(35)  # three epochs at tempo 10

    async def read_metagraph():
        async with sim.client() as client:
            return await client.subnets.metagraph(netuid)

    mg = run(read_metagraph())
    by_hotkey = {n.hotkey: n for n in mg.neurons}
    v = by_hotkey[validator.hotkey.ss58_address]
    assert v.validator_permit and v.dividends > 0.99 and v.emission.rao > 0
    incentives = [by_hotkey[m.hotkey.ss58_address].incentive for m in miners]
    assert incentives == pytest.approx([0.5, 0.3, 0.2], abs=1e-3)
    assert all(by_hotkey[m.hotkey.ss58_address].emission.rao > 0 for m in miners)
    assert [by_hotkey[m.hotkey.ss58_address].axon for m in miners] == [
        "127.0.0.1:8091", "127.0.0.1:8092", "127.0.0.1:8093"]
    assert mg.neurons[2].commitment.value == "hello"
    assert v.total_stake.rao > 100 * 10**9  # staked 100 plus dividends

    sim.restart()
    after = run(read_metagraph())
    assert after.block >= mg.block
    assert after.hotkeys == mg.hotkeys
    assert [n.incentive for n in after.neurons] == [n.incentive for n in mg.neurons]
    assert [n.total_stake.rao for n in after.neurons] == [n.total_stake.rao for n in mg.neurons]
    assert after.neurons[2].axon == "127.0.0.1:8091"
