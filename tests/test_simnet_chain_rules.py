"""simnet chain rules through the real SDK, each asserting subtensor's error name: the
set_weights check ORDER, commit-reveal v4 with the reveal hook (§9.3),
UID pruning with immunity and the owner's immortality (§8.3), the registration price,
AdminUtils origins and the admin freeze window (§3, §10.3), stake reads, the manual clock."""

from __future__ import annotations

import asyncio

import bittensor as bt
import pytest

from template.chain.simnet_process import DevWallet, SimnetProcess

ALICE = DevWallet.from_uri("//Alice")      # sudo
OWNER = DevWallet.from_uri("//Bob")        # owner of the weights subnet
VALI = DevWallet.from_uri("//Charlie")     # staked validator (permit after an epoch)
MINER = DevWallet.from_uri("//Dave")       # miner: no stake, no permit
IDLE = DevWallet.from_uri("//Ferdie")      # registered, never weighted: no stake, no permit
STRANGER = DevWallet.from_uri("//Eve")     # funded, never registered on the weights subnet
ST = bt.storage.SubtensorModule
AU = bt.calls.AdminUtils


def run(coro):
    return asyncio.run(coro)


def error_name(result) -> str:
    assert not result.success, "expected the chain to refuse"
    return result.error.name


async def sudo(client, call):
    return await client.submit_call(bt.calls.Sudo.sudo(call=await client.compose(call)), ALICE)


async def ok_sudo(client, *calls):
    for call in calls:
        result = await sudo(client, call)
        assert result.success, (call.function, result.error)


async def raw_weights(client, wallet, netuid, dests, weights, version_key=0, mecid=0):
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=netuid, mecid=mecid, dests=dests, weights=weights, version_key=version_key)
    return await client.submit_call(call, wallet, signer="hotkey")


async def fund(client, wallet, tao):
    result = await client.execute(
        bt.Transfer(dest_ss58=wallet.coldkey.ss58_address, amount_tao=tao), ALICE)
    assert result.success, result.error


async def new_subnet(client, owner, *calls, cr=False, start=True):
    netuid = (await client.execute(bt.RegisterSubnet(), owner)).data["netuid"]
    await ok_sudo(client, AU.sudo_set_commit_reveal_weights_enabled(netuid=netuid, enabled=cr),
                  *[c(netuid) for c in calls])
    if start:
        assert (await client.execute(bt.StartCall(netuid=netuid), owner)).success
    return netuid


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("simnet-chain-rules") / "chain.db") as process:
        yield process


@pytest.fixture(scope="module")
def subnet(sim):
    """OWNER's subnet, CR off: uid 1 VALI (staked, permit after the first epoch), uid 2 MINER,
    uid 3 IDLE."""
    async def setup():
        async with sim.client() as client:
            netuid = await new_subnet(client, OWNER)
            for wallet in (VALI, MINER, IDLE):
                assert (await client.execute(bt.BurnedRegister(netuid=netuid), wallet)).success
            assert (await client.execute(bt.AddStake(hotkey_ss58=VALI.hotkey.ss58_address,
                                                     netuid=netuid, amount_tao=50), VALI)).success
            return netuid
    netuid = run(setup())
    sim.advance(101)  # past the rate limit since registration; epochs give VALI its permit
    return netuid


@pytest.fixture
def rate_limit(sim, subnet):
    """Set WeightsSetRateLimit for one test (default: 0), restore 100 afterwards."""
    async def set_limit(value):
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_weights_set_rate_limit(
                netuid=subnet, weights_set_rate_limit=value))
    run(set_limit(0))
    yield set_limit
    run(set_limit(100))


# -- set_weights: each check, and the order between neighbours (§9.1) -----------------------

def test_weights_on_root_netuid_fail_before_the_length_check(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, VALI, 0, [1, 2], [1])
    assert error_name(run(go())) == "CanNotSetRootNetworkWeights"


def test_unequal_lengths_fail_before_the_registration_check(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, STRANGER, subnet, [1, 2], [1])
    assert error_name(run(go())) == "WeightVecNotEqualSize"


