"""``trigger_memory_mb_per_1000``: memory 1,000 waiting job triggers add to one process.

1,000 jobs stay ``Pending`` on an embedded OSCAR (in its own process, so its memory is not
counted); 1,000 ``OscarJobTrigger.run()`` coroutines wait on them in one event loop, as in a
triggerer, through a few shared listings. The figure is the growth of this process's resident
memory (``/proc/self/statm``) between an idle loop and the loop with every trigger waiting; the
Python allocations alone (``tracemalloc``, a second round) are in the detail.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
import tracemalloc
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from benchmarks.figures import Figure, render
from benchmarks.scale_support import OscarProcess, oscar_process, prepare_airflow, rss_bytes

TRIGGERS = 1000
INTERVAL = 0.5
SERVICE = "waiter"
MB = 1024 * 1024

if TYPE_CHECKING:
    from airflow_provider_oscar.triggers.coalesce import Feed


def _submit_all(oscar: OscarProcess, token: str) -> list[str]:
    jobs = [f"{SERVICE}-mem-{i:04d}" for i in range(TRIGGERS)]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=oscar.endpoint, timeout=60) as client:
        for job in jobs:
            client.post(
                f"/job/{SERVICE}", content=b"", headers={**headers, "X-Delegated-Job-ID": job}
            ).raise_for_status()
    return jobs


async def _waiting_growth(jobs: list[str], probe: Callable[[], int]) -> int:
    """``probe()`` with every trigger waiting, minus ``probe()`` before they started."""
    from airflow_provider_oscar.triggers.coalesce import coalescer
    from airflow_provider_oscar.triggers.oscar import OscarJobTrigger

    async def wait(job: str, deadline: float) -> str:
        trigger = OscarJobTrigger(
            service_name=SERVICE, job_name=job, poll_interval=INTERVAL, deadline=deadline
        )
        events = trigger.run()
        try:
            return str((await events.__anext__()).payload["status"])
        finally:
            await events.aclose()

    await wait(jobs[0], time.time() + INTERVAL)  # warm-up: imports, connection lookup, client
    gc.collect()
    before = probe()
    deadline = time.time() + 600
    waits = [asyncio.ensure_future(wait(job, deadline)) for job in jobs]
    limit = time.monotonic() + 120
    while _waiters(coalescer().feeds) < len(jobs):  # every trigger registered ...
        if time.monotonic() > limit or any(w.done() for w in waits):
            raise RuntimeError(
                f"triggers did not all wait: {[w.result() for w in waits if w.done()][:3]}"
            )
        await asyncio.sleep(0.05)
    await asyncio.sleep(3 * INTERVAL)  # ... and listings delivered to them
    gc.collect()
    grown = probe() - before
    for waiting in waits:  # as a triggerer cancels triggers it no longer runs
        waiting.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    await asyncio.sleep(2 * INTERVAL)
    assert not coalescer().feeds, "the poller outlived its waiters"
    return grown


def _waiters(feeds: Mapping[Any, Feed]) -> int:
    return sum(feed.waiters for feed in feeds.values())


def measure() -> list[Figure]:
    prepare_airflow()
    with oscar_process() as oscar:
        token = oscar.deploy({"name": SERVICE, "image": "local/wait", "script": "true\n"})["token"]
        with oscar.admin() as admin:
            stuck = {"kind": "stuck", "service": SERVICE, "count": -1}
            admin.post("/local/faults", json=stuck).raise_for_status()
        jobs = _submit_all(oscar, token)
        os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = oscar.connection_json()
        rss = asyncio.run(_waiting_growth(jobs, rss_bytes))
        tracemalloc.start()
        try:
            python = asyncio.run(_waiting_growth(jobs, lambda: tracemalloc.get_traced_memory()[0]))
        finally:
            tracemalloc.stop()
    per_1000 = rss / MB * 1000 / TRIGGERS
    detail = {
        "triggers": TRIGGERS,
        "rss_growth_mb": round(rss / MB, 2),
        "python_allocations_mb": round(python / MB, 2),
        "kib_per_trigger_python": round(python / 1024 / TRIGGERS, 2),
    }
    return [Figure("trigger_memory_mb_per_1000", per_1000, "<", 50, detail)]


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    print(json.dumps(figures[0].detail, indent=2))
