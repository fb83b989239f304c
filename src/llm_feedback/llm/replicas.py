"""One model served by several replicas (`base_url` as a list): which replica takes the next request.

Each request goes to the replica with the fewest requests outstanding (ties taken in turn), so a slow replica gets
fewer. A replica that fails `REST_AFTER` times in a row (a refused or dropped connection, a timeout, 429, 5xx) rests:
nothing is sent to it for `rest_s`, doubling at each rest that follows, up to `rest_max_s`; then one request probes
it, and a success puts it back in full. A request that failed on a replica is sent elsewhere when the runner retries
it, so a replica that dies mid-run costs retries, never an answer. With every replica resting, a request waits for the
first one due back. A lone server never rests: the runner's backoff already spaces its retries.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from llm_feedback.llm.base import TransientError

REST_AFTER = 3  # failures in a row that send a replica to rest
LONGEST_DOUBLING = 30  # 2**30 rests: past any cap, and far from a float's overflow


@dataclass(eq=False)
class Replica:
    url: str
    outstanding: int = 0
    failures: int = 0  # in a row
    rests: int = 0  # since its last success; a replica back from a rest takes one request at a time until it succeeds
    rested_at: float = -math.inf
    back_at: float = -math.inf

    def ready(self, now: float) -> bool:
        return now >= self.back_at and (self.rests == 0 or self.outstanding == 0)


class Replicas:
    def __init__(self, urls: Sequence[str], *, rest_s: float, rest_max_s: float) -> None:
        if not urls:
            raise ValueError("no replica to send requests to")
        self.replicas = [Replica(url) for url in urls]
        self._rest_s = rest_s
        self._rest_max_s = rest_max_s
        self._rest_after = REST_AFTER if len(urls) > 1 else None
        self._turn = 0
        self._changed = asyncio.Event()  # set (and replaced) whenever a replica may have become ready
        self._failed_on: dict[Hashable, Replica] = {}  # a request whose last attempt failed: where it failed

    @asynccontextmanager
    async def use(self, request: Hashable) -> AsyncIterator[str]:
        """A replica's URL for one attempt of `request` (any key that stays the same across its attempts). An attempt
        that ends in TransientError, or is cancelled (the runner's timeout), counts against the replica; any other
        end, an error reply included, shows it alive."""
        replica = await self._pick(avoid=self._failed_on.pop(request, None))
        replica.outstanding += 1
        sent = time.monotonic()
        try:
            yield replica.url
        except (TransientError, asyncio.CancelledError):
            self._failed(replica, sent)
            self._failed_on[request] = replica
            raise
        except Exception:
            self._answered(replica)
            raise
        self._answered(replica)

    async def _pick(self, avoid: Replica | None) -> Replica:
        while True:
            now = time.monotonic()
            self._turn = (self._turn + 1) % len(self.replicas)
            ready = [r for r in self.replicas[self._turn :] + self.replicas[: self._turn] if r.ready(now)]
            if ready:
                return min([r for r in ready if r is not avoid] or ready, key=lambda r: r.outstanding)
            changed = self._changed
            due = min((r.back_at for r in self.replicas if r.back_at > now), default=math.inf)
            try:
                await asyncio.wait_for(changed.wait(), None if due == math.inf else due - now)
            except TimeoutError:
                pass

    def _failed(self, replica: Replica, sent: float) -> None:
        replica.outstanding -= 1
        # A request sent before the replica's latest rest began was counted in the failures that sent it there.
        if self._rest_after is not None and sent >= replica.rested_at:
            replica.failures += 1
            if replica.failures >= self._rest_after:
                now = time.monotonic()
                replica.rested_at = now
                replica.back_at = now + min(self._rest_s * 2 ** min(replica.rests, LONGEST_DOUBLING), self._rest_max_s)
                replica.rests += 1
        self._notify()

    def _answered(self, replica: Replica) -> None:
        replica.outstanding -= 1
        replica.failures = replica.rests = 0
        replica.back_at = -math.inf  # it answers: no need to wait out a rest
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