@pytest.mark.parametrize("netuid_of, mecid", [(lambda n: n, 1), (lambda n: 999, 0)])
def test_missing_mechanism_is_refused(sim, subnet, netuid_of, mecid):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, STRANGER, netuid_of(subnet), [1], [1], mecid=mecid)
    assert error_name(run(go())) == "MechanismDoesNotExist"


def test_more_uids_than_the_subnet_fail_before_the_registration_check(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, STRANGER, subnet, [0, 1, 2, 3, 4], [1] * 5)
    assert error_name(run(go())) == "UidsLengthExceedUidsInSubNet"


def test_unregistered_hotkey_fails_before_the_version_key(sim, subnet):
    async def go():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_weights_version_key(netuid=subnet,
                                                                   weights_version_key=7))
            try:
                return await raw_weights(client, STRANGER, subnet, [1], [1], version_key=0)
            finally:
                await ok_sudo(client, AU.sudo_set_weights_version_key(netuid=subnet,
                                                                       weights_version_key=0))
    assert error_name(run(go())) == "HotKeyNotRegisteredInSubNet"


def test_stake_threshold_fails_before_the_version_key_and_exempts_the_owner(sim, subnet):
    async def go():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_stake_threshold(min_stake=10**12),
                          AU.sudo_set_weights_version_key(netuid=subnet, weights_version_key=7))
            try:
                assert await client.query(ST.StakeThreshold, []) == 10**12
                miner = await raw_weights(client, MINER, subnet, [2], [1], version_key=0)
                owner = await raw_weights(client, OWNER, subnet, [2], [1], version_key=0)
                return miner, owner
            finally:
                await ok_sudo(client, AU.sudo_set_stake_threshold(min_stake=0),
                              AU.sudo_set_weights_version_key(netuid=subnet,
                                                              weights_version_key=0))
    miner, owner = run(go())
    assert error_name(miner) == "NotEnoughStakeToSetWeights"
    assert error_name(owner) == "IncorrectWeightVersionKey"  # owner passed the stake check


def test_version_key_fails_before_the_rate_limit(sim, subnet):
    async def go():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_weights_version_key(netuid=subnet,
                                                                   weights_version_key=7))
            try:
                # VALI set weights less than 100 blocks ago (or never: then this is the
                # version-key failure alone); either way the version key is reported.
                return await raw_weights(client, VALI, subnet, [2], [1], version_key=6)
            finally:
                await ok_sudo(client, AU.sudo_set_weights_version_key(netuid=subnet,
                                                                      weights_version_key=0))
    assert error_name(run(go())) == "IncorrectWeightVersionKey"


def test_rate_limit_is_per_uid_and_fails_before_the_permit_check(sim, subnet):
    async def go():
        async with sim.client() as client:
            first = await raw_weights(client, MINER, subnet, [2], [65535])   # self-weight
            vali = await raw_weights(client, VALI, subnet, [2], [65535])     # another uid
            again = await raw_weights(client, MINER, subnet, [0, 1], [1, 1])  # no permit too
            return first, vali, again
    first, vali, again = run(go())
    assert first.success, first.error   # self-weight needs no permit
    assert vali.success, vali.error     # MINER's rate limit does not bind VALI
    assert error_name(again) == "SettingWeightsTooFast"
    sim.advance(100)

    async def later():
        async with sim.client() as client:
            return await raw_weights(client, VALI, subnet, [2], [65535])
    assert run(later()).success  # WeightsSetRateLimit blocks later the uid may set again


def test_missing_permit_fails_before_duplicate_uids(sim, subnet, rate_limit):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, IDLE, subnet, [1, 1], [1, 1])
    assert error_name(run(go())) == "NeuronNoValidatorPermit"


def test_duplicates_fail_before_invalid_uids(sim, subnet, rate_limit):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, VALI, subnet, [9, 9], [1, 1])
    assert error_name(run(go())) == "DuplicateUids"


