"""The validator's side of the miner protocol: signed requests over httpx, never raising on a
miner's failure (a dead or slow miner costs the round only its own share)."""
from __future__ import annotations

from dataclasses import dataclass

import httpx

from protocol.auth import HEADER_CONTRIBUTION_SIGNATURE, sign_request, verify_contribution
from protocol.limits import MAX_CONTRIBUTION_BYTES, MAX_INFO_BYTES
from protocol.messages import InfoResponse, TrainRequest
from template.net.bounded import read_bounded


@dataclass(frozen=True)
class MinerEndpoint:
    uid: int
    hotkey: str
    url: str  # http://ip:port


@dataclass
class Reply:
    status: str  # ok | pending | refused | unreachable
    detail: str = ""
    body: bytes = b""


class MinerClient:
    def __init__(self, signer, timeout: float):
        self.signer = signer
        self.http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))

    async def close(self) -> None:
        await self.http.aclose()

    async def send_work(self, miner: MinerEndpoint, order: TrainRequest) -> Reply:
        body = order.model_dump_json().encode()
        path = "/v1/train"
        headers = sign_request(self.signer, method="POST", path=path, body=body, receiver_ss58=miner.hotkey)
        headers["content-type"] = "application/json"
        try:
            response = await self.http.post(miner.url + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Reply("unreachable", f"{type(exc).__name__}: {exc}")
        if response.status_code == 202:
            return Reply("ok", response.json().get("status", ""))
        return Reply("refused", f"{response.status_code} {_detail(response)}")

    async def info(self, miner: MinerEndpoint) -> InfoResponse | None:
        try:
            response = await self.http.get(miner.url + "/v1/info")
            if response.status_code == 200 and len(response.content) <= MAX_INFO_BYTES:
                return InfoResponse.model_validate_json(response.content)
        except (httpx.HTTPError, ValueError):
            pass
        return None

    async def fetch_contribution(self, miner: MinerEndpoint, round_index: int, wait: float = 0.0) -> Reply:
        path = f"/v1/contribution?round={round_index}" + (f"&wait={wait:.2f}" if wait > 0 else "")
        headers = sign_request(self.signer, method="GET", path=path, body=b"", receiver_ss58=miner.hotkey)
        try:
            async with self.http.stream("GET", miner.url + path, headers=headers) as response:
                if response.status_code == 202:
                    return Reply("pending")
                if response.status_code != 200:
                    await response.aread()
                    return Reply("refused", f"{response.status_code} {_detail(response)}")
                body = await read_bounded(response, MAX_CONTRIBUTION_BYTES)
                if body is None:
                    return Reply("refused", f"contribution exceeds {MAX_CONTRIBUTION_BYTES} bytes")
                signature = response.headers.get(HEADER_CONTRIBUTION_SIGNATURE, "")
        except httpx.HTTPError as exc:
            return Reply("unreachable", f"{type(exc).__name__}: {exc}")
        if not verify_contribution(miner.hotkey, body, signature):
            return Reply("refused", "contribution signature does not match the miner's hotkey")
        return Reply("ok", body=body)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:300]
    except ValueError:
        return response.text[:300]
