"""Coalesced polling: triggers waiting on jobs of one service share one listing per interval.

Listings are counted where they arrive, in the embedded OSCAR (``request_counts``), and the
triggers run as the triggerer runs them: many ``run()`` coroutines in one event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from airflow.triggers.base import TriggerEvent

from airflow_provider_oscar.hooks.api import ClusterSettings, JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.faults import ErrorBurst, FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.triggers.coalesce import coalesce_key, coalescer
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger

INTERVAL = 0.2


@pytest.fixture
def connected(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Triggers reach the session's OSCAR (one attempt per request), never synchronously."""

    def no_sync_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trigger looked its connection up synchronously")

    connection = json.loads(oscar.connection_json())
    connection["extra"]["retries"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps(connection))
    monkeypatch.setattr(OscarHook, "get_connection", no_sync_lookup)
    yield


def submit(oscar: OscarLocal, service: dict[str, Any], job: str) -> None:
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=b"",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text


def listings(oscar: OscarLocal, service: str) -> int:
    assert oscar.cluster is not None
    return request_counts(oscar.cluster)[f"GET /system/logs/{service}"]


async def first_event(trigger: OscarJobTrigger) -> TriggerEvent:
    events = trigger.run()
    try:
        return await events.__anext__()
    finally:
        await events.aclose()


def job_trigger(service: str, job: str, **kwargs: Any) -> OscarJobTrigger:
    return OscarJobTrigger(service_name=service, job_name=job, poll_interval=INTERVAL, **kwargs)


