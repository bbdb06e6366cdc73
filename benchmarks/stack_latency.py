"""The plant ensemble end to end on the production stack (``make stack``), against direct calls.

One stack (Postgres, Redis, CeleryExecutor with two workers, triggerer, two embedded OSCARs) runs
the same 120 calls (30 specimens x 4 models) and the same soft vote two ways:

* **mapped**: ``oscar_plant_ensemble_soft_vote`` as shipped, one task per call (122 tasks);
* **batch**: ``benchmarks/dags/oscar_plant_ensemble_batch.py``, one ``OscarBatchInvokeOperator``
  task per model fanning out 10 calls at a time (5 tasks).

Each run is timed from the REST call that triggers it to the run's ``end_date`` (the same
machine's clock), after a warm-up run that deploys the services. Beside them, the same 120
``/run`` calls are made **directly** from this process through ``OscarHook`` on the same
cluster: one after another (what a plain script does; the reference of the ratio) and 10 at a
time over one client (the detail).

Figures: the fastest variant's median seconds from trigger to end (goal: within 10 s), and
that over the sequential direct calls (goal: within 5x). The machine's load average is in the
detail: the stack shares its 2 cores with whatever else runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure, render

ROOT = Path(__file__).resolve().parent.parent
BENCH_DAGS = Path(__file__).with_name("dags")
MAPPED, BATCH = "oscar_plant_ensemble_soft_vote", "oscar_plant_ensemble_batch"
PLANTS = ROOT / "example_dags" / "services" / "plants"
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths"]
REPEATS = {MAPPED: 2, BATCH: 5}
DIRECT_REPEATS = 3
CONCURRENCY = 10


def _run_seconds(client: Any, dag_id: str) -> float:
    """Trigger ``dag_id`` and wait for it: seconds from the trigger to the run's end."""
    started = time.time()
    run_id = client.trigger(dag_id)
    state = client.wait_for_run(dag_id, run_id, timeout=600, poll=0.2)
    if state != "success":
        raise RuntimeError(f"{dag_id} {run_id} ended {state}")
    ended = datetime.fromisoformat(client.run(dag_id, run_id)["end_date"]).timestamp()
    return ended - started


def _direct(conn_json: str) -> dict[str, float]:
    """The 120 calls through the hook: sequential and ``CONCURRENCY`` at a time (best of runs)."""
    os.environ["AIRFLOW_CONN_OSCAR_BENCH"] = conn_json
    from airflow_provider_oscar.hooks.oscar import OscarHook

    hook = OscarHook("oscar_bench")
    calls = [
        (m, p.read_bytes())
        for p in sorted(PLANTS.glob("specimens/specimen-*.json"))
        for m in MODELS
    ]
    for model in MODELS:
        hook.run_service(model, calls[0][1])  # tokens cached, connections open

    def sequential() -> float:
        began = time.perf_counter()
        for model, data in calls:
            hook.run_service(model, data)
        return time.perf_counter() - began

    async def concurrent() -> float:
        began = time.perf_counter()
        gate = asyncio.Semaphore(CONCURRENCY)
        async with hook.asession(settings=hook.settings) as session:

            async def one(model: str, data: bytes) -> None:
                async with gate:
                    await session.arun_service(model, data)

            await asyncio.gather(*(one(m, d) for m, d in calls))
        return time.perf_counter() - began

    return {
        "sequential": min(sequential() for _ in range(DIRECT_REPEATS)),
        "concurrent": min(asyncio.run(concurrent()) for _ in range(DIRECT_REPEATS)),
        "calls": len(calls),
    }


def measure() -> list[Figure]:
    from stack.runner import Stack
    from stack.settings import StackSettings

    root = Path(tempfile.mkdtemp(prefix="oscar-bench-stack-"))
    try:
        settings = StackSettings(root, dag_folders={"oscar-benchmarks": BENCH_DAGS})
        with Stack(settings, say=lambda line: print(f"  [stack] {line}", flush=True)) as stack:
            print(f"  stack up in {stack.started_seconds:.0f} s", flush=True)
            with stack.client() as client:
                client.wait_for_dags([MAPPED, BATCH])
                _run_seconds(client, BATCH)  # warm-up: deploys the classifiers
                runs = {
                    dag_id: [_run_seconds(client, dag_id) for _ in range(repeats)]
                    for dag_id, repeats in REPEATS.items()
                }
            direct = _direct(_connection_json(settings))
            load = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {dag_id: statistics.median(seconds) for dag_id, seconds in runs.items()}
    fastest = min(medians, key=lambda d: medians[d])
    detail = {
        "runs_seconds": {d: [round(s, 2) for s in seconds] for d, seconds in runs.items()},
        "median_seconds": {d: round(s, 2) for d, s in medians.items()},
        "fastest": fastest,
        "direct_sequential_seconds": round(direct["sequential"], 2),
        "direct_concurrent_seconds": round(direct["concurrent"], 2),
        "direct_concurrency": CONCURRENCY,
        "calls": direct["calls"],
        "fastest_vs_direct_concurrent": round(medians[fastest] / direct["concurrent"], 2),
        "mapped_vs_batch": round(medians[MAPPED] / medians[BATCH], 2),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "workers": settings.workers,
    }
    return [
        Figure("stack_ensemble_fastest_seconds", medians[fastest], "<=", 10.0, detail),
        Figure(
            "stack_ensemble_fastest_vs_direct_ratio",
            medians[fastest] / direct["sequential"],
            "<=",
            5.0,
            {"fastest": fastest, "direct": "sequential"},
        ),
    ]


def _connection_json(settings: Any) -> str:
    import json

    return json.dumps(settings.connection("oscar_default"))


if __name__ == "__main__":
    figures = measure()
    print(render(figures))
    import json

    print(json.dumps([f.detail for f in figures], indent=1))
