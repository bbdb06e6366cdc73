"""``fanout_vs_ideal`` and ``fanout_speedup_vs_sequential``: the batch operator near the limit.

200 inputs of a service whose script sleeps 200 ms and prints a classification, 16 at a time:
the physical limit is 200 x 0.2 s / 16 = 2.5 s, and ``fanout_vs_ideal`` is the batch
operator's wall time (``execute()``: connection, session, fan-out, decoding, results) over it
(median of three batches). ``fanout_speedup_vs_sequential`` compares the same 200 inputs sent
the way users script it today, an oscar-python ``Client.run_service`` loop, with the batch.
The embedded OSCAR runs in its own process.
"""

from __future__ import annotations

import statistics
import time

import httpx

from benchmarks.figures import Figure, render
from benchmarks.scale_support import OscarProcess, oscar_process, prepare_airflow, task_context

INPUTS = 200
CONCURRENCY = 16
SLEEP_S = 0.2
BATCHES = 3
SCRIPT = (  # one process besides the shell: sleep (read and printf are shell built-ins)
    f"sleep {SLEEP_S}\n"
    'read -r label < "$INPUT_FILE_PATH"\n'
    'printf \'{"status": "ok", "labels": ["%s", "other"], "probabilities": [0.8, 0.1]}\' '
    '"$label"\n'
)
SERVICE = {"name": "sleeper", "image": "local/sleep", "script": SCRIPT, "log_level": "CRITICAL"}


def _batch_seconds(oscar: OscarProcess) -> tuple[float, dict[str, object]]:
    import os

    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

    os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = oscar.connection_json()
    operator = OscarBatchInvokeOperator(
        task_id="bench",
        service_name="sleeper",
        inputs=[f"leaf-{i}" for i in range(INPUTS)],
        concurrency=CONCURRENCY,
        progress_interval=0,
    )
    start = time.perf_counter()
    result = operator.execute(task_context())  # type: ignore[arg-type]
    wall = time.perf_counter() - start
    assert result["succeeded"] == INPUTS, result
    assert result["results"][7]["prediction"]["labels"][0] == "leaf-7"
    return wall, result


def _sequential_seconds(oscar: OscarProcess) -> float:
    """What users script today: oscar-python's ``run_service`` in a loop."""
    from oscar_python.client import Client

    client = Client(
        {
            "cluster_id": "bench",
            "endpoint": oscar.endpoint,
            "user": oscar.user,
            "password": oscar.password,
            "ssl": False,
        }
    )
    start = time.perf_counter()
    for i in range(INPUTS):
        response = client.run_service("sleeper", input=f"leaf-{i}")
        response.raise_for_status()
        assert f"leaf-{i}" in response.text
    return time.perf_counter() - start


def measure() -> list[Figure]:
    prepare_airflow()
    with oscar_process() as oscar:
        token = oscar.deploy(SERVICE)["token"]
        httpx.post(  # warm-up call, not timed
            f"{oscar.endpoint}/run/sleeper",
            content=b"d2FybQ==",
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
        walls = [_batch_seconds(oscar)[0] for _ in range(BATCHES)]
        sequential = _sequential_seconds(oscar)
    batch = statistics.median(walls)
    ideal = INPUTS * SLEEP_S / CONCURRENCY
    detail = {
        "inputs": INPUTS,
        "concurrency": CONCURRENCY,
        "script_sleep_s": SLEEP_S,
        "ideal_s": ideal,
        "batch_wall_s": [round(w, 3) for w in walls],
        "batch_median_s": round(batch, 3),
    }
    sequential_detail = {
        **detail,
        "sequential_s": round(sequential, 3),
        "sequential_how": "oscar_python Client.run_service loop, Basic auth, default options",
    }
    return [
        Figure("fanout_vs_ideal", batch / ideal, "<=", 1.15, detail),
        Figure("fanout_speedup_vs_sequential", sequential / batch, ">=", 10, sequential_detail),
    ]


if __name__ == "__main__":
    print(render(measure()))
