"""scripts/localnet: setup_subnet.py run for real (a subprocess) against a simnet node, checked
through the SDK; start_node.sh / stop_node.sh with fake docker and node-subtensor executables."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bittensor as bt
import pytest

from template.utils.ports import free_port

from template.chain.client import open_client, start_simnet_process, wait_until_ready

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "localnet" / "setup_subnet.py"
START = REPO / "scripts" / "localnet" / "start_node.sh"
STOP = REPO / "scripts" / "localnet" / "stop_node.sh"
MINERS = 2
RATE_LIMIT = 7


def run_setup(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SETUP), "--subtensor.network", "sim", "--subtensor.chain_endpoint", url,
           "--wallet-path", str(tmp / "wallets"), "--state-dir", str(tmp / "state"), "--miners", str(MINERS),
           "--weights-rate-limit", str(RATE_LIMIT), "--tempo", "10", "--validator-stake", "300",
           "--permit-timeout", "60", *extra]
    return subprocess.run(cmd, cwd=str(tmp), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def simnet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("localnet")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_simnet_process(tmp / "simnet.sqlite", port, block_time=0.05, log_path=tmp / "simnet.log")
    try:
        wait_until_ready(url, timeout=60)
        yield url, tmp
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def first_run(simnet):
    url, tmp = simnet
    done = run_setup(url, tmp, "--out", str(tmp / "out" / "subnet.json"))
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout), done


async def read_chain(url: str, report: dict) -> dict:
    st = bt.storage.SubtensorModule
    netuid = report["netuid"]
    client = await open_client("sim", url).connect()
    try:
        validator = report["neurons"][0]
        await client.wait_for_epoch(netuid, timeout=60)  # the permit comes from an epoch
        graph = await client.subnets.metagraph(netuid, commitments=False)
        return {
            "exists": await client.query(st.NetworksAdded, [netuid]),
            "owner": await client.query(st.SubnetOwner, [netuid]),
            "commit_reveal": await client.subnets.commit_reveal_enabled(netuid),
            "rate_limit": await client.read("weights_rate_limit", netuid=netuid),
            "tempo": await client.query(st.Tempo, [netuid]),
            "started": await client.query(st.FirstEmissionBlockNumber, [netuid]),
            "stake": int(await client.query(st.TotalHotkeyAlpha, [validator["hotkey_ss58"], netuid])) / 1e9,
            "uids": {n["hotkey_ss58"]: await client.read("uid", hotkey_ss58=n["hotkey_ss58"], netuid=netuid)
                     for n in report["neurons"]},
            "hotkeys": {n.uid: n.hotkey for n in graph.neurons},
            "coldkeys": {n.uid: n.coldkey for n in graph.neurons},
            "permit": {n.uid: bool(n.validator_permit) for n in graph.neurons},
            "subnets": [s.netuid for s in await client.read("subnets")],
        }
    finally:
        await client.close()


def test_setup_subnet_reaches_a_running_subnet(simnet, first_run):
    url, tmp = simnet
    report, done = first_run
    chain = asyncio.run(read_chain(url, report))
    netuid = report["netuid"]

    assert report["created"] is True
    assert chain["exists"] is True
    assert chain["owner"] == report["owner"]["coldkey_ss58"]
    assert chain["commit_reveal"] is False and report["commit_reveal_weights_enabled"] is False
    assert chain["rate_limit"] == RATE_LIMIT == report["weights_rate_limit"]
    assert chain["tempo"] == 10 == report["tempo"]
    assert chain["started"] is not None

    validator, *miners = report["neurons"]
    assert validator["role"] == "validator" and len(miners) == MINERS
    assert all(m["role"] == "miner" for m in miners)
    assert chain["stake"] > 0 and validator["stake_alpha"] > 0
    assert validator["validator_permit"] is True
    assert chain["permit"][validator["uid"]] is True
    uids = [n["uid"] for n in report["neurons"]]
    assert len(set(uids)) == len(uids)
    for neuron in report["neurons"]:
        assert chain["uids"][neuron["hotkey_ss58"]] == neuron["uid"]
        assert chain["hotkeys"][neuron["uid"]] == neuron["hotkey_ss58"]
        assert chain["coldkeys"][neuron["uid"]] == neuron["coldkey_ss58"]
        wallet = bt.Wallet(neuron["wallet"], neuron["hotkey"], path=report["wallet_path"])
        assert wallet.hotkey.ss58_address == neuron["hotkey_ss58"]
        assert not wallet.coldkey_file.is_encrypted()
        cmd = neuron["command"]
        module = "neurons.validator" if neuron["role"] == "validator" else "neurons.miner"
        assert cmd[1:3] == ["-m", module]
        flags = dict(zip(cmd[3::2], cmd[4::2]))
        assert flags["--netuid"] == str(netuid)
        assert flags["--subtensor.network"] == "sim" and flags["--subtensor.chain_endpoint"] == url
        assert flags["--wallet.name"] == neuron["wallet"] and flags["--wallet.path"] == report["wallet_path"]
        assert flags["--axon.port"] == str(neuron["axon_port"])
    assert len({n["axon_port"] for n in report["neurons"]}) == len(uids)
    assert chain["hotkeys"][report["owner"]["uid"]] == report["owner"]["hotkey_ss58"]

    assert json.loads((tmp / "out" / "subnet.json").read_text()) == report
    assert "start each neuron" in done.stderr


def test_setup_subnet_commands_parse_with_the_neuron_config(first_run):
    from template.config import build_parser

    report, _ = first_run
    for neuron in report["neurons"]:
        sections = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data"]
        sections += ["round", "recipe", "validator"] if neuron["role"] == "validator" else ["miner"]
        args = vars(build_parser(sections, "test").parse_args(neuron["command"][3:]))
        assert args["netuid"] == report["netuid"]
        assert args["wallet.hotkey"] == neuron["hotkey"]


def test_setup_subnet_rerun_is_idempotent(simnet, first_run):
    url, tmp = simnet
    report, _ = first_run
    again = run_setup(url, tmp)
    assert again.returncode == 0, again.stderr[-4000:]
    second = json.loads(again.stdout)
    assert second["created"] is False and second["netuid"] == report["netuid"]
    assert [(n["name"], n["uid"], n["hotkey_ss58"]) for n in second["neurons"]] == \
           [(n["name"], n["uid"], n["hotkey_ss58"]) for n in report["neurons"]]
    assert "already registered" in again.stderr and "already off" in again.stderr
    chain = asyncio.run(read_chain(url, second))
    assert chain["subnets"].count(report["netuid"]) == 1
    assert len(chain["hotkeys"]) == 1 + 1 + MINERS  # owner, validator, miners: nothing registered twice


def test_setup_subnet_names_the_chain_error(simnet, first_run):
    """A wrong sudo key: the failing call, the chain's error name and what to do are printed."""
    url, tmp = simnet
    (tmp / "other").mkdir(exist_ok=True)
    done = run_setup(url, tmp / "other", "--sudo-uri", "//Bob")
    assert done.returncode == 2
    assert "failed: RequireSudo" in done.stderr, done.stderr
    assert "what to do: the sudo key is not this chain's sudo account" in done.stderr