def test_invalid_uid_fails_before_too_few_weights(sim, subnet, rate_limit):
    async def go():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_min_allowed_weights(netuid=subnet,
                                                                  min_allowed_weights=3))
            try:
                return await raw_weights(client, VALI, subnet, [0, 9], [1, 1])
            finally:
                await ok_sudo(client, AU.sudo_set_min_allowed_weights(netuid=subnet,
                                                                      min_allowed_weights=1))
    assert error_name(run(go())) == "UidVecContainInvalidOne"


def test_too_few_weights_fail_before_the_max_weight_limit(sim, subnet, rate_limit):
    async def go():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_min_allowed_weights(netuid=subnet,
                                                                  min_allowed_weights=3),
                          bt.calls.Call("AdminUtils", "sudo_set_max_weight_limit",
                                        {"netuid": subnet, "max_weight_limit": 32768}))
            try:
                short = await raw_weights(client, VALI, subnet, [1, 2], [65535, 1])
                await ok_sudo(client, AU.sudo_set_min_allowed_weights(netuid=subnet,
                                                                      min_allowed_weights=1))
                heavy = await raw_weights(client, VALI, subnet, [1, 2], [65535, 1])
                fair = await raw_weights(client, VALI, subnet, [1, 2], [65535, 65535])
                return short, heavy, fair
            finally:
                await ok_sudo(client, AU.sudo_set_min_allowed_weights(netuid=subnet,
                                                                      min_allowed_weights=1),
                              bt.calls.Call("AdminUtils", "sudo_set_max_weight_limit",
                                            {"netuid": subnet, "max_weight_limit": 65535}))
    short, heavy, fair = run(go())
    assert error_name(short) == "WeightVecLengthIsLow"
    assert error_name(heavy) == "MaxWeightExceeded"
    assert fair.success, fair.error  # 0.5 each is within 32768/65535


# -- commit-reveal v4 and the reveal hook (§9.3) ------------------------------------------

@pytest.fixture(scope="module")
def cr_subnet(sim):
    """STRANGER's subnet with commit-reveal on (the default), rate limit 0, period 1."""
    async def setup():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), STRANGER)).data["netuid"]
            assert await client.subnets.commit_reveal_enabled(netuid) is True
            assert (await client.execute(bt.StartCall(netuid=netuid), STRANGER)).success
            assert (await client.execute(bt.BurnedRegister(netuid=netuid), MINER)).success
            return netuid
    netuid = run(setup())
    sim.advance(101)
    return netuid


def commit_call(netuid, version=4):
    return bt.calls.SubtensorModule.commit_timelocked_weights(
        netuid=netuid, commit=b"\x01" * 64, reveal_round=123, commit_reveal_version=version)


def test_commit_reveal_refuses_plain_weights_and_wrong_versions(sim, subnet, cr_subnet):
    async def go():
        async with sim.client() as client:
            plain = await raw_weights(client, STRANGER, cr_subnet, [0], [65535])
            version = await client.submit_call(commit_call(cr_subnet, 3), STRANGER,
                                               signer="hotkey")
            disabled = await client.submit_call(commit_call(subnet), VALI, signer="hotkey")
            return plain, version, disabled
    plain, version, disabled = run(go())
    assert error_name(plain) == "CommitRevealEnabled"
    assert error_name(version) == "IncorrectCommitRevealVersion"
    assert error_name(disabled) == "CommitRevealDisabled"


