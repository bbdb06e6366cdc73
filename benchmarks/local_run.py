"""``local_run_overhead_ratio``: the embedded OSCAR's ``/run`` overhead at 16 concurrent calls.

200 calls of a service whose script sleeps 200 ms, 16 at a time: the ideal wall time is
200 x 0.2 s / 16 = 2.5 s; the figure is measured wall time over that ideal.
"""

from __future__ import annotations

import asyncio
import base64
import time

import httpx

from airflow_provider_oscar.local.server import OscarLocal
from benchmarks.figures import Figure, render

CALLS = 200
CONCURRENCY = 16
SLEEP_S = 0.2
SCRIPT = f'sleep {SLEEP_S}\ncat "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"\n'


async def _fire(endpoint: str, token: str) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=endpoint, limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            async with limit:
                body = base64.b64encode(f"input {i}".encode())
                response = await client.post("/run/sleeper", content=body, headers=headers)
                response.raise_for_status()
                assert base64.b64decode(response.text) == f"input {i}".encode()

        await one(-1)  # warm-up, not timed
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(CALLS)))
        return time.perf_counter() - start


def measure() -> list[Figure]:
    with OscarLocal() as oscar:
        admin = httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password))
        service = {"name": "sleeper", "image": "local/sleep", "script": SCRIPT}
        service["log_level"] = "CRITICAL"
        admin.post("/system/services", json=service).raise_for_status()
        token = admin.get("/system/services/sleeper").json()["token"]
        wall = asyncio.run(_fire(oscar.endpoint, token))
    ideal = CALLS * SLEEP_S / CONCURRENCY
    detail = {"calls": CALLS, "concurrency": CONCURRENCY, "wall_s": wall, "ideal_s": ideal}
    return [Figure("local_run_overhead_ratio", wall / ideal, "<=", 1.25, detail)]


if __name__ == "__main__":
    print(render(measure()))