def test_setup_subnet_without_a_node_says_what_to_do(tmp_path):
    port = free_port()  # nothing listens there
    done = subprocess.run([sys.executable, str(SETUP), "--subtensor.network", f"ws://127.0.0.1:{port}",
                           "--wallet-path", str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"ws://127.0.0.1:{port}" in done.stderr and "start_node.sh" in done.stderr


def test_setup_subnet_refuses_public_networks(tmp_path):
    done = subprocess.run([sys.executable, str(SETUP), "--subtensor.network", "finney",
                           "--wallet-path", str(tmp_path / "w")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "local chain only" in done.stderr
    assert not (tmp_path / "w").exists()


# --- start_node.sh / stop_node.sh -----------------------------------------------------------------

def minimal_path(tmp: Path, tools=("bash", "env", "dirname", "sed", "head", "cat", "grep", "mkdir", "rm",
                                   "sleep", "seq", "printf", "nohup", "tail")) -> str:
    """A PATH holding only basic tools: no docker, no node-subtensor."""
    bindir = tmp / "minbin"
    bindir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return str(bindir)


def script_env(tmp: Path, path: str) -> dict:
    return {"HOME": str(tmp), "PATH": path, "LOCALNET_DIR": str(tmp / "node"), "FAKE_LOG": str(tmp / "calls.log")}


def fake(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/usr/bin/env bash\n" + body)
    exe.chmod(0o755)


def test_start_node_without_docker_or_binary_explains_both(tmp_path):
    done = subprocess.run(["bash", str(START)], env=script_env(tmp_path, minimal_path(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    err = done.stderr
    assert "cannot start a subtensor localnet node" in err
    assert "docker:         not installed" in err
    assert "node-subtensor' is not on PATH" in err
    assert "ghcr.io/opentensor/subtensor-localnet:devnet-ready" in err and "cargo build" in err


def test_start_node_with_docker_cli_but_no_engine(tmp_path):
    path = minimal_path(tmp_path)
    fake(tmp_path / "fakebin", "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1\n')
    done = subprocess.run(["bash", str(START)], env=script_env(tmp_path, f"{tmp_path / 'fakebin'}:{path}"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "engine is not reachable (Cannot connect to the Docker daemon)" in done.stderr


def test_start_node_docker_runs_the_localnet_image(tmp_path):
    path = minimal_path(tmp_path)
    fake(tmp_path / "fakebin", "docker", 'echo "$*" >> "$FAKE_LOG"\ncase "$1" in info) echo 27.0;; '
                                          'run) echo cid;; esac\nexit 0\n')
    env = script_env(tmp_path, f"{tmp_path / 'fakebin'}:{path}")
    for flags, blocks in (([], "True"), (["--slow", "--tag", "devnet"], "False")):
        done = subprocess.run(["bash", str(START), "--no-wait", *flags], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        run = [line for line in (tmp_path / "calls.log").read_text().splitlines() if line.startswith("run ")][-1]
        tag = "devnet" if flags else "devnet-ready"
        assert run == (f"run -d --rm --name local_chain -p 9944:9944 -p 9945:9945 "
                       f"ghcr.io/opentensor/subtensor-localnet:{tag} {blocks}")


def test_start_and_stop_a_binary_localnet(tmp_path):
    path = minimal_path(tmp_path)
    fake(tmp_path / "fakebin", "node-subtensor",
         'echo "$*" >> "$FAKE_LOG"\ncase "$1" in build-spec) echo "{}"; exit 0;; key) exit 0;; esac\n'
         'exec sleep 120\n')
    env = script_env(tmp_path, f"{tmp_path / 'fakebin'}:{path}")
    done = subprocess.run(["bash", str(START), "--no-wait"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pids = [int(line.split()[0]) for line in (tmp_path / "node" / "pids").read_text().splitlines()]
    try:
        for _ in range(100):  # the nodes write their arguments once they run
            calls = (tmp_path / "calls.log").read_text().splitlines()
            if sum(c.startswith("--base-path") for c in calls) == 3:
                break
            time.sleep(0.1)
        spec = f"--chain={tmp_path / 'node' / 'specs' / 'local.json'}"
        assert calls[0] == "build-spec --disable-default-bootnode --raw --chain local"
        nodes = [c for c in calls if c.startswith("--base-path")]
        assert len(nodes) == 3 == len(pids)
        for name, who, p2p, rpc in zip(("one", "two", "three"), ("--one", "--two", "--name Three"),
                                       (30334, 30335, 30336), (9944, 9945, 9946)):
            node = next(c for c in nodes if c.startswith(f"--base-path {tmp_path / 'node' / name} "))
            assert spec in node and who in node and f"--port {p2p}" in node and f"--rpc-port {rpc}" in node
            assert "--validator" in node
        assert any("--suri //Three --key-type gran" in c for c in calls)
        again = subprocess.run(["bash", str(START), "--no-wait"], env=env, capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stop = subprocess.run(["bash", str(STOP)], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not (tmp_path / "node" / "pids").exists()
    quiet = subprocess.run(["bash", str(STOP)], env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "no localnet node" in quiet.stderr
