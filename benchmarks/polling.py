"""``polls_per_interval_500_waits``: job listings OSCAR receives while 500 triggers wait.

500 jobs of one service stay ``Pending`` (an injected fault); 500 ``OscarJobTrigger.run()``
coroutines wait on them in one event loop, as in a triggerer, each with a 0.5 s poll interval,
until their shared deadline. The embedded OSCAR counts the listings it receives (a listing of
500 jobs is 8 pages of 70; later pages are counted apart). The figure is listings per poll
interval; without coalescing it would be 500 (4,000 page requests).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx

from benchmarks.figures import Figure, render
from benchmarks.scale_support import prepare_airflow

WAITS = 500
INTERVAL = 0.5
WINDOW_S = 5.0
SERVICE = "waiter"


async def _submit_all(endpoint: str, token: str) -> list[str]:
    jobs = [f"{SERVICE}-bench-{i:04d}" for i in range(WAITS)]
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=endpoint, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(16)

        async def one(job: str) -> None:
            async with gate:
                response = await client.post(
                    f"/job/{SERVICE}",
                    content=b"",
                    headers={"Authorization": f"Bearer {token}", "X-Delegated-Job-ID": job},
                )
                response.raise_for_status()

        await asyncio.gather(*(one(job) for job in jobs))
    return jobs


async def _wait_all(jobs: list[str]) -> tuple[float, list[dict[str, object]]]:
    from airflow_provider_oscar.triggers.oscar import OscarJobTrigger

    deadline = time.time() + WINDOW_S

    async def wait(job: str) -> dict[str, object]:
        trigger = OscarJobTrigger(
            service_name=SERVICE, job_name=job, poll_interval=INTERVAL, deadline=deadline
        )
        events = trigger.run()
        try:
            return dict((await events.__anext__()).payload)
        finally:
            await events.aclose()

    start = time.monotonic()
    payloads = await asyncio.gather(*(wait(job) for job in jobs))
    return time.monotonic() - start, payloads


def measure() -> list[Figure]:
    prepare_airflow()
    from airflow_provider_oscar.local.api import request_counts
    from airflow_provider_oscar.local.faults import StuckJobs
    from airflow_provider_oscar.local.server import OscarLocal

    with OscarLocal() as oscar:
        assert oscar.cluster is not None
        os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = oscar.connection_json()
        with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as admin:
            body = {"name": SERVICE, "image": "local/wait", "script": "true\n"}
            admin.post("/system/services", json=body).raise_for_status()
            token = admin.get(f"/system/services/{SERVICE}").json()["token"]
        oscar.faults.add(StuckJobs(service=SERVICE, count=-1))
        jobs = asyncio.run(_submit_all(oscar.endpoint, token))
        counts = request_counts(oscar.cluster)
        before = counts[f"GET /system/logs/{SERVICE}"], counts[f"GET /system/logs/{SERVICE}?page"]
        elapsed, payloads = asyncio.run(_wait_all(jobs))
        listings = counts[f"GET /system/logs/{SERVICE}"] - before[0]
        pages = listings + counts[f"GET /system/logs/{SERVICE}?page"] - before[1]
    statuses = {str(p["status"]) for p in payloads}
    assert statuses == {"timeout"}, statuses
    intervals = elapsed / INTERVAL
    detail = {
        "waiting_triggers": WAITS,
        "poll_interval_s": INTERVAL,
        "elapsed_s": round(elapsed, 3),
        "listings": listings,
        "page_requests": pages,
        "page_requests_per_interval": round(pages / intervals, 2),
        "naive_listings_per_interval": WAITS,
    }
    return [Figure("polls_per_interval_500_waits", listings / intervals, "<=", 2, detail)]


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    print(json.dumps(figures[0].detail, indent=2))