def test_set_weights_commits_and_the_hook_reveals_at_the_next_epoch(sim, cr_subnet):
    hotkey = STRANGER.hotkey.ss58_address
    assert sim.reveal_weights(cr_subnet, hotkey, [0], [65535]) == {
        "success": False, "error": "NoWeightsCommitFound"}

    async def commit():
        async with sim.client() as client:
            result = await client.execute(bt.SetWeights(netuid=cr_subnet, weights={1: 1.0}),
                                          STRANGER)
            assert result.success, result.error
            assert "reveal_round" in result.data
            again = await client.submit_call(commit_call(cr_subnet), STRANGER, signer="hotkey")
            epoch = await client.query(ST.SubnetEpochIndex, [cr_subnet])
            stored = await client.query(ST.TimelockedWeightCommits, [cr_subnet, epoch])
            mg = await client.subnets.metagraph(cr_subnet)
            return again, stored, mg.neurons[0].last_update, mg.block
    again, stored, last_update, block = run(commit())
    assert error_name(again) == "CommittingWeightsTooFast"  # rate limit 100 covers commits
    assert [(s[0], s[1]) for s in stored] == [(hotkey, block)]
    assert last_update == block  # a commit writes LastUpdate

    bad = sim.reveal_weights(cr_subnet, hotkey, [7], [65535])  # §9.1 checks, dry run
    assert bad == {"success": False, "error": "UidVecContainInvalidOne"}
    good = sim.reveal_weights(cr_subnet, hotkey, [1], [65535])
    assert good["success"] and good["reveal_epoch"] == good["commit_epoch"] + 1, good

    async def weights():
        async with sim.client() as client:
            return (await client.read("weights", netuid=cr_subnet),
                    await client.query(ST.LastEpochBlock, [cr_subnet]),
                    await client.query(ST.Tempo, [cr_subnet]),
                    await client.block())
    now, last_epoch, tempo, head = run(weights())
    assert now == {}  # not before the reveal epoch
    sim.advance(last_epoch + tempo - head)  # the block in which the next epoch fires
    revealed, *_ = run(weights())
    assert revealed == {0: {1: 1.0}}

    async def last():
        async with sim.client() as client:
            return (await client.subnets.metagraph(cr_subnet)).neurons[0].last_update
    assert run(last()) == last_update  # a reveal does not write LastUpdate


def test_unrevealed_commit_expires_after_its_reveal_epoch(sim, cr_subnet):
    async def commit():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_weights_set_rate_limit(
                netuid=cr_subnet, weights_set_rate_limit=0))
            result = await client.submit_call(commit_call(cr_subnet), MINER, signer="hotkey")
            assert result.success, result.error
    run(commit())
    sim.advance(25)  # two epochs at tempo 10: the reveal epoch has passed
    assert sim.reveal_weights(cr_subnet, MINER.hotkey.ss58_address, [1], [65535]) == {
        "success": False, "error": "NoWeightsCommitFound"}


# -- registration price, UIDs and pruning (§8) ---------------------------------------------

def test_registration_price_bump_outruns_a_tight_balance(sim, subnet):
    payer = DevWallet.from_uri("//PricePayer")
    second = DevWallet(payer.coldkey, DevWallet.from_uri("//PricePayer2").hotkey)

    async def go():
        async with sim.client() as client:
            netuid = await new_subnet(client, STRANGER)
            burn = (await client.subnets.info(netuid)).burn
            await fund(client, payer, float(burn.tao) * 1.5)
            first = await client.execute(bt.BurnedRegister(netuid=netuid), payer)
            bumped = (await client.subnets.info(netuid)).burn
            return burn, first, bumped, await client.execute(
                bt.BurnedRegister(netuid=netuid), second)
    burn, first, bumped, refused = run(go())
    assert first.success, first.error
    assert bumped.rao == int(burn.rao * 1.26)
    assert error_name(refused) == "NotEnoughBalanceToStake"


