"""Take a fresh subtensor localnet (or simnet) to a running subnet, with the bittensor SDK.

Creates unencrypted wallets under --wallet-path (owner, validator, miner0..N-1), funds them
from //Alice, creates and starts the subnet, disables commit-reveal, sets the admin freeze
window and the weights rate limit (sudo from //Alice), registers and stakes the validator,
registers the miners, waits for the validator's permit, then prints a JSON document (stdout,
and --out FILE) with the netuid, uids, hotkeys and the exact command that starts each neuron.

    python scripts/localnet/setup_subnet.py --subtensor.network local --wallet-path ~/.deai/localnet/wallets
    python scripts/localnet/setup_subnet.py --subtensor.network sim --subtensor.chain_endpoint http://127.0.0.1:9946 ...

Re-running is safe: existing wallets, the owner's subnet, settings already in place,
registrations and stake are found and kept. Progress goes to stderr; only the JSON goes to stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import bittensor as bt  # noqa: E402
from bittensor.result import BittensorError, ChainError  # noqa: E402
from loguru import logger  # noqa: E402

from template.chain import bootstrap  # noqa: E402
from template.chain.client import DEFAULT_SIM_ENDPOINT, SIM_NETWORK, open_client  # noqa: E402

REMOTE_NETWORKS = {"finney", "test", "archive", "devnet"}
FEE_MARGIN_TAO = 5.0

# Chain error name -> what the person should do about it.
HINTS: dict[str, str] = {
    "AdminActionProhibitedDuringWeightsWindow":
        "admin calls are frozen near each epoch; the admin freeze window must be 0 first "
        "(this script sets it with --admin-freeze-window 0); re-run the script",
    "RequireSudo": "the sudo key is not this chain's sudo account; localnet's sudo is //Alice (--sudo-uri)",
    "BadOrigin": "the sudo key is not this chain's sudo account; localnet's sudo is //Alice (--sudo-uri)",
    "NotSubnetOwner": "the owner wallet does not own this subnet; pass the right --netuid or a fresh --wallet-path",
    "SubnetNotExists": "the subnet does not exist; drop --netuid to create one",
    "SubnetDoesNotExist": "the subnet does not exist; drop --netuid to create one",
    "NotEnoughBalance": "the account lacks TAO; //Alice funds it: check //Alice's balance or lower the amounts",
    "NotEnoughBalanceToStake": "the validator's coldkey lacks TAO; lower --validator-stake or re-run to top it up",
    "BalanceTooLow": "the account lacks TAO; check //Alice's balance or lower the amounts",
    "InsufficientBalance": "the account lacks TAO; check //Alice's balance or lower the amounts",
    "FundsUnavailable": "the account lacks TAO; check //Alice's balance or lower the amounts",
    "TooManyRegistrationsThisBlock": "registrations are limited per block; re-run the script",
    "TooManyRegistrationsThisInterval": "registrations are limited per interval; wait a few blocks and re-run",
    "SubtokenDisabled": "the subnet is not started yet (start_call); re-run the script",
    "FirstEmissionBlockNumberAlreadySet": "the subnet is already started; re-run the script",
    "NeedWaitingMoreBlocksToStarCall": "start_call is not allowed yet; wait a few blocks and re-run",
    "NetworkTxRateLimitExceeded": "subnet creation is rate limited on this chain; wait and re-run "
                                  "(a pow-faucet localnet has no such limit)",
    "SubnetLimitReached": "the chain holds the maximum number of subnets; reuse one with --netuid",
    "CallFiltered": "this chain does not offer the call",
    "RateLimit": "the chain rate-limits this change; wait a few blocks and re-run",
}


class LocalnetError(RuntimeError):
    def __init__(self, step: str, name: str, message: str, hint: str = ""):
        self.step, self.name, self.message, self.hint = step, name, message, hint
        text = f"{step} failed: {name or 'error'}: {message}"
        super().__init__(text + (f"\n  what to do: {hint}" if hint else ""))


# Substrings of error messages (no chain error name) -> what to do.
MESSAGE_HINTS: dict[str, str] = {
    "MEV Shield": "the node's runtime has no MEV shield, which bittensor 11's BurnedRegister needs: run a newer "
                  "localnet image (scripts/localnet/start_node.sh --tag devnet-ready) or a newer node-subtensor",
    "could not connect": "start a localnet node first: scripts/localnet/start_node.sh",
}


def hint_for(name: str, message: str, remediation: str = "") -> str:
    for key, hint in MESSAGE_HINTS.items():
        if key.lower() in (message or "").lower():
            return hint
    for key, hint in HINTS.items():
        if key == name or (not name and key in message):
            return hint
    if name.endswith("RateLimitExceeded"):
        return HINTS["RateLimit"]
    return remediation or "read the chain error above; the script resumes from where it stopped when re-run"


def _as_error(step: str, error: BaseException) -> LocalnetError:
    if isinstance(error, LocalnetError):
        return error
    name = getattr(error, "name", None) or ""
    message = getattr(error, "message", None) or str(error)
    remediation = ""
    try:
        remediation = getattr(error, "remediation", "") or ""
    except Exception:  # noqa: BLE001 - a hint is best effort
        pass
    return LocalnetError(step, name or type(error).__name__, message, hint_for(name, message, remediation))


async def run_step(step: str, action: Awaitable) -> Any:
    """Await an execute/submit_call; a failed result or a raised chain error becomes a LocalnetError."""
    try:
        result = await action
    except (ChainError, BittensorError) as error:
        raise _as_error(step, error) from error
    if isinstance(result, bt.ExtrinsicResult) and not result.success:
        error = result.error
        name = getattr(error, "name", None) or ""
        message = getattr(error, "message", None) or result.message or ""
        remediation = ""
        try:
            remediation = getattr(error, "remediation", "") or ""
        except Exception:  # noqa: BLE001
            pass
        raise LocalnetError(step, name, message, hint_for(name, message, remediation))
    return result


@dataclass
class Member:
    name: str
    role: str  # owner | validator | miner
    wallet: bt.Wallet
    axon_port: int = 0
    uid: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    @property
    def coldkey(self) -> str:
        return self.wallet.coldkeypub.ss58_address


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--subtensor.network", dest="network", default="local",
                   help="local (ws://127.0.0.1:9944) | ws://host:port | sim")
    p.add_argument("--subtensor.chain_endpoint", dest="chain_endpoint", default=DEFAULT_SIM_ENDPOINT,
                   help="simnet URL when --subtensor.network is sim")
    p.add_argument("--wallet-path", default="~/.deai/localnet/wallets",
                   help="folder for the (unencrypted) wallets this script creates")
    p.add_argument("--miners", type=int, default=3, help="number of miners to register")
    p.add_argument("--netuid", type=int, default=None,
                   help="use this existing subnet (it must be the owner wallet's); None: the owner's "
                        "subnet if it has one, else a new one")
    p.add_argument("--weights-rate-limit", type=int, default=30,
                   help="WeightsSetRateLimit in blocks (chain default 100, more than a fast-blocks tempo)")
    p.add_argument("--admin-freeze-window", type=int, default=0,
                   help="AdminFreezeWindow in blocks (chain default 10 blocks out of a 10-block tempo)")
    p.add_argument("--tempo", type=int, default=None, help="set the subnet tempo (None: keep the chain's)")
    p.add_argument("--validator-stake", type=float, default=500.0, help="TAO the validator stakes on its hotkey")
    p.add_argument("--miner-funds", type=float, default=20.0, help="TAO each miner coldkey holds beyond the burn")
    p.add_argument("--sudo-uri", default="//Alice", help="the chain's sudo key (localnet: //Alice)")
    p.add_argument("--faucet-uri", default="//Alice", help="dev account that funds the wallets")
    p.add_argument("--no-wait-permit", dest="wait_permit", action="store_false",
                   help="do not wait for the epoch that gives the validator its permit")
    p.add_argument("--permit-timeout", type=float, default=180.0, help="seconds to wait for the permit")
    p.add_argument("--axon-port", type=int, default=8091,
                   help="validator's port in the printed commands; miners get the next ones")
    p.add_argument("--state-dir", default="~/.deai/localnet/state",
                   help="parent of each neuron's --neuron.state_dir in the printed commands")
    p.add_argument("--out", default="", help="also write the JSON document to this file")
    args = p.parse_args(argv)
    if args.miners < 0:
        p.error("--miners must be 0 or more")
    if args.network in REMOTE_NETWORKS or args.network.startswith("wss://"):
        p.error(f"--subtensor.network {args.network}: this script uses dev keys ({args.sudo_uri}) and is for a "
                "local chain only (local, ws://127.0.0.1:PORT, or sim)")
    return args


def endpoint_of(args) -> str:
    if args.network == SIM_NETWORK:
        return args.chain_endpoint
    if args.network == "local":
        return os.environ.get("BT_CHAIN_ENDPOINT", "ws://127.0.0.1:9944")
    return args.network


def network_flags(args) -> list[str]:
    if args.network == SIM_NETWORK:
        return ["--subtensor.network", SIM_NETWORK, "--subtensor.chain_endpoint", args.chain_endpoint]
    return ["--subtensor.network", args.network]


async def connect(args) -> bt.Client:
    try:
        return await open_client(args.network, args.chain_endpoint if args.network == SIM_NETWORK else "").connect()
    except (BittensorError, OSError) as error:
        if args.network == SIM_NETWORK:
            what = (f"start simnet: python -m simnet serve --db simnet.sqlite "
                    f"--port {args.chain_endpoint.rsplit(':', 1)[-1].rstrip('/')}")
        else:
            what = "start a localnet node first: scripts/localnet/start_node.sh (then wait for blocks)"
        raise LocalnetError(f"connect to {endpoint_of(args)}", type(error).__name__, str(error), what) from error


async def free_tao(client: bt.Client, ss58: str) -> float:
    return float((await client.balances.get(ss58)).tao)


async def top_up(client: bt.Client, faucet, member: Member, need_tao: float) -> None:
    have = await free_tao(client, member.coldkey)
    if have >= need_tao:
        logger.info("{}: balance {:.3f} TAO is enough (need {:.3f})", member.name, have, need_tao)
        return
    amount = math.ceil((need_tao - have) * 1000) / 1000
    await run_step(f"transfer {amount} TAO from {faucet.coldkey.ss58_address[:10]} to {member.name} ({member.coldkey})",
                   client.execute(bt.Transfer(dest_ss58=member.coldkey, amount_tao=amount), faucet))
    logger.info("{}: funded {:.3f} TAO from {}", member.name, amount, faucet.coldkey.ss58_address[:10])


async def sudo(client: bt.Client, sudo_key, call) -> None:
    inner = await client.compose(call)
    result = await run_step(f"sudo {call.function}({', '.join(f'{k}={v}' for k, v in call.params.items())})",
                            client.submit_call(bt.calls.Sudo.sudo(call=inner), sudo_key))
    # Sudo.Sudid carries the inner result; submit_call does not check it.
    for event in result.events or []:
        if event.get("module_id") == "Sudo" and event.get("event_id") == "Sudid":
            attrs = event.get("attributes") or {}
            inner_result = attrs.get("sudo_result") if isinstance(attrs, dict) else None
            if isinstance(inner_result, dict) and "Err" in inner_result:
                raise LocalnetError(f"sudo {call.function}", str(inner_result["Err"]), "the sudo'd call failed",
                                    hint_for(str(inner_result["Err"]), ""))


async def query_or_none(client: bt.Client, item, params: list | None = None):
    try:
        return await client.query(item, params or [])
    except (ChainError, BittensorError):
        return None


async def set_admin_freeze_window(client: bt.Client, args, sudo_key, report: dict) -> None:
    """Root-only and not itself gated by the window. simnet has no freeze window at all (no
    AdminFreezeWindow storage), so there the call is skipped when the chain refuses it."""
    st = bt.storage.SubtensorModule
    current = await query_or_none(client, st.AdminFreezeWindow)
    if current is not None and int(current) == args.admin_freeze_window:
        logger.info("admin freeze window already {}", current)
        report["admin_freeze_window"] = int(current)
        return
    try:
        await sudo(client, sudo_key, bt.calls.AdminUtils.sudo_set_admin_freeze_window(window=args.admin_freeze_window))
    except LocalnetError as error:
        if current is None and error.name == "CallFiltered":
            logger.warning("this chain has no admin freeze window (no SubtensorModule.AdminFreezeWindow storage) "
                           "and refused AdminUtils.sudo_set_admin_freeze_window with CallFiltered; skipped "
                           "(simnet does not model the window)")
            report["admin_freeze_window"] = None
            report.setdefault("skipped_calls", []).append("AdminUtils.sudo_set_admin_freeze_window: CallFiltered")
            return
        raise
    value = await query_or_none(client, st.AdminFreezeWindow)
    report["admin_freeze_window"] = int(value) if value is not None else args.admin_freeze_window
    logger.info("admin freeze window set to {}", report["admin_freeze_window"])


async def owned_subnets(client: bt.Client, coldkey: str) -> list[int]:
    subnets = await client.read("subnets")
    owned = []
    for info in subnets:
        if info.netuid == 0:
            continue
        if await client.query(bt.storage.SubtensorModule.SubnetOwner, [info.netuid]) == coldkey:
            owned.append(info.netuid)
    return owned


async def find_or_create_subnet(client: bt.Client, args, faucet, owner: Member) -> tuple[int, bool]:
    st = bt.storage.SubtensorModule
    if args.netuid is not None:
        if not await client.query(st.NetworksAdded, [args.netuid]):
            raise LocalnetError(f"use subnet {args.netuid}", "SubnetNotExists", f"subnet {args.netuid} does not exist",
                                HINTS["SubnetNotExists"])
        subnet_owner = await client.query(st.SubnetOwner, [args.netuid])
        if subnet_owner != owner.coldkey:
            raise LocalnetError(f"use subnet {args.netuid}", "NotSubnetOwner",
                                f"subnet {args.netuid} is owned by {subnet_owner}, not by the owner wallet "
                                f"{owner.coldkey}", HINTS["NotSubnetOwner"])
        logger.info("using subnet {} (given by --netuid)", args.netuid)
        return args.netuid, False
    owned = await owned_subnets(client, owner.coldkey)
    if owned:
        logger.info("owner already owns subnet(s) {}; using {}", owned, owned[0])
        return owned[0], False
    cost = float((await client.read("subnet_registration_cost")).tao)
    logger.info("subnet lock cost {:.3f} TAO", cost)
    await top_up(client, faucet, owner, cost + FEE_MARGIN_TAO)
    result = await run_step("register_network (create the subnet)", client.execute(bt.RegisterSubnet(), owner.wallet))
    netuid = int(result.data["netuid"])
    logger.info("created subnet {}", netuid)
    return netuid, True


async def configure(client: bt.Client, args, netuid: int, owner: Member, sudo_key, report: dict) -> None:
    st = bt.storage.SubtensorModule
    if await client.subnets.commit_reveal_enabled(netuid):
        await run_step("disable commit-reveal (owner sets commit_reveal_weights_enabled = False)",
                       client.execute(bt.SetHyperparameter(netuid=netuid, name="commit_reveal_weights_enabled",
                                                           value=False), owner.wallet))
        logger.info("commit-reveal disabled")
    else:
        logger.info("commit-reveal already off")
    report["commit_reveal_weights_enabled"] = bool(await client.subnets.commit_reveal_enabled(netuid))

    if int(await client.read("weights_rate_limit", netuid=netuid)) != args.weights_rate_limit:
        await sudo(client, sudo_key, bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(
            netuid=netuid, weights_set_rate_limit=args.weights_rate_limit))
        logger.info("weights rate limit set to {}", args.weights_rate_limit)
    else:
        logger.info("weights rate limit already {}", args.weights_rate_limit)
    report["weights_rate_limit"] = int(await client.read("weights_rate_limit", netuid=netuid))

    if args.tempo is not None and int(await client.query(st.Tempo, [netuid])) != args.tempo:
        await sudo(client, sudo_key, bt.calls.AdminUtils.sudo_set_tempo(netuid=netuid, tempo=args.tempo))
        logger.info("tempo set to {}", args.tempo)
    report["tempo"] = int(await client.query(st.Tempo, [netuid]))

    if await query_or_none(client, st.FirstEmissionBlockNumber, [netuid]) is None:
        await run_step("start_call (start the subnet's emissions)",
                       client.execute(bt.StartCall(netuid=netuid), owner.wallet))
        logger.info("subnet {} started", netuid)
    else:
        logger.info("subnet {} already started", netuid)
    report["first_emission_block"] = await query_or_none(client, st.FirstEmissionBlockNumber, [netuid])


async def register(client: bt.Client, faucet, member: Member, netuid: int, keep_tao: float) -> None:
    uid = await client.read("uid", hotkey_ss58=member.hotkey, netuid=netuid)
    if uid is None:
        burn = float((await client.read("burn", netuid=netuid)).tao)
        await top_up(client, faucet, member, burn + keep_tao + FEE_MARGIN_TAO)
        await run_step(f"burned_register {member.name} ({member.hotkey}) on subnet {netuid}",
                       client.execute(bt.BurnedRegister(netuid=netuid), member.wallet))
        uid = await client.read("uid", hotkey_ss58=member.hotkey, netuid=netuid)
        if uid is None:
            raise LocalnetError(f"burned_register {member.name}", "NotRegistered",
                                "the registration succeeded but the hotkey has no uid", "re-run the script")
        logger.info("{}: registered as uid {} (burn {:.3f} TAO)", member.name, uid, burn)
    else:
        logger.info("{}: already registered as uid {}", member.name, uid)
    member.uid = int(uid)


async def alpha_stake(client: bt.Client, hotkey: str, netuid: int) -> float:
    rao = await client.query(bt.storage.SubtensorModule.TotalHotkeyAlpha, [hotkey, netuid])
    return int(rao or 0) / 1e9


async def stake_validator(client: bt.Client, args, faucet, validator: Member, netuid: int) -> None:
    have = await alpha_stake(client, validator.hotkey, netuid)
    if have > 0:
        logger.info("validator: already holds {:.3f} alpha of stake; not adding more", have)
    elif args.validator_stake > 0:
        await top_up(client, faucet, validator, args.validator_stake + FEE_MARGIN_TAO)
        await run_step(f"add_stake {args.validator_stake} TAO to the validator's hotkey on subnet {netuid}",
                       client.execute(bt.AddStake(hotkey_ss58=validator.hotkey, netuid=netuid,
                                                  amount_tao=args.validator_stake), validator.wallet))
        logger.info("validator: staked {} TAO -> {:.3f} alpha", args.validator_stake,
                    await alpha_stake(client, validator.hotkey, netuid))
    validator.extra["stake_alpha"] = await alpha_stake(client, validator.hotkey, netuid)


async def wait_for_permit(client: bt.Client, args, validator: Member, netuid: int) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.permit_timeout
    while True:
        graph = await client.subnets.metagraph(netuid, commitments=False)
        neuron = graph.by_hotkey(validator.hotkey) if graph is not None else None
        if neuron is not None and neuron.validator_permit:
            return True
        remaining = deadline - loop.time()
        if not args.wait_permit or remaining <= 0:
            return False
        logger.info("waiting for the next epoch of subnet {} (validator permit)", netuid)
        try:
            await client.wait_for_epoch(netuid, timeout=remaining)
        except (asyncio.TimeoutError, TimeoutError, BittensorError):
            return False


def neuron_command(args, netuid: int, member: Member, wallet_path: Path, state_dir: Path) -> list[str]:
    module = "neurons.validator" if member.role == "validator" else "neurons.miner"
    return [sys.executable, "-m", module, "--netuid", str(netuid), *network_flags(args),
            "--wallet.name", member.wallet.name, "--wallet.hotkey", member.wallet.hotkey_str,
            "--wallet.path", str(wallet_path), "--axon.ip", "127.0.0.1", "--axon.port", str(member.axon_port),
            "--neuron.state_dir", str(state_dir / member.name)]


async def setup(args) -> dict:
    wallet_path = Path(args.wallet_path).expanduser().resolve()
    state_dir = Path(args.state_dir).expanduser().resolve()
    faucet = bootstrap.DevWallet.from_uri(args.faucet_uri)
    sudo_key = bootstrap.DevWallet.from_uri(args.sudo_uri)

    report: dict[str, Any] = {"network": args.network, "endpoint": endpoint_of(args)}
    client = await connect(args)
    try:
        wallet_path.mkdir(parents=True, exist_ok=True)
        owner = Member("owner", "owner", bootstrap.create_wallet(wallet_path, "owner"))
        validator = Member("validator", "validator", bootstrap.create_wallet(wallet_path, "validator"),
                           args.axon_port)
        miners = [Member(f"miner{i}", "miner", bootstrap.create_wallet(wallet_path, f"miner{i}"),
                         args.axon_port + 1 + i) for i in range(args.miners)]
        logger.info("wallets in {}: owner, validator, {}", wallet_path,
                    ", ".join(m.name for m in miners) or "no miners")
        report["block"] = await client.block()
        report["block_time"] = float(await client.block_time())
        try:
            report["spec_version"] = await client.spec_version()
        except Exception:  # noqa: BLE001 - informational only (simnet may not report one)
            report["spec_version"] = None
        logger.info("connected to {} at block {} ({} s blocks, spec {})", report["endpoint"], report["block"],
                    report["block_time"], report["spec_version"])
        if report["block_time"] > 1.0:
            logger.warning("{} s blocks: this node is not a fast-blocks localnet; each step waits for blocks",
                           report["block_time"])

        await set_admin_freeze_window(client, args, sudo_key, report)
        netuid, created = await find_or_create_subnet(client, args, faucet, owner)
        report["netuid"], report["created"] = netuid, created
        await configure(client, args, netuid, owner, sudo_key, report)
        owner.uid = await client.read("uid", hotkey_ss58=owner.hotkey, netuid=netuid)

        staked = await alpha_stake(client, validator.hotkey, netuid) > 0
        await register(client, faucet, validator, netuid, keep_tao=0.0 if staked else args.validator_stake)
        for miner in miners:
            await register(client, faucet, miner, netuid, keep_tao=args.miner_funds)
        await stake_validator(client, args, faucet, validator, netuid)
        permit = await wait_for_permit(client, args, validator, netuid)
        if permit:
            logger.info("validator holds a validator permit")
        elif args.wait_permit:
            logger.warning("validator has no permit after {} s; it gets one at an epoch once its stake ranks "
                           "in the top max_validators", args.permit_timeout)
        validator.extra["validator_permit"] = permit
        report["block_done"] = await client.block()
    finally:
        await client.close()

    report["wallet_path"] = str(wallet_path)
    report["owner"] = {"wallet": owner.wallet.name, "hotkey": owner.wallet.hotkey_str,
                       "coldkey_ss58": owner.coldkey, "hotkey_ss58": owner.hotkey, "uid": owner.uid}
    report["cwd"] = str(REPO)
    report["neurons"] = []
    for member in [validator, *miners]:
        command = neuron_command(args, netuid, member, wallet_path, state_dir)
        report["neurons"].append({
            "name": member.name, "role": member.role, "uid": member.uid,
            "wallet": member.wallet.name, "hotkey": member.wallet.hotkey_str,
            "hotkey_ss58": member.hotkey, "coldkey_ss58": member.coldkey, "axon_port": member.axon_port,
            **member.extra, "command": command, "command_line": shlex.join(command)})
    return report


def print_summary(report: dict) -> None:
    logger.info("subnet {} on {} is ready: commit-reveal {}, weights rate limit {}, tempo {}, admin freeze window {}",
                report["netuid"], report["endpoint"], "on" if report["commit_reveal_weights_enabled"] else "off",
                report["weights_rate_limit"], report["tempo"], report["admin_freeze_window"])
    for neuron in report["neurons"]:
        logger.info("  uid {:>3} {:<10} {}", neuron["uid"], neuron["name"], neuron["hotkey_ss58"])
    logger.info("start each neuron in its own terminal, from {}:", report["cwd"])
    for neuron in report["neurons"]:
        logger.info("  {}", neuron["command_line"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="<green>{time:HH:mm:ss}</green> localnet {message}")
    try:
        report = asyncio.run(setup(args))
    except LocalnetError as error:
        logger.error("{}", error)
        return 2
    except BittensorError as error:  # a read the chain refused, a dropped connection, ...
        logger.error("chain error ({}): {}\n  what to do: {}", type(error).__name__, error,
                     hint_for(getattr(error, "name", None) or "", str(error)))
        return 2
    print_summary(report)
    text = json.dumps(report, indent=2)
    if args.out:
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        logger.info("wrote {}", out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
