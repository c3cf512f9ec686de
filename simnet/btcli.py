"""``python -m simnet btcli [--url URL] <btcli arguments>``: the real btcli against simnet.

btcli speaks Substrate JSON-RPC over a WebSocket; simnet speaks its own HTTP+JSON. Every
chain connection btcli makes goes through the name ``Client`` in ``bittensor.cli.context``
(``AppContext.run``) and, for ``misc latency``, in ``bittensor.cli.commands.misc``. This
launcher rebinds those names to a ``bt.Client`` subclass that always talks to simnet through
``SimSubstrate`` (the SDK's own ``substrate=`` seam), then runs btcli's ``main()`` with the
given arguments. btcli's code on disk is not copied or changed: every command, prompt,
option and output format is btcli's own.

The network label is ``SIM_LABEL`` (the SDK keys its token-symbol and subnet-name caches in
``~/.bittensor`` by it), so a simnet never shares cached values with a real network.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from .client import SIM_LABEL, URL_ENV, SimSubstrate, simnet_url

NETWORK_FLAGS = ("--network", "-n")


class BtcliUsageError(ValueError):
    """Arguments the launcher refuses before btcli runs."""


def split_launcher_args(argv: list[str]) -> tuple[Optional[str], list[str]]:
    """``[--url URL | --url=URL] <btcli args>`` -> (url or None, btcli args). Only a leading
    ``--url`` is the launcher's; everything after it goes to btcli untouched."""
    if argv and argv[0] == "--url":
        if len(argv) < 2:
            raise BtcliUsageError("--url needs a value, e.g. --url http://127.0.0.1:9946")
        return argv[1], argv[2:]
    if argv and argv[0].startswith("--url="):
        return argv[0].split("=", 1)[1], argv[1:]
    return None, list(argv)


def check_btcli_args(args: list[str]) -> None:
    """The launcher decides the network; a ``--network`` would only relabel simnet's
    output (explorer links, caches) as another chain's."""
    for arg in args:
        if arg in NETWORK_FLAGS or arg.startswith("--network="):
            raise BtcliUsageError(
                f"{arg}: `simnet btcli` always talks to the simnet at --url / ${URL_ENV}; "
                "drop --network (for a real chain run plain `btcli`)")


def simnet_client_class(url: str) -> type:
    """A ``bt.Client`` that ignores the network it is given and uses simnet at ``url``."""
    import bittensor.client

    class SimnetClient(bittensor.client.Client):
        def __init__(self, network: str = SIM_LABEL, *, policy: Any = None, **_rpc_options: Any):
            # fallback/archive endpoints and retry_forever configure the WebSocket backend,
            # which simnet replaces.
            super().__init__(SIM_LABEL, policy=policy, substrate=SimSubstrate(url))

    return SimnetClient


def install(url: str) -> None:
    """Point every chain connection btcli opens in this process at simnet."""
    from bittensor.cli import context
    from bittensor.cli.commands import misc

    client_class = simnet_client_class(url)
    context.Client = client_class
    misc.Client = client_class


def run(argv: list[str]) -> int:
    """Run btcli with ``argv`` (launcher options first) against simnet; its exit status."""
    try:
        url, args = split_launcher_args(argv)
        check_btcli_args(args)
    except BtcliUsageError as error:
        print(f"simnet btcli: {error}", file=sys.stderr)
        return 2
    install(simnet_url(url))
    from bittensor.cli.main import main

    saved = sys.argv
    sys.argv = ["btcli", "--network", SIM_LABEL, *args]
    try:
        main()
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":  # btcli's usage line names this module (`python -m simnet.btcli`)
    raise SystemExit(run(sys.argv[1:]))