def test_pruning_respects_immunity_min_non_immune_and_the_owner(sim):
    """max 4 uids, immunity 20 blocks, MinNonImmuneUids 0, then back to 10 (§8.3)."""
    w = [DevWallet.from_uri(f"//Prune{i}") for i in range(7)]
    owner = DevWallet.from_uri("//PruneOwner")

    async def setup():
        async with sim.client() as client:
            await fund(client, owner, 500)
            for wallet in w:
                await fund(client, wallet, 50)
            netuid = await new_subnet(
                client, owner,
                lambda n: AU.sudo_set_max_allowed_uids(netuid=n, max_allowed_uids=4),
                lambda n: AU.sudo_set_immunity_period(netuid=n, immunity_period=20),
                lambda n: AU.sudo_set_min_non_immune_uids(netuid=n, min=0))
            for wallet in w[:2]:
                assert (await client.execute(bt.BurnedRegister(netuid=netuid), wallet)).success
            return netuid
    netuid = run(setup())
    sim.advance(25)  # w0, w1 are no longer immune

    async def register(wallet):
        async with sim.client() as client:
            result = await client.execute(bt.BurnedRegister(netuid=netuid), wallet)
            assert result.success, result.error
            return (await client.subnets.metagraph(netuid, commitments=False)).hotkeys

    hk = [x.hotkey.ss58_address for x in w]
    o = owner.hotkey.ss58_address
    assert run(register(w[2])) == [o, hk[0], hk[1], hk[2]]        # append
    sim.advance(1)
    assert run(register(w[3])) == [o, hk[3], hk[1], hk[2]]        # non-immune w0 goes, not w2
    sim.advance(1)
    assert run(register(w[4])) == [o, hk[3], hk[4], hk[2]]        # last non-immune w1 goes
    sim.advance(1)
    assert run(register(w[5])) == [o, hk[3], hk[4], hk[5]]        # only immune: oldest (w2)

    async def restore_floor():
        async with sim.client() as client:
            await ok_sudo(client, AU.sudo_set_min_non_immune_uids(netuid=netuid, min=10),
                          AU.sudo_set_max_allowed_uids(netuid=netuid, max_allowed_uids=5))
            assert await client.query(ST.MinNonImmuneUids, [netuid]) == 10
    run(restore_floor())
    sim.advance(25)  # w3, w4, w5 are no longer immune
    extra = DevWallet.from_uri("//PruneExtra")
    run(fund_sync(sim, extra))
    assert run(register(extra)) == [o, hk[3], hk[4], hk[5], extra.hotkey.ss58_address]
    # 3 non-immune <= MinNonImmuneUids (10): the immune pick goes although non-immune exist.
    assert run(register(w[6])) == [o, hk[3], hk[4], hk[5], hk[6]]


async def fund_sync(sim, wallet):
    async with sim.client() as client:
        await fund(client, wallet, 50)


def test_owner_is_never_pruned(sim):
    owner = DevWallet.from_uri("//LonelyOwner")
    joiner = DevWallet.from_uri("//Joiner")

    async def go():
        async with sim.client() as client:
            await fund(client, owner, 500)
            await fund(client, joiner, 50)
            netuid = await new_subnet(
                client, owner,
                lambda n: AU.sudo_set_max_allowed_uids(netuid=n, max_allowed_uids=1),
                lambda n: AU.sudo_set_immunity_period(netuid=n, immunity_period=0))
            result = await client.execute(bt.BurnedRegister(netuid=netuid), joiner)
            return result, (await client.subnets.metagraph(netuid, commitments=False)).hotkeys
    result, hotkeys = run(go())
    assert error_name(result) == "NoNeuronIdAvailable"
    assert hotkeys == [owner.hotkey.ss58_address]


# -- AdminUtils: origins, owner intent, the freeze window ----------------------------------

