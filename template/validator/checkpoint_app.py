"""The validator's public HTTP API: checkpoints and round records (anyone may fetch and verify
them: a record's sha256 is the lead's on-chain commitment)."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response

from protocol.messages import CheckpointInfo

_HASH = re.compile(r"^[0-9a-f]{64}$")
_SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{46,48}$")


def create_checkpoint_app(checkpoint_dir: Path, latest: Callable[[], CheckpointInfo | None],
                          record_of: Callable[[int], str | None] = lambda _: None,
                          base_of: Callable[[int], CheckpointInfo | None] = lambda _: None,
                          archive_of: Callable[[int], Path] | None = None) -> FastAPI:
    """`record_of(round)`: that round's record as canonical JSON (what its digest is taken of);
    `base_of(round)`: the checkpoint the round's miners were sent to train from (a lead's);
    `archive_of(round)`: the folder of the round's merged contributions, by hotkey."""
    app = FastAPI(title="deai validator")

    @app.get("/v1/checkpoint/latest")
    async def get_latest() -> CheckpointInfo:
        info = latest()
        if info is None:
            raise HTTPException(404, "no checkpoint yet")
        return info

    @app.get("/v1/checkpoint/{digest}")
    async def get_checkpoint(digest: str) -> FileResponse:
        if not _HASH.match(digest):
            raise HTTPException(400, "checkpoint id must be a lowercase sha256 hex digest")
        path = checkpoint_dir / f"{digest}.safetensors"
        if not path.exists():
            raise HTTPException(404, f"unknown checkpoint {digest[:12]}")
        return FileResponse(path, media_type="application/octet-stream")

    @app.get("/v1/rounds/{round_index}")
    async def get_round(round_index: int) -> Response:
        if round_index < 0:
            raise HTTPException(400, "round index must be >= 0")
        record = record_of(round_index)
        if record is None:
            raise HTTPException(404, f"no record of round {round_index} here (yet)")
        return Response(content=record, media_type="application/json")

    @app.get("/v1/rounds/{round_index}/base")
    async def get_round_base(round_index: int) -> CheckpointInfo:
        info = base_of(round_index) if round_index >= 0 else None
        if info is None:
            raise HTTPException(404, f"no work was sent for round {round_index} from here")
        return info

    @app.get("/v1/rounds/{round_index}/contributions/{hotkey}")
    async def get_merged_contribution(round_index: int, hotkey: str) -> FileResponse:
        """The bytes of a contribution the round merged: with the record, what a node needs to
        replay the round onto the checkpoint it holds instead of downloading the next one."""
        if round_index < 0 or not _SS58.match(hotkey) or archive_of is None:
            raise HTTPException(400, "round index must be >= 0 and hotkey an ss58 address")
        path = archive_of(round_index) / f"{hotkey}.safetensors"
        if not path.exists():
            raise HTTPException(404, f"no merged contribution of {hotkey[:10]} in round {round_index} here")
        return FileResponse(path, media_type="application/octet-stream")

    return app
