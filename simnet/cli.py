"""simnet command line: run the node, look at the chain through the SDK, run btcli on it.

    python -m simnet serve --db PATH [--host H] [--port P] [--block-time S]
                                           [--manual-clock]
    python -m simnet status|subnets [--json] [--url URL]
    python -m simnet hyperparams|metagraph --netuid N [--json] [--url URL]
    python -m simnet advance --blocks N [--url URL]     (manual clock)
    python -m simnet btcli [--url URL] <btcli arguments>

Without --url, commands use $SIMNET_URL, else http://127.0.0.1:9946.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import httpx

from .client import DEFAULT_URL, URL_ENV, simnet_url

# A reader that stops early (`| head`) ends the command quietly with status 1, as Python's
# docs advise and as rich's Console does for the tables.
BROKEN_PIPE_STATUS = 1
URL_HELP = f"simnet node (default: ${URL_ENV}, else {DEFAULT_URL})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simnet",
                                     description="simnet: the embedded simulated subtensor")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the simnet node")
    serve.add_argument("--db", required=True, help="SQLite file (a new chain only where no file exists)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9946)
    serve.add_argument("--block-time", type=float, default=0.25, help="seconds per block")
    serve.add_argument("--manual-clock", action="store_true",
                       help="blocks advance only on POST /admin/advance")
    serve.add_argument("--admin-freeze-window", type=int, default=None,
                       help="set AdminFreezeWindow (blocks) at start; genesis value 0, "
                            "subtensor's is 10")
    serve.add_argument("--log-level", default="INFO")
    for name, needs_netuid in (("status", False), ("subnets", False),
                               ("hyperparams", True), ("metagraph", True)):
        view = sub.add_parser(name, help=f"show {name}")
        view.add_argument("--url", default=None, help=URL_HELP)
        view.add_argument("--json", action="store_true", help="print JSON")
        if needs_netuid:
            view.add_argument("--netuid", type=int, required=True)
    advance = sub.add_parser("advance", help="advance a manual-clock node")
    advance.add_argument("--url", default=None, help=URL_HELP)
    advance.add_argument("--blocks", type=int, default=1)
    # Listed for --help only: main() hands `btcli ...` to simnet.btcli before argparse runs,
    # so every later argument (-h included) is btcli's.
    sub.add_parser("btcli", help="run the real btcli against simnet: "
                                 "btcli [--url URL] <btcli arguments>", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["btcli"]:
        from .btcli import run

        return run(argv[1:])
    args = _parser().parse_args(argv)
    if hasattr(args, "url"):
        args.url = simnet_url(args.url)
    if args.command == "serve":
        from .server import serve
        from .store import StoreCorrupt

        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            serve(args.db, args.host, args.port, args.block_time, args.manual_clock,
                  args.admin_freeze_window)
        except StoreCorrupt as error:  # a person reads this, not a traceback
            print(f"simnet: refusing the chain database {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "advance":
        response = httpx.post(f"{args.url}/admin/advance", json={"blocks": args.blocks})
        print(response.json())
        return 0 if response.status_code == 200 else 1
    try:
        data = asyncio.run(_gather(args))
    except Exception as error:  # noqa: BLE001 - a person reads this, not a traceback
        print(f"simnet at {args.url}: {error}", file=sys.stderr)
        return 1
    if data is None:
        print(f"netuid {args.netuid} does not exist", file=sys.stderr)
        return 1
    try:
        if args.json:
            print(json.dumps(data, indent=2, default=str))
        else:
            _render(args.command, data)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
        return BROKEN_PIPE_STATUS
    return 0


async def _gather(args: argparse.Namespace) -> Any:
    """Read what a view shows through the SDK over simnet (the same data for table and JSON)."""
    import bittensor as bt

    from .client import SIM_LABEL, SimSubstrate

    async with bt.Client(SIM_LABEL, substrate=SimSubstrate(args.url)) as client:
        block = await client.block()
        if args.command == "status":
            subnets = await client.read("subnets")
            return {"url": args.url, "block": block, "block_time": await client.block_time(),
                    "subnets": len(subnets)}
        if args.command == "subnets":
            rows = []
            for info in await client.read("subnets"):
                mg = await client.subnets.metagraph(info.netuid, commitments=False)
                rows.append({"netuid": info.netuid, "owner": mg.owner_coldkey if mg else None,
                             "neurons": info.neuron_count, "tempo": info.tempo,
                             "burn_tao": float(info.burn.tao), "burn_rao": int(info.burn.rao),
                             "last_step": mg.last_step if mg else None,
                             "commit_reveal": mg.raw.get("commit_reveal_weights_enabled")
                             if mg else None})
            return {"block": block, "subnets": rows}
        if args.command == "hyperparams":
            from bittensor.cli.hyperparams_view import fetch_hyperparameters

            params = await fetch_hyperparameters(client, args.netuid)  # what btcli lists
            if params is None:
                return None
            block_time = await client.block_time()
            readings = {name: reading(name, value, block_time) for name, value in params.items()}
            return {"block": block, "block_time": block_time, "netuid": args.netuid,
                    "hyperparameters": params,
                    "readings": {name: text for name, text in readings.items() if text}}
        mg = await client.subnets.metagraph(args.netuid)
        if mg is None:
            return None
        return {"block": block, "netuid": args.netuid, "tempo": mg.tempo,
                "last_step": mg.last_step, "neurons": [
                    {"uid": n.uid, "hotkey": n.hotkey, "coldkey": n.coldkey,
                     "stake": n.total_stake.rao / 1e9, "stake_rao": int(n.total_stake.rao),
                     "permit": bool(n.validator_permit),
                     "incentive": n.incentive, "dividends": n.dividends,
                     "consensus": n.consensus, "vtrust": _vtrust(mg, n.uid),
                     "emission": n.emission.rao / 1e9, "emission_rao": int(n.emission.rao),
                     "last_update": n.last_update, "active": n.active, "axon": n.axon,
                     "commitment": n.commitment.value if n.commitment else None}
                    for n in mg.neurons]}


def reading(name: str, raw: Any, block_time: float) -> str | None:
    """A hyperparameter's meaning as the SDK renders it (``≈ 0.5``, ``≈ 1.26``, ``= τ0.7``),
    except that block counts are timed at this chain's block time (the SDK assumes 12 s)."""
    from bittensor import hyperparams

    if hyperparams.kind_of(name) == "blocks" and type(raw) is int:
        return f"≈ {fmt_duration(raw * block_time)}" if raw else None
    return hyperparams.annotate(name, raw)