@pytest.mark.usefixtures("connected")
async def test_fifty_waiting_triggers_cause_about_one_listing_per_interval(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    name = service["name"]
    oscar.faults.add(StuckJobs(service=name, count=-1))
    jobs = [f"{name}-wait-{i}" for i in range(50)]
    for job in jobs:
        submit(oscar, service, job)
    before = listings(oscar, name)
    started = time.monotonic()
    deadline = time.time() + 6 * INTERVAL
    waits = [first_event(job_trigger(name, job, deadline=deadline)) for job in jobs]
    events = await asyncio.gather(*waits)
    elapsed = time.monotonic() - started
    made = listings(oscar, name) - before
    assert {e.payload["status"] for e in events} == {"timeout"}
    assert {e.payload["job"] for e in events} == set(jobs)
    # one listing per interval (plus the one hurried at the shared deadline), not 50 per interval
    assert made <= elapsed / INTERVAL + 2, (made, elapsed)


@pytest.mark.usefixtures("connected")
async def test_each_trigger_gets_the_outcome_of_its_own_job_from_the_shared_listing(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    name = service["name"]
    oscar.faults.add(FailingJobs(service=name))
    submit(oscar, service, f"{name}-bad")
    submit(oscar, service, f"{name}-good")
    bad, good = await asyncio.gather(
        first_event(job_trigger(name, f"{name}-bad")),
        first_event(job_trigger(name, f"{name}-good")),
    )
    assert (bad.payload["status"], bad.payload["info"]["status"]) == ("failed", "Failed")
    assert (good.payload["status"], good.payload["info"]["status"]) == ("success", "Succeeded")


class GatedListings:
    """A session whose listings snapshot ``jobs`` when they start and answer when released.

    The embedded OSCAR cannot answer with a list built before a submission after that
    submission; this stand-in for the HTTP session can.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobInfo] = {}
        self.gate = asyncio.Event()
        self.started = 0

    async def alist_jobs(self, service: str) -> dict[str, JobInfo]:
        snapshot = dict(self.jobs)
        self.started += 1
        await self.gate.wait()
        return snapshot

    @asynccontextmanager
    async def session(self, *args: Any, **kwargs: Any) -> AsyncIterator[GatedListings]:
        yield self


async def test_a_new_waiter_never_gets_a_listing_that_started_before_it_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = GatedListings()
    monkeypatch.setattr(OscarHook, "asession", fake.session)
    settings = ClusterSettings("http://oscar", user="u", password="p")
    fake.jobs["svc-early"] = JobInfo("svc-early", "Pending")

    async def one_listing() -> dict[str, JobInfo]:  # as a trigger does: register, then wait
        async with coalescer().watch(settings, "svc", interval=0.01) as feed:
            return await feed.next()

    early = asyncio.ensure_future(one_listing())
    while not fake.started:
        await asyncio.sleep(0.001)  # the first listing is in flight, without svc-late
    fake.jobs["svc-late"] = JobInfo("svc-late", "Pending")  # submitted meanwhile
    late = asyncio.ensure_future(one_listing())
    await asyncio.sleep(0.005)
    fake.gate.set()
    assert "svc-late" not in await early
    assert "svc-late" in await asyncio.wait_for(late, 1)
    assert fake.started >= 2


@pytest.mark.usefixtures("connected")
async def test_failed_listings_reach_every_waiter_as_try_again_with_a_growing_pause(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    name = service["name"]
    for i in range(3):
        submit(oscar, service, f"{name}-{i}")
    oscar.faults.add(ErrorBurst(route=f"/system/logs/{name}", status=500, count=-1))
    before = listings(oscar, name)
    waiting = asyncio.gather(*(first_event(job_trigger(name, f"{name}-{i}")) for i in range(3)))
    await asyncio.sleep(INTERVAL * 12)  # the pauses double: 0.2, 0.4, 0.8 ... not 12 listings
    failed = listings(oscar, name) - before
    assert 2 <= failed <= 5, failed
    oscar.faults.clear()
    events = await asyncio.wait_for(waiting, 20)
    assert [e.payload["status"] for e in events] == ["success"] * 3


@pytest.mark.usefixtures("connected")
async def test_the_poller_stops_when_the_last_waiter_leaves(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    name = service["name"]
    submit(oscar, service, f"{name}-one")
    await first_event(job_trigger(name, f"{name}-one"))
    await asyncio.sleep(0.05)
    assert coalescer().feeds == {}
    made = listings(oscar, name)
    await asyncio.sleep(3 * INTERVAL)
    assert listings(oscar, name) == made


def test_waiters_share_a_listing_only_with_the_same_endpoint_and_credentials() -> None:
    alice = ClusterSettings("http://oscar:8080/", user="alice", password="a")
    same = ClusterSettings("http://oscar:8080", user="alice", password="a", timeout=99)
    bob = ClusterSettings("http://oscar:8080", oidc_token="bob-token")
    assert coalesce_key(alice, "svc") == coalesce_key(same, "svc")
    assert coalesce_key(alice, "svc") != coalesce_key(bob, "svc")
    assert coalesce_key(alice, "svc") != coalesce_key(alice, "other")
    assert "a" not in coalesce_key(alice, "svc")[1:2]  # credentials only as a fingerprint


@pytest.mark.usefixtures("connected")
async def test_waiters_with_different_intervals_are_served_at_the_shortest_while_it_waits(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    """A 0.1 s waiter joining a 5 s one is not held to 5 s; once it leaves, the pace is 5 s."""
    service = deploy("echo done\n")
    name = service["name"]
    oscar.faults.add(StuckJobs(service=name, count=-1))
    for job in ("slow", "fast"):
        submit(oscar, service, f"{name}-{job}")
    started = time.monotonic()
    slow = asyncio.ensure_future(
        first_event(
            OscarJobTrigger(
                service_name=name,
                job_name=f"{name}-slow",
                poll_interval=5.0,
                deadline=time.time() + 3.0,
            )
        )
    )
    await asyncio.sleep(0.2)  # the slow waiter's first listing is done
    before = listings(oscar, name)
    fast = await first_event(
        OscarJobTrigger(
            service_name=name,
            job_name=f"{name}-fast",
            poll_interval=0.1,
            deadline=time.time() + 1.0,
        )
    )
    during = listings(oscar, name) - before
    assert fast.payload["status"] == "timeout"
    assert during >= 4, during  # about ten at 0.1 s; at 5 s there would be one, at the deadline
    before = listings(oscar, name)
    await asyncio.sleep(0.8)
    assert listings(oscar, name) - before <= 1  # back to the slow waiter's 5 s
    assert (await slow).payload["status"] == "timeout"
    assert time.monotonic() - started < 4.5  # at its deadline, not at its next 5 s listing
