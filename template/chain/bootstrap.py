"""Taking a fresh chain (simnet or a subtensor localnet) to a running subnet with the SDK:
fund wallets from //Alice, create and start the subnet, set what a local run needs, register and
stake. The same calls run against both backends."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bittensor as bt
from bittensor.sp_core import Keypair
from loguru import logger


@dataclass(frozen=True)
class DevWallet:
    """A file-less wallet from dev URIs (the SDK's KeyedWallet shape): `DevWallet.from_uri("//Alice")`."""

    coldkey: Keypair
    hotkey: Keypair

    @property
    def coldkeypub(self) -> Keypair:
        return self.coldkey

    @classmethod
    def from_uri(cls, cold_uri: str, hot_uri: str | None = None) -> "DevWallet":
        return cls(Keypair.create_from_uri(cold_uri), Keypair.create_from_uri(hot_uri or f"{cold_uri}//hot"))


class SetupError(RuntimeError):
    pass


def create_wallet(path: Path, name: str, hotkey: str = "default") -> bt.Wallet:
    """An unencrypted local wallet (dev and tests); reused when it already exists."""
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(path))
    if not wallet.coldkey_file.exists_on_device():
        wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    if not wallet.hotkey_file.exists_on_device():
        wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet


def _check(result, what: str):
    if not result.success:
        name = getattr(result.error, "name", None) or ""
        raise SetupError(f"{what} failed: {name} {result.message}")
    return result


async def fund(client: bt.Client, source, dest_ss58: str, amount_tao: float) -> None:
    _check(await client.execute(bt.Transfer(dest_ss58=dest_ss58, amount_tao=amount_tao), source),
           f"transfer of {amount_tao} TAO to {dest_ss58[:10]}")


async def create_subnet(client: bt.Client, owner) -> int:
    result = _check(await client.execute(bt.RegisterSubnet(), owner), "register_network")
    netuid = int(result.data["netuid"])
    logger.info("created subnet {}", netuid)
    return netuid


async def sudo(client: bt.Client, sudo_wallet, call) -> None:
    inner = await client.compose(call)
    _check(await client.submit_call(bt.calls.Sudo.sudo(call=inner), sudo_wallet), f"sudo {call.function}")


async def configure_local_subnet(client: bt.Client, netuid: int, owner, sudo_wallet, weights_rate_limit: int,
                                 tempo: int | None = None) -> None:
    """What a local run needs: no admin freeze window (subtensor's 10 blocks would block admin
    calls most of a short tempo), no commit-reveal (drand is unreachable offline), a short
    weights rate limit, optionally a tempo, then start emissions."""
    await sudo(client, sudo_wallet, bt.calls.AdminUtils.sudo_set_admin_freeze_window(window=0))
    _check(await client.execute(bt.SetHyperparameter(netuid=netuid, name="commit_reveal_weights_enabled",
                                                     value=False), owner), "disable commit-reveal")
    await sudo(client, sudo_wallet, bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(
        netuid=netuid, weights_set_rate_limit=weights_rate_limit))
    if tempo is not None:
        await sudo(client, sudo_wallet, bt.calls.AdminUtils.sudo_set_tempo(netuid=netuid, tempo=tempo))
    _check(await client.execute(bt.StartCall(netuid=netuid), owner), "start_call")


async def register(client: bt.Client, wallet, netuid: int) -> int:
    hotkey = wallet.hotkey.ss58_address
    uid = await client.read("uid", hotkey_ss58=hotkey, netuid=netuid)
    if uid is None:
        _check(await client.execute(bt.BurnedRegister(netuid=netuid), wallet), f"burned_register {hotkey[:10]}")
        uid = await client.read("uid", hotkey_ss58=hotkey, netuid=netuid)
    return int(uid)


async def add_stake(client: bt.Client, wallet, netuid: int, amount_tao: float) -> None:
    _check(await client.execute(bt.AddStake(hotkey_ss58=wallet.hotkey.ss58_address, netuid=netuid,
                                            amount_tao=amount_tao), wallet), "add_stake")
