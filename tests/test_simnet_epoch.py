"""simnet's metagraph after an epoch equals what ``yuma.epoch`` predicts from the same inputs,
read back through the SDK just before the epoch block."""

from __future__ import annotations

import asyncio

import bittensor as bt
import pytest

from template.chain.simnet_process import DevWallet, SimnetProcess
from simnet.yuma import epoch

OWNER = DevWallet.from_uri("//Alice")
VALIDATORS = [DevWallet.from_uri("//Bob"), DevWallet.from_uri("//Charlie")]
MINERS = [DevWallet.from_uri(f"//Miner{i}") for i in range(3)]
WEIGHTS = [{3: 0.6, 4: 0.3, 5: 0.1}, {3: 0.5, 4: 0.5}]


def run(coro):
    return asyncio.run(coro)


async def sudo(client, call):
    return await client.submit_call(bt.calls.Sudo.sudo(call=await client.compose(call)), OWNER)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("simnet-epoch") / "chain.db") as process:
        yield process


async def epoch_inputs(client, netuid: int) -> dict:
    """The ``epoch`` state dict, rebuilt from SDK reads."""
    mg = await client.subnets.metagraph(netuid, commitments=False)
    full = await client.neurons.all(netuid, lite=False)
    hp = await client.read("subnet_hyperparameters", netuid=netuid)
    lms = await client.query(bt.storage.SubtensorModule.LastMechansimStepBlock, [netuid])
    n = len(mg.neurons)
    return {
        "n": n, "tempo": mg.tempo, "owner_uid": mg.hotkeys.index(mg.owner_hotkey),
        "stake_rao": [x.total_stake.rao for x in mg.neurons],
        "reg": [x.block_at_registration for x in mg.neurons],
        "last_update": [x.last_update for x in mg.neurons],
        "permit": [x.validator_permit for x in mg.neurons],
        "weights": [[tuple(e) for e in x.raw["weights"]] for x in full],
        "bonds": [[tuple(e) for e in x.raw["bonds"]] for x in full],
        "lms": int(lms), "kappa": hp["kappa"], "bonds_penalty": hp["bonds_penalty"],
        "bonds_moving_average": hp["bonds_moving_avg"], "yuma3": hp["yuma3_enabled"],
        "liquid_alpha": hp["liquid_alpha_enabled"], "alpha_low": hp["alpha_low"],
        "alpha_high": hp["alpha_high"], "steepness": hp["alpha_sigmoid_steepness"],
        "max_validators": hp["max_validators"], "stake_threshold": 0,
        "activity_factor": hp["activity_cutoff_factor"],
        "commit_reveal": hp["commit_reveal_weights_enabled"], "commit_block": [None] * n,
    }


def test_metagraph_matches_yuma_epoch_for_a_fixed_weight_matrix(sim):
    async def setup():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), OWNER)).data["netuid"]
            for call in (
                bt.calls.AdminUtils.sudo_set_commit_reveal_weights_enabled(netuid=netuid,
                                                                           enabled=False),
                bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(netuid=netuid,
                                                                    weights_set_rate_limit=0),
            ):
                assert (await sudo(client, call)).success
            assert (await client.execute(bt.StartCall(netuid=netuid), OWNER)).success
            for wallet in MINERS:
                assert (await client.execute(bt.Transfer(
                    dest_ss58=wallet.coldkey.ss58_address, amount_tao=10), OWNER)).success
            for wallet in VALIDATORS + MINERS:
                assert (await client.execute(bt.BurnedRegister(netuid=netuid), wallet)).success
            for wallet, amount in zip(VALIDATORS, (300, 100)):
                assert (await client.execute(bt.AddStake(
                    hotkey_ss58=wallet.hotkey.ss58_address, netuid=netuid, amount_tao=amount),
                    wallet)).success
            return netuid
    netuid = run(setup())
    sim.advance(11)  # one epoch: the validators get their permits

    async def set_weights():
        async with sim.client() as client:
            for wallet, weights in zip(VALIDATORS, WEIGHTS):
                result = await client.execute(bt.SetWeights(netuid=netuid, weights=weights),
                                              wallet)
                assert result.success, result.error
    run(set_weights())

    for _ in range(3):  # several epochs, so bonds and stake evolve between them
        async def before_epoch():
            async with sim.client() as client:
                status = await client.read("epoch_status", netuid=netuid)
                return status["next_epoch_start_block"], await client.block()
        next_epoch, head = run(before_epoch())
        if next_epoch - 1 > head:
            sim.advance(next_epoch - 1 - head)

        async def inputs_then_epoch():
            async with sim.client() as client:
                inputs = await epoch_inputs(client, netuid)
            assert sim.advance(1) == next_epoch
            async with sim.client() as client:
                return inputs, await client.subnets.metagraph(netuid, commitments=False)
        inputs, mg = run(inputs_then_epoch())
        predicted = epoch(inputs, next_epoch, 0)
        assert mg.last_step == next_epoch
        assert mg.raw["incentives"] == predicted["incentive"]
        assert mg.raw["dividends"] == predicted["dividends"]
        assert mg.raw["consensus"] == predicted["consensus"]
        assert mg.raw["validator_trust"] == predicted["vtrust"]
        assert [n.validator_permit for n in mg.neurons] == predicted["permit"]

    incentive = {n.uid: n.incentive for n in mg.neurons}
    assert incentive[3] > incentive[4] > incentive[5] > 0
    assert all(mg.neurons[uid].dividends > 0 for uid in (1, 2))
