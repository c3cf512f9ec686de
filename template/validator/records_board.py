"""Round records over HTTP: the ones this validator serves, and the lead's that it waits for."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx
import pydantic

from protocol.limits import MAX_ROUND_RECORD_BYTES
from template.audit.lead_check import parse_record
from template.audit.round_record import RoundRecord
from template.net.bounded import FetchError, fetch_bounded


@dataclass(frozen=True)
class Lead:
    """The validator whose checkpoint every validator scores against this round."""

    hotkey: str
    url: str
    is_me: bool


@dataclass
class PublishedRecord:
    record: RoundRecord
    committed: set[str]  # the sha256 digests the lead's hotkey has committed on chain


class RoundRecordBoard:
    """Keeps this validator's recent records (served at /v1/rounds/{round}) and fetches the
    lead's, waiting until the lead has both served a record and committed its digest on chain."""

    def __init__(self, committed_digests, keep_rounds: int = 64, poll_seconds: float = 1.0,
                 refused_polls_to_give_up: int = 5, fetch_seconds: float = 10.0):
        self.committed_digests = committed_digests  # async (hotkey) -> set of sha256 hex
        self.keep_rounds = keep_rounds
        self.poll_seconds = poll_seconds
        self.fetch_seconds = fetch_seconds  # the most one fetch of the lead's record may take in all
        # A lead that refuses connections this many polls in a row is down: stop waiting, so
        # this validator is ready to elect a new lead at the next round's start.
        self.refused_polls_to_give_up = refused_polls_to_give_up
        self._served: dict[int, str] = {}

    def publish(self, record: RoundRecord) -> None:
        self._served[record.round_index] = record.canonical_json()
        for old in sorted(self._served)[:-self.keep_rounds]:
            del self._served[old]

    def served(self, round_index: int) -> str | None:
        return self._served.get(round_index)

    async def wait_for(self, lead: Lead, round_index: int, seconds: float) -> tuple[PublishedRecord | None, str]:
        """The lead's record of `round_index` once its digest is on chain (or the last record seen
        when time runs out first); None and why when no usable record came."""
        give_up = time.monotonic() + seconds
        seen: PublishedRecord | None = None
        problem = f"the lead served no record of round {round_index} in {seconds:.0f} s"
        refused = 0
        async with httpx.AsyncClient(timeout=self.fetch_seconds) as http:
            while True:
                try:
                    # one fetch never outlasts the wait (a slow lead must not stretch it)
                    fetch_deadline = min(self.fetch_seconds, max(give_up - time.monotonic(), 0.1))
                    record = await self._fetch(http, lead.url, round_index, fetch_deadline)
                    refused = 0
                    if record is not None:
                        seen = PublishedRecord(record, await self.committed_digests(lead.hotkey))
                        if record.digest() in seen.committed:
                            return seen, ""
                except httpx.ConnectError as exc:
                    refused += 1
                    problem = f"the lead does not answer: {exc}"[:300]
                    if refused >= self.refused_polls_to_give_up:
                        return seen, problem
                except (httpx.HTTPError, FetchError, ValueError, pydantic.ValidationError) as exc:
                    problem = f"the lead's record of round {round_index} is unusable: {exc}"[:300]
                except Exception as exc:  # the chain read failed: try again until time runs out
                    problem = f"reading the lead's commitment failed: {exc}"[:300]
                if time.monotonic() + self.poll_seconds > give_up:
                    return seen, problem
                await asyncio.sleep(self.poll_seconds)

    async def backs_checkpoint(self, lead: Lead, round_index: int, checkpoint: str,
                               seconds: float = 5.0) -> tuple[bool, str]:
        """Whether the lead's committed record of `round_index` names `checkpoint` as its result."""
        published, problem = await self.wait_for(lead, round_index, seconds)
        if published is None:
            return False, f"no committed record backs it ({problem})"
        if published.record.digest() not in published.committed:
            return False, f"the lead's record of round {round_index} is not what it committed on chain"
        if published.record.new_checkpoint != checkpoint:
            return False, (f"the lead's committed record of round {round_index} gives "
                           f"{published.record.new_checkpoint[:12]}, not this checkpoint")
        return True, f"the result of the lead's committed round {round_index}"

    @staticmethod
    async def _fetch(http: httpx.AsyncClient, url: str, round_index: int, deadline_s: float) -> RoundRecord | None:
        fetched = await fetch_bounded(http, "GET", f"{url}/v1/rounds/{round_index}", limit=MAX_ROUND_RECORD_BYTES,
                                      deadline_s=deadline_s)
        if fetched.status == 404:
            return None
        if fetched.status != 200:
            raise ValueError(f"the lead answered {fetched.status}")
        return parse_record(json.loads(fetched.body))
