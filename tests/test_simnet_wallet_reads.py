"""The reads btcli's wallet, stake and subnet commands make, answered by simnet from its state
and observed through the real SDK (the same read names btcli calls)."""

from __future__ import annotations

import asyncio

import bittensor as bt
import pytest
from bittensor.result import ChainError
from bittensor.sp_core import Keypair

from simnet.client import SimSubstrate
from simnet.runtime_api import MEV_KEY_BYTES, UnknownItem, query
from simnet.state import ALICE_SEED, ChainState, dev_address, new_subnet
from simnet.store import Store
from template.chain.simnet_process import DevWallet, SimnetProcess

RAO = 10**9
OWNER = DevWallet.from_uri("//Alice")
STAKER = DevWallet.from_uri("//Bob")
OTHER = DevWallet.from_uri("//Charlie")


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Alice owns two subnets; on the first Bob and Charlie register (burned, MEV-shielded) and
    Bob stakes 50 TAO on his hotkey and 7 on Charlie's."""
    with SimnetProcess(tmp_path_factory.mktemp("wallet-reads") / "chain.db") as sim:
        async def setup():
            async with sim.client() as client:
                netuids = [(await client.execute(bt.RegisterSubnet(), OWNER)).data["netuid"]
                           for _ in range(2)]
                for netuid in netuids:
                    assert (await client.execute(bt.StartCall(netuid=netuid), OWNER)).success
                registered = [await client.execute(bt.BurnedRegister(netuid=netuids[0]), w)
                              for w in (STAKER, OTHER)]
                for hotkey, tao in ((STAKER.hotkey, 50), (OTHER.hotkey, 7)):
                    assert (await client.execute(bt.AddStake(
                        hotkey_ss58=hotkey.ss58_address, netuid=netuids[0], amount_tao=tao),
                        STAKER)).success
                return netuids, registered
        netuids, registered = run(setup())
        yield sim, netuids, registered


def read(sim, name, **params):
    async def go():
        async with sim.client() as client:
            return await client.read(name, **params)
    return run(go())


def test_the_shield_key_is_in_storage_and_burned_registration_goes_through_it(chain):
    sim, _, registered = chain
    key = read(sim, "mev_shield_next_key")
    assert key.startswith("0x") and len(bytes.fromhex(key[2:])) == MEV_KEY_BYTES

    async def client_key():
        return await SimSubstrate(sim.url).mev_next_key()
    assert run(client_key()) == bytes.fromhex(key[2:])
    assert all(r.success and r.data["shielded"] for r in registered)


def test_alpha_prices_list_every_subnet_at_the_price_its_pool_trades(chain):
    sim, netuids, _ = chain
    prices = read(sim, "alpha_prices")
    assert prices == {n: read(sim, "alpha_price", netuid=n)["tao_per_alpha"] for n in netuids}
    assert set(prices.values()) == {1.0}


def test_staking_leaves_the_pool_reserves_so_the_metagraph_price_agrees(chain):
    sim, netuids, _ = chain

    async def go():
        async with sim.client() as client:
            return await client.subnets.metagraph(netuids[0])
    mg = run(go())
    assert mg.raw["tao_in"] == mg.raw["alpha_in"] == 100 * RAO  # the lock, after 57 TAO staked
    assert mg.price == 1.0


def test_stake_availability_is_the_coldkeys_stake_over_its_hotkeys_none_locked(chain):
    sim, netuids, _ = chain
    rows = read(sim, "stake_availability_for_coldkey",
                coldkey_ss58=STAKER.coldkey.ss58_address, netuids=netuids)
    assert [(r["netuid"], r["total"].rao, r["locked"].rao, r["available"].rao) for r in rows] \
        == [(netuids[0], 57 * RAO, 0, 57 * RAO), (netuids[1], 0, 0, 0)]


def test_stake_and_unstake_quotes_swap_one_to_one_without_fees(chain):
    sim, netuids, _ = chain
    unstake = read(sim, "quote_unstake", netuid=netuids[0], amount_alpha=3.5)
    stake = read(sim, "quote_stake", netuid=netuids[0], amount_tao=2)
    assert (unstake.tao.rao, unstake.alpha.rao, unstake.tao_fee.rao) == (3_500_000_000,) * 2 + (0,)
    assert (stake.tao.rao, stake.alpha.rao, stake.alpha_fee.rao) == (2 * RAO, 2 * RAO, 0)


