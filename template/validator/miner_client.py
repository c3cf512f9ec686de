"""The validator's side of the miner protocol: signed requests over httpx, never raising on a
miner's failure (a dead, slow or flooding miner costs the round only its own share). Every call
ends within its deadline and reads at most its size limit."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import httpx

from protocol.auth import matches_commitment, sign_request, verify_commitment
from protocol.limits import MAX_COMMITMENT_BYTES, MAX_INFO_BYTES
from protocol.messages import ContributionCommitment, InfoResponse, TrainRequest
from template.net.bounded import DeadlineExceeded, FetchError, fetch_bounded

MAX_TRAIN_ACCEPTED_BYTES = 4 * 1024


@dataclass(frozen=True)
class MinerEndpoint:
    uid: int
    hotkey: str
    url: str  # http://ip:port


class ReplyStatus(str, Enum):  # enum.StrEnum from Python 3.11 on
    OK = "ok"
    PENDING = "pending"  # the miner is still training
    REFUSED = "refused"  # it answered, but not with the work (http_status says how, when it did)
    UNREACHABLE = "unreachable"  # no complete answer: connection failed or the deadline passed
    LATE = "late"  # the caller's own deadline passed before a contribution came

    def __str__(self) -> str:  # as StrEnum: the plain value in logs and f-strings
        return self.value

    __format__ = str.__format__


@dataclass
class Reply:
    status: ReplyStatus  # equal to its plain string: Reply("late") == Reply(ReplyStatus.LATE)
    detail: str = ""  # for logs; a refusal's detail starts with its HTTP status when there is one
    body: bytes = b""
    http_status: int | None = None  # the miner's HTTP status, when it answered
    commitment: ContributionCommitment | None = None

    def __post_init__(self):
        self.status = ReplyStatus(self.status)


class MinerClient:
    def __init__(self, signer, timeout: float):
        """`timeout`: seconds one call may take in all (a long-poll gets its wait on top)."""
        self.signer = signer
        self.timeout = timeout
        self.http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))

    async def close(self) -> None:
        await self.http.aclose()

    async def send_work(self, miner: MinerEndpoint, order: TrainRequest) -> Reply:
        body = order.model_dump_json().encode()
        path = "/v1/train"
        headers = sign_request(self.signer, method="POST", path=path, body=body, receiver_ss58=miner.hotkey)
        headers["content-type"] = "application/json"
        try:
            fetched = await fetch_bounded(self.http, "POST", miner.url + path, content=body, headers=headers,
                                          limit=MAX_TRAIN_ACCEPTED_BYTES, deadline_s=self.timeout, expect=202)
        except (httpx.HTTPError, FetchError) as exc:
            return _failure(exc)
        if fetched.status != 202:
            return _refusal(fetched.status, fetched.detail())
        try:
            status = fetched.json().get("status", "")
        except (ValueError, AttributeError):
            status = ""
        return Reply(ReplyStatus.OK, str(status)[:64], http_status=202)

    async def info(self, miner: MinerEndpoint) -> InfoResponse | None:
        try:
            fetched = await fetch_bounded(self.http, "GET", miner.url + "/v1/info", limit=MAX_INFO_BYTES,
                                          deadline_s=self.timeout)
            if fetched.status == 200:
                return InfoResponse.model_validate_json(fetched.body)
        except (httpx.HTTPError, FetchError, ValueError):
            pass
        return None

    async def fetch_commitment(self, miner: MinerEndpoint, netuid: int, round_index: int, wait: float = 0.0,
                               deadline_s: float | None = None) -> Reply:
        """The miner's signed commitment to its contribution, long-polling up to `wait` seconds for
        it; the whole call ends within `deadline_s` (default: `wait` plus the client's timeout)."""
        path = f"/v1/commitment?round={round_index}" + (f"&wait={wait:.2f}" if wait > 0 else "")
        try:
            fetched = await self._get(miner, path, MAX_COMMITMENT_BYTES,
                                      wait + self.timeout if deadline_s is None else deadline_s)
        except (httpx.HTTPError, FetchError) as exc:
            return _failure(exc)
        if fetched.status == 202:
            return Reply(ReplyStatus.PENDING, http_status=202)
        if fetched.status != 200:
            return _refusal(fetched.status, fetched.detail())
        try:
            commitment = ContributionCommitment.model_validate_json(fetched.body)
        except ValueError:
            return Reply(ReplyStatus.REFUSED, "not a contribution commitment", http_status=200)
        if (commitment.netuid, commitment.round_index) != (netuid, round_index):
            return Reply(ReplyStatus.REFUSED, f"a commitment for subnet {commitment.netuid} round "
                                              f"{commitment.round_index}", http_status=200)
        if not verify_commitment(miner.hotkey, commitment):
            return Reply(ReplyStatus.REFUSED, "commitment signature does not match the miner's hotkey",
                         http_status=200)
        return Reply(ReplyStatus.OK, commitment=commitment, http_status=200)

    async def fetch_contribution(self, miner: MinerEndpoint, commitment: ContributionCommitment,
                                 deadline_s: float | None = None) -> Reply:
        """The bytes `commitment` promised (read up to its size and no further), within
        `deadline_s` (default: the client's timeout). Before the round's reveal the miner answers
        425."""
        try:
            fetched = await self._get(miner, f"/v1/contribution?round={commitment.round_index}",
                                      commitment.size_bytes, self.timeout if deadline_s is None else deadline_s)
        except (httpx.HTTPError, FetchError) as exc:
            return _failure(exc)
        if fetched.status != 200:
            return _refusal(fetched.status, fetched.detail())
        if not matches_commitment(fetched.body, commitment):
            return Reply(ReplyStatus.REFUSED, "the bytes are not the ones the miner committed to", http_status=200)
        return Reply(ReplyStatus.OK, body=fetched.body, commitment=commitment, http_status=200)

    async def _get(self, miner: MinerEndpoint, path: str, limit: int, deadline_s: float):
        headers = sign_request(self.signer, method="GET", path=path, body=b"", receiver_ss58=miner.hotkey)
        return await fetch_bounded(self.http, "GET", miner.url + path, headers=headers, limit=limit,
                                   deadline_s=deadline_s)


def _refusal(status: int, detail: str) -> Reply:
    return Reply(ReplyStatus.REFUSED, f"{status} {detail}", http_status=status)


def _failure(exc: Exception) -> Reply:
    if isinstance(exc, FetchError) and not isinstance(exc, DeadlineExceeded):
        return Reply(ReplyStatus.REFUSED, str(exc))  # too large, or content-encoded
    return Reply(ReplyStatus.UNREACHABLE, f"{type(exc).__name__}: {exc}"[:300])
