"""A neuron's folder records whose it is (`neuron.json`: netuid and role), so that a restart with
another --netuid or role refuses it instead of resuming another subnet's state."""
from __future__ import annotations

import json
from pathlib import Path

from template.utils.errors import CannotStart
from template.utils.files import write_text_atomically

RECORD = "neuron.json"
MAX_RECORD_BYTES = 4096


class FolderMismatch(CannotStart):
    """The folder holds another subnet's or another role's state."""


def claim_folder(folder: Path, netuid: int, role: str) -> Path:
    """Create `folder` (or take it back) for this neuron; refuses one recorded for another netuid
    or role. A folder from before the record existed is adopted."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD
    if path.exists():
        recorded = _read(path)
        if recorded.get("netuid") != netuid:
            raise FolderMismatch(
                f"{folder} holds the state of netuid {recorded.get('netuid')}, not {netuid}: pass the --netuid it "
                f"was made for, or give this neuron its own folder (--neuron.state_dir, or leave it unset for "
                f"<logging_dir>/<wallet>/<hotkey>/netuid{netuid}/{role})")
        if recorded.get("role") != role:
            raise FolderMismatch(f"{folder} is a {recorded.get('role')}'s folder; a {role} needs its own "
                                 "(--neuron.state_dir)")
        return folder
    write_text_atomically(path, json.dumps({"netuid": netuid, "role": role}) + "\n")
    return folder


def _read(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        return found
    except (OSError, ValueError) as exc:
        raise FolderMismatch(f"{path} is unreadable ({exc}); fix or delete it to use this folder") from exc