def test_owner_cut_auto_lock_is_off_on_a_new_subnet_and_only_its_owner_sets_it(chain):
    sim, netuids, _ = chain
    item = ("SubtensorModule", "OwnerCutAutoLockEnabled")

    async def go():
        async with sim.client() as client:
            before = await client.query(item, [netuids[1]])
            intent = bt.SetHyperparameter(netuid=netuids[1], name="owner_cut_auto_lock_enabled",
                                          value=True)
            stranger = await client.execute(intent, STAKER)
            owner = await client.execute(intent, OWNER)
            return before, stranger, owner, await client.query(item, [netuids[1]])
    before, stranger, owner, after = run(go())
    assert before is False and after is True
    assert not stranger.success and stranger.error.name == "BadOrigin"
    assert owner.success


def test_root_baskets_and_locks_read_as_on_a_chain_where_nobody_used_them(chain):
    sim, _, _ = chain
    coldkey = STAKER.coldkey.ss58_address
    assert read(sim, "root_basket_owed", coldkey_ss58=coldkey).rao == 0
    assert read(sim, "root_basket_owed_breakdown", coldkey_ss58=coldkey) == []
    assert read(sim, "locks_for_coldkey", coldkey_ss58=coldkey) == []


@pytest.mark.parametrize("item", [("SubtensorModule", "NoSuchMap"), ("Proxy", "Proxies")])
def test_a_storage_map_simnet_does_not_know_is_refused_not_answered_empty(chain, item):
    sim, _, _ = chain

    async def go():
        async with sim.client() as client:
            return await client.query_map(item, [STAKER.coldkey.ss58_address])
    with pytest.raises(ChainError, match=f"map {item[0]}.{item[1]}"):
        run(go())


def test_a_subnet_stored_before_owner_cut_auto_lock_existed_reads_it_as_off():
    state = ChainState(Store(":memory:"))
    subnet = new_subnet(1, dev_address("//Alice"), dev_address("//Bob"), 0, 100 * RAO)
    del subnet["owner_cut_auto_lock_enabled"]
    state.save_subnet(subnet)
    assert query(state, "SubtensorModule", "OwnerCutAutoLockEnabled", [1]) is False
    with pytest.raises(UnknownItem):
        query(state, "SubtensorModule", "NoSuchItem", [1])


def test_the_documented_alice_seed_derives_the_sudo_account():
    assert Keypair.create_from_seed(bytes.fromhex(ALICE_SEED[2:])).ss58_address == \
        dev_address("//Alice")


def test_total_alpha_staked_is_the_sum_of_the_subnets_stake(chain):
    sim, netuids, _ = chain
    assert read(sim, "total_alpha_staked", netuid=netuids[0]).rao == 57 * RAO
    assert read(sim, "total_alpha_staked", netuid=netuids[1]).rao == 0


def test_auto_stake_reads_as_never_configured(chain):
    sim, netuids, _ = chain
    coldkey = STAKER.coldkey.ss58_address
    assert read(sim, "auto_stake_all", coldkey_ss58=coldkey) == []
    assert read(sim, "auto_stake", coldkey_ss58=coldkey, netuid=netuids[0]) is None


def test_pending_timelocked_commits_are_listed_by_epoch(chain):
    sim, _, _ = chain

    async def commit():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), OWNER)).data["netuid"]
            limit = await client.compose(bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(
                netuid=netuid, weights_set_rate_limit=0))
            assert (await client.submit_call(bt.calls.Sudo.sudo(call=limit), OWNER)).success
            call = bt.calls.SubtensorModule.commit_timelocked_weights(
                netuid=netuid, commit=b"\x01" * 64, reveal_round=123, commit_reveal_version=4)
            result = await client.submit_call(call, OWNER, signer="hotkey")
            assert result.success, result.error
            epoch = await client.query(bt.storage.SubtensorModule.SubnetEpochIndex, [netuid])
            return netuid, epoch, int(result.extrinsic_id.split("-")[0])
    netuid, epoch, block = run(commit())
    commits = read(sim, "timelocked_weight_commits", netuid=netuid)
    assert list(commits) == [epoch]
    (entry,) = commits[epoch]
    assert (entry["hotkey"], entry["commit_block"], entry["reveal_round"]) == \
        (OWNER.hotkey.ss58_address, block, 123)
    assert entry["ciphertext"] == "0x" + "01" * 64