def test_admin_origins(sim, subnet):
    async def go():
        async with sim.client() as client:
            call = AU.sudo_set_immunity_period(netuid=subnet, immunity_period=77)
            not_sudo = await client.submit_call(
                bt.calls.Sudo.sudo(call=await client.compose(call)), VALI)
            stranger = await client.submit_call(call, STRANGER)          # owner-settable
            owner_root_only = await client.submit_call(
                AU.sudo_set_kappa(netuid=subnet, kappa=100), OWNER)       # root only
            owner_global = await client.submit_call(
                AU.sudo_set_admin_freeze_window(window=3), OWNER)
            owner_direct = await client.submit_call(call, OWNER)          # owner: allowed
            intent = await client.execute(bt.SetHyperparameter(
                netuid=subnet, name="min_allowed_weights", value=1), OWNER)
            stranger_intent = await client.execute(bt.SetHyperparameter(
                netuid=subnet, name="min_allowed_weights", value=1), STRANGER)
            # The SDK's intent refuses tempo 20 itself; the raw call reaches the chain.
            tempo = await client.submit_call(AU.sudo_set_tempo(netuid=subnet, tempo=20), OWNER)
            return (not_sudo, stranger, owner_root_only, owner_global, owner_direct, intent,
                    stranger_intent, tempo, await client.query(ST.ImmunityPeriod, [subnet]))
    (not_sudo, stranger, root_only, global_, owner_direct, intent, stranger_intent, tempo,
     immunity) = run(go())
    assert error_name(not_sudo) == "RequireSudo"
    assert error_name(stranger) == "BadOrigin"
    assert error_name(root_only) == "BadOrigin"
    assert error_name(global_) == "BadOrigin"
    assert owner_direct.success, owner_direct.error
    assert immunity == 77
    assert intent.success, intent.error
    assert not stranger_intent.success
    assert stranger_intent.error.name in ("BadOrigin", "NotSubnetOwner")
    assert error_name(tempo) == "TempoOutOfBounds"  # owner tempo is bounded to 360..50400


def test_admin_freeze_window(sim, subnet):
    async def go():
        async with sim.client() as client:
            assert await client.query(ST.AdminFreezeWindow, []) == 0  # simnet genesis
            await ok_sudo(client, AU.sudo_set_admin_freeze_window(window=10))
            try:
                frozen = await client.execute(bt.SetHyperparameter(
                    netuid=subnet, name="min_allowed_weights", value=1), OWNER)
                root_frozen = await sudo(client, AU.sudo_set_tempo(netuid=subnet, tempo=10))
                ungated = await sudo(client, AU.sudo_set_weights_set_rate_limit(
                    netuid=subnet, weights_set_rate_limit=100))
                window = await client.query(ST.AdminFreezeWindow, [])
                last = await client.query(ST.LastEpochBlock, [subnet])
                return frozen, root_frozen, ungated, window, last + 10 - await client.block()
            except BaseException:
                await ok_sudo(client, AU.sudo_set_admin_freeze_window(window=0))
                raise
    frozen, root_frozen, ungated, window, to_epoch = run(go())
    assert window == 10
    assert error_name(frozen) == "AdminActionProhibitedDuringWeightsWindow"
    assert error_name(root_frozen) == "AdminActionProhibitedDuringWeightsWindow"
    assert ungated.success, ungated.error
    sim.advance(to_epoch)  # the epoch block itself: tempo blocks to the next one, open

    async def at_epoch():
        async with sim.client() as client:
            try:
                return await client.execute(bt.SetHyperparameter(
                    netuid=subnet, name="min_allowed_weights", value=1), OWNER)
            finally:
                await ok_sudo(client, AU.sudo_set_admin_freeze_window(window=0))
    assert run(at_epoch()).success


# -- reads and the clock -----------------------------------------------------------------

def test_stake_read_and_manual_clock(sim, subnet):
    async def go():
        async with sim.client() as client:
            stake = await client.read("stake", coldkey_ss58=VALI.coldkey.ss58_address,
                                      hotkey_ss58=VALI.hotkey.ss58_address, netuid=subnet)
            total = await client.query(ST.TotalHotkeyAlpha, [VALI.hotkey.ss58_address, subnet])
            none = await client.read("stake", coldkey_ss58=STRANGER.coldkey.ss58_address,
                                     hotkey_ss58=VALI.hotkey.ss58_address, netuid=subnet)
            return stake, total, none, await client.block()
    stake, total, none, head = run(go())
    assert stake.rao == total > 50 * 10**9 and none.rao == 0
    assert sim.advance(0) == head  # nothing moves on a manual clock by itself
    assert sim.advance(7) == head + 7

    async def block():
        async with sim.client() as client:
            return await client.block()
    assert run(block()) == head + 7