def fmt_duration(seconds: float) -> str:
    """``2.5s``, ``20m 50s``, ``1d 4h``: the two largest units."""
    if seconds < 60:
        return f"{seconds:g}s"
    parts, left = [], int(round(seconds))
    for suffix, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or parts:
            parts.append(f"{left // size}{suffix}")
            left %= size
    return " ".join(parts[:2])


def _vtrust(mg: Any, uid: int) -> float:
    values = mg.raw.get("validator_trust") or []
    return values[uid] / 65535 if uid < len(values) else 0.0


def short_key(ss58: str | None) -> str:
    """First 6 and last 4 characters of an ss58 address."""
    if not ss58:
        return ""
    return ss58 if len(ss58) <= 11 else f"{ss58[:6]}…{ss58[-4:]}"


def fmt_alpha(value: float) -> str:
    """Alpha/TAO amounts: 4 decimals below 1000, 2 with thousands separators above."""
    if value == 0:
        return "0"
    return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.4f}"


def fmt_unit(value: float) -> str:
    """0..1 fractions (incentive, dividends, consensus, vtrust): 4 decimals."""
    return f"{value:.4f}"


def _table(title: str) -> Any:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, padding=0,
                 pad_edge=False, title_justify="left")


def _render(command: str, data: dict) -> None:
    from rich.console import Console

    # Tables take their natural width (about 100 columns for the metagraph); the console is
    # wide enough that rich never squeezes or truncates a column, even on a pipe (where it
    # would assume 80 columns).
    console = Console(width=max(160, Console().width), soft_wrap=False)
    if command == "status":
        console.print(f"simnet {data['url']}: block {data['block']}, "
                      f"{data['block_time']}s/block, {data['subnets']} subnet(s)",
                      markup=False, highlight=False)
        return
    if command == "subnets":
        table = _table(f"subnets at block {data['block']}")
        for column in ("netuid", "owner", "neurons", "tempo", "burn τ", "last step", "CR"):
            table.add_column(column, no_wrap=True,
                             justify="left" if column == "owner" else "right")
        for row in data["subnets"]:
            table.add_row(str(row["netuid"]), short_key(row["owner"]), str(row["neurons"]),
                          str(row["tempo"]), fmt_alpha(row["burn_tao"]),
                          str(row["last_step"]), "on" if row["commit_reveal"] else "off")
        console.print(table)
        return
    if command == "hyperparams":
        table = _table(f"netuid {data['netuid']} hyperparameters at block {data['block']}")
        table.add_column("name", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_column("reading", no_wrap=True)  # the SDK's (and btcli's) normalised value
        for name, value in sorted(data["hyperparameters"].items()):
            table.add_row(name, str(value), data["readings"].get(name, ""))
        console.print(table)
        console.print("value: the raw on-chain integer (what `btcli hparams set` takes); "
                      "reading: its meaning (fractions, U64F64 multipliers, τ, block counts "
                      f"timed at {data['block_time']:g}s/block)", style="dim", markup=False)
        return
    table = _table(f"netuid {data['netuid']} metagraph at block {data['block']} "
                   f"(tempo {data['tempo']}, last epoch {data['last_step']})")
    for column in ("uid", "hotkey", "stake α", "vp", "incentive", "dividends",
                   "consensus", "vtrust", "emission α", "updated", "axon"):
        table.add_column(column, no_wrap=column != "axon", overflow="fold",
                         justify="left" if column in ("hotkey", "axon", "vp") else "right")
    for n in data["neurons"]:
        table.add_row(str(n["uid"]), short_key(n["hotkey"]), fmt_alpha(n["stake"]),
                      "✓" if n["permit"] else "", fmt_unit(n["incentive"]),
                      fmt_unit(n["dividends"]), fmt_unit(n["consensus"]),
                      fmt_unit(n["vtrust"]), fmt_alpha(n["emission"]), str(n["last_update"]),
                      n["axon"] or "")
    console.print(table)
    console.print("vp: validator permit; stake and emission in alpha (emission: last epoch)",
                  style="dim", markup=False)
