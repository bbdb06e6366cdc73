"""One job listing per poll interval for everything that waits on jobs of one service.

Every trigger, sensor and batch waiting on OSCAR jobs in one process (one triggerer, one
worker) needs the same thing: ``GET /system/logs/{service}`` every few seconds. Asking once per
waiting job multiplies the load on OSCAR by the number of jobs (and every listing is paged), so
waiters register with a per-event-loop :class:`JobListCoalescer` instead. Per key (endpoint,
credentials, service) a single poller lists the jobs (all pages) once per interval, the
shortest interval any registered waiter asked for, over one HTTP client, and hands the same
listing to every waiter; when the last waiter leaves, the poller stops and closes its client.

A waiter only ever receives listings that *started* after it registered (or after its previous
listing), so a job submitted just before registering is always in the first listing it sees.

A listing that fails reaches every waiter as the exception it raised, to be taken as "try
again" when it can heal (:func:`~airflow_provider_oscar.patience.can_heal`): the poller keeps
going, pausing twice as long after each failure in a row (up to a minute), so an outage costs
the cluster one request per growing interval, not one per waiter.

Usage (inside a coroutine)::

    async with coalescer().watch(settings, "plants", interval=5.0) as feed:
        while True:
            jobs = await feed.next(deadline=deadline)  # one shared listing per interval
            ...
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from airflow_provider_oscar.hooks.api import ClusterSettings, JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.patience import MAX_PAUSE

log = logging.getLogger(__name__)
Jobs = dict[str, JobInfo]
Key = tuple[str, str, str]

__all__ = ["Feed", "JobListCoalescer", "coalesce_key", "coalescer"]


def coalesce_key(settings: ClusterSettings, service: str) -> Key:
    """(endpoint, fingerprint of the credentials, service): who may share a listing.

    Credentials are part of the key because OSCAR shows OIDC users only their own jobs.
    """
    endpoint, fingerprint = settings.key
    return endpoint, fingerprint, service


@dataclass(eq=False)
class _Round:
    """One listing: scheduled, then started (``started`` set), then resolved."""

    seq: int
    future: asyncio.Future[Jobs]
    started: float | None = None


class Feed:
    """The listings of one service on one cluster, shared by every registered waiter."""

    def __init__(self, key: Key, settings: ClusterSettings, owner: JobListCoalescer) -> None:
        self.key = key
        self.settings = settings
        self.service = key[2]
        self.listings = 0  # listings finished (each may be several page requests)
        self.failures = 0  # listings failed in a row
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._intervals: dict[int, float] = {}
        self._seq = count()
        self._upcoming = self._new_round()
        self._wake = asyncio.Event()
        self._urgent = False
        self._last_started = float("-inf")
        self._task: asyncio.Task[None] | None = None

    # waiters ------------------------------------------------------------------------------

    @property
    def waiters(self) -> int:
        return len(self._intervals)

    @property
    def interval(self) -> float:
        return min(self._intervals.values(), default=5.0)

    def _add(self, token: int, interval: float) -> None:
        shorter = interval < self.interval
        self._intervals[token] = max(0.0, float(interval))
        if not self._ensure_poller() and shorter:
            self._wake.set()  # re-plan the pause with the shorter interval

    def _remove(self, token: int) -> None:
        self._intervals.pop(token, None)
        if not self._intervals:
            self._owner._drop(self)
            self._wake.set()  # let the poller notice and close its client

    def _ensure_poller(self) -> bool:
        """Start the poller unless it runs; whether it was started now."""
        if self._task is not None:
            return False
        self._task = self._loop.create_task(self._poll(), name=f"oscar-jobs:{self.service}")
        return True

    async def next(self, *, deadline: float | None = None) -> Jobs:
        """The next listing (one that starts after this call); raises what the listing raised.

        With a ``deadline`` (epoch seconds) that falls before the listing is due, the listing
        is started at the deadline instead, so a waiter learns the state at its deadline.
        """
        round_ = self._upcoming
        self._ensure_poller()  # (again, should a failed session have stopped it)
        waiter = asyncio.shield(round_.future)  # a waiter's cancellation spares the others
        waiter.add_done_callback(_retrieve)
        if deadline is not None and not waiter.done():
            remaining = deadline - time.time()
            if remaining > 0:
                await asyncio.wait([waiter], timeout=remaining)
            if not waiter.done() and round_.started is None and round_ is self._upcoming:
                self._urgent = True
                self._wake.set()
        return await waiter

    # poller -------------------------------------------------------------------------------

    def _new_round(self) -> _Round:
        future: asyncio.Future[Jobs] = self._loop.create_future()
        future.add_done_callback(_retrieve)
        return _Round(next(self._seq), future)

    async def _poll(self) -> None:
        try:
            async with OscarHook().asession(settings=self.settings, max_connections=2) as session:
                while self._intervals:
                    await self._pause()
                    if not self._intervals:
                        break
                    round_, self._upcoming = self._upcoming, self._new_round()
                    round_.started = self._last_started = self._loop.time()
                    try:
                        jobs = await session.alist_jobs(self.service)
                    except Exception as exc:
                        self.failures += 1
                        round_.future.set_exception(exc)
                    else:
                        self.failures = 0
                        round_.future.set_result(jobs)
                    self.listings += 1
        except Exception as exc:  # the session itself failed: tell whoever waits
            log.warning("job poller of %s stopped: %s", self.service, exc)
            self._upcoming.future.set_exception(exc)
            self._upcoming = self._new_round()
        finally:
            self._task = None
            self._owner._drop(self)

    async def _pause(self) -> None:
        """Until one interval after the previous listing started (or until hurried)."""
        while not self._urgent and self._intervals:
            pause = min(self.interval * 2 ** min(self.failures, 16), max(MAX_PAUSE, self.interval))
            remaining = self._last_started + pause - self._loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        self._urgent = False


def _retrieve(future: asyncio.Future[Jobs]) -> None:
    """Mark a listing's exception as seen (waiters may all have left before it failed)."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False)
class JobListCoalescer:
    """The feeds of one event loop, by (endpoint, credentials, service)."""

    feeds: dict[Key, Feed] = field(default_factory=dict)
    _tokens: Any = field(default_factory=count)

    @asynccontextmanager
    async def watch(
        self, settings: ClusterSettings, service: str, interval: float
    ) -> AsyncIterator[Feed]:
        """Register a waiter for the listings of ``service``; unregister on leaving."""
        key = coalesce_key(settings, service)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(key, settings, self)
        token = next(self._tokens)
        feed._add(token, interval)
        try:
            yield feed
        finally:
            feed._remove(token)

    def _drop(self, feed: Feed) -> None:
        if self.feeds.get(feed.key) is feed and not feed.waiters:
            del self.feeds[feed.key]


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JobListCoalescer] = (
    weakref.WeakKeyDictionary()
)


def coalescer() -> JobListCoalescer:
    """The running event loop's coalescer (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = JobListCoalescer()
    return found
