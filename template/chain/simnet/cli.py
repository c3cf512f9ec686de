"""simnet command line: run the node, and look at the chain through the SDK.

    python -m template.chain.simnet serve --db PATH [--host H] [--port P] [--block-time S]
                                           [--manual-clock]
    python -m template.chain.simnet status|subnets [--json] [--url URL]
    python -m template.chain.simnet hyperparams|metagraph --netuid N [--json] [--url URL]
    python -m template.chain.simnet advance --blocks N [--url URL]     (manual clock)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:9946"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m template.chain.simnet",
                                     description="simnet: the embedded simulated subtensor")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the simnet node")
    serve.add_argument("--db", required=True, help="SQLite file (created if missing)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9946)
    serve.add_argument("--block-time", type=float, default=0.25, help="seconds per block")
    serve.add_argument("--manual-clock", action="store_true",
                       help="blocks advance only on POST /admin/advance")
    serve.add_argument("--log-level", default="INFO")
    for name, needs_netuid in (("status", False), ("subnets", False),
                               ("hyperparams", True), ("metagraph", True)):
        view = sub.add_parser(name, help=f"show {name}")
        view.add_argument("--url", default=DEFAULT_URL)
        view.add_argument("--json", action="store_true", help="print JSON")
        if needs_netuid:
            view.add_argument("--netuid", type=int, required=True)
    advance = sub.add_parser("advance", help="advance a manual-clock node")
    advance.add_argument("--url", default=DEFAULT_URL)
    advance.add_argument("--blocks", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .server import serve

        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        serve(args.db, args.host, args.port, args.block_time, args.manual_clock)
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
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        _render(args.command, data)
    return 0


async def _gather(args: argparse.Namespace) -> Any:
    """Read what a view shows through the SDK over simnet."""
    from template.chain.client import open_client

    async with open_client("sim", args.url) as client:
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
                             "burn_tao": float(info.burn.tao),
                             "last_step": mg.last_step if mg else None,
                             "commit_reveal": mg.raw.get("commit_reveal_weights_enabled")
                             if mg else None})
            return {"block": block, "subnets": rows}
        if args.command == "hyperparams":
            params = await client.read("subnet_hyperparameters", netuid=args.netuid)
            return None if params is None else {"block": block, "netuid": args.netuid,
                                                "hyperparameters": params}
        mg = await client.subnets.metagraph(args.netuid)
        if mg is None:
            return None
        return {"block": block, "netuid": args.netuid, "tempo": mg.tempo,
                "last_step": mg.last_step, "neurons": [
                    {"uid": n.uid, "hotkey": n.hotkey, "coldkey": n.coldkey,
                     "stake": n.total_stake.rao / 1e9, "permit": n.validator_permit,
                     "incentive": n.incentive, "dividends": n.dividends,
                     "consensus": n.consensus, "vtrust": _vtrust(mg, n.uid),
                     "emission": n.emission.rao / 1e9, "last_update": n.last_update,
                     "active": n.active, "axon": n.axon,
                     "commitment": n.commitment.value if n.commitment else None}
                    for n in mg.neurons]}


def _vtrust(mg: Any, uid: int) -> float:
    values = mg.raw.get("validator_trust") or []
    return values[uid] / 65535 if uid < len(values) else 0.0


def _render(command: str, data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if command == "status":
        console.print(f"simnet {data['url']}: block [bold]{data['block']}[/], "
                      f"{data['block_time']}s/block, {data['subnets']} subnet(s)")
        return
    if command == "subnets":
        table = Table(title=f"subnets at block {data['block']}")
        for column in ("netuid", "owner", "neurons", "tempo", "burn τ", "last step", "CR"):
            table.add_column(column)
        for row in data["subnets"]:
            table.add_row(str(row["netuid"]), (row["owner"] or "")[:10], str(row["neurons"]),
                          str(row["tempo"]), f"{row['burn_tao']:.4f}", str(row["last_step"]),
                          str(row["commit_reveal"]))
        console.print(table)
        return
    if command == "hyperparams":
        table = Table(title=f"netuid {data['netuid']} hyperparameters at block {data['block']}")
        table.add_column("name")
        table.add_column("value")
        for name, value in sorted(data["hyperparameters"].items()):
            table.add_row(name, str(value))
        console.print(table)
        return
    table = Table(title=f"netuid {data['netuid']} metagraph at block {data['block']} "
                        f"(tempo {data['tempo']}, last epoch {data['last_step']})")
    for column in ("uid", "hotkey", "stake α", "permit", "incentive", "dividends",
                   "consensus", "vtrust", "emission α", "last update", "axon"):
        table.add_column(column, justify="right" if column not in ("hotkey", "axon") else "left")
    for n in data["neurons"]:
        table.add_row(str(n["uid"]), n["hotkey"][:10], f"{n['stake']:.3f}",
                      "✓" if n["permit"] else "", f"{n['incentive']:.4f}",
                      f"{n['dividends']:.4f}", f"{n['consensus']:.4f}", f"{n['vtrust']:.4f}",
                      f"{n['emission']:.4f}", str(n["last_update"]), n["axon"] or "")
    console.print(table)
