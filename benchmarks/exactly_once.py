"""Executions per input, counted on the cluster: ``duplicate_executions`` and
``batch_resume_reruns`` (goal 0 each).

* ``duplicate_executions``: the soak. An async batch of 200 inputs goes through an embedded
  OSCAR that answers a seeded 10 % of the requests on the service's ``/job`` and job-list/log
  routes with a transient fault (502, 503, 500, 429, or a connection dropped mid-answer). The
  service's script appends its input to a file before answering: script runs minus inputs is
  the figure (on OSCAR 4.1, and on 3.7 where jobs are correlated under the lease).
* ``batch_resume_reruns``: an async batch of 200 runs in a worker process that is SIGKILLed
  once half of its inputs ran; the task's retry (try 2) finishes the batch. Script runs over
  both tries minus inputs is the figure.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import httpx

from benchmarks.figures import Figure, render
from benchmarks.scale_support import prepare_airflow

INPUTS = 200
FAULT_RATE = 0.10
SEED = 20260611
RECORDING = 'echo "$(cat "$INPUT_FILE_PATH")" >> "$RUNS_FILE"\ncat "$INPUT_FILE_PATH"\n'


def _faults(routes: tuple[str, ...]) -> Any:
    """A fault plan failing a seeded 10 % of the requests under ``routes``."""
    from airflow_provider_oscar.local.faults import FaultPlan

    class RandomFaults(FaultPlan):
        def __init__(self) -> None:
            super().__init__()
            self.rng = random.Random(SEED)
            self.lock = threading.Lock()
            self.pending: dict[str, int] = {}
            self.injected = 0

        def drops(self, path: str) -> bool:
            with self.lock:
                if not path.startswith(routes) or self.rng.random() >= FAULT_RATE:
                    return super().drops(path)
                self.injected += 1
                fault = self.rng.choice([502, 503, 500, 429, 0])
                if fault:
                    self.pending[path] = fault
                    return False
                return True

        def error_status(self, path: str) -> int | None:
            with self.lock:
                status = self.pending.pop(path, None)
            return status if status is not None else super().error_status(path)

    return RandomFaults()


def _service(oscar: Any, runs: Path) -> str:
    name = f"once-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "image": "local/bench",
        "script": RECORDING,
        "log_level": "CRITICAL",
        "environment": {"variables": {"RUNS_FILE": str(runs)}},
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
    }
    with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as admin:
        admin.post("/system/services", json=body).raise_for_status()
    return name


def _context(run_id: str, try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="bench",
        run_id=run_id,
        task_id="batch",
        map_index=-1,
        try_number=try_number,
        xcom_push=MagicMock(),
    )
    return {"ti": ti}


def _batch(name: str, inputs: list[str]) -> Any:
    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

    return OscarBatchInvokeOperator(
        task_id="batch",
        service_name=name,
        inputs=inputs,
        mode="async",
        decode="text",
        concurrency=16,
        input_retries=4,
        input_retry_delay=0.05,
        poll_interval=0.1,
        progress_interval=0,
        deferrable=False,
    )


def _connection(oscar: Any) -> str:
    conn = json.loads(oscar.connection_json())
    conn["extra"].update(retries=3, backoff=0.02)
    return json.dumps(conn)


def _runs(path: Path) -> Counter[str]:
    return Counter(line for line in path.read_text().splitlines() if line)


def _soak(version: str, inputs_count: int) -> tuple[int, dict[str, Any]]:
    from airflow_provider_oscar.local.server import OscarLocal

    with OscarLocal(oscar_version=version) as oscar, tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        runs.touch()
        name = _service(oscar, runs)
        os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = _connection(oscar)
        assert oscar.cluster is not None
        chaos = _faults((f"/job/{name}", f"/system/logs/{name}"))
        oscar.cluster.faults = chaos
        inputs = [f"input-{i:03d}" for i in range(inputs_count)]
        started = time.monotonic()
        result = _batch(name, inputs).execute(_context(f"bench__{uuid.uuid4()}"))
        seconds = time.monotonic() - started
        executions = _runs(runs)
    duplicates = sum(executions.values()) - len(inputs)
    detail = {
        "oscar": version,
        "inputs": len(inputs),
        "succeeded": result["succeeded"],
        "script_runs": sum(executions.values()),
        "most_runs_of_one_input": max(executions.values()),
        "faults_injected": chaos.injected,
        "seconds": round(seconds, 1),
    }
    return duplicates, detail


def _work(conn: str, name: str, run_id: str, inputs: list[str]) -> None:
    """The first try, in a worker process that gets killed."""
    os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = conn
    _batch(name, inputs).execute(_context(run_id))


def _resume(version: str) -> tuple[int, dict[str, Any]]:
    from airflow_provider_oscar.local.server import OscarLocal

    with OscarLocal(oscar_version=version) as oscar, tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        runs.touch()
        name = _service(oscar, runs)
        conn = _connection(oscar)
        os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = conn
        inputs = [f"input-{i:03d}" for i in range(INPUTS)]
        run_id = f"bench__{uuid.uuid4()}"
        worker = multiprocessing.get_context("spawn").Process(
            target=_work, args=(conn, name, run_id, inputs)
        )
        worker.start()
        deadline = time.monotonic() + 300
        while sum(_runs(runs).values()) < INPUTS // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.kill()
        worker.join()
        before = sum(_runs(runs).values())
        result = _batch(name, inputs).execute(_context(run_id, try_number=2))
        executions = _runs(runs)
    reruns = sum(executions.values()) - len(inputs)
    detail = {
        "oscar": version,
        "inputs": len(inputs),
        "ran_before_the_kill": before,
        "skipped_from_the_checkpoint": result["resumed"],
        "succeeded": result["succeeded"],
        "script_runs_over_both_tries": sum(executions.values()),
    }
    return reruns, detail


def measure() -> list[Figure]:
    prepare_airflow()
    figures = []
    duplicates, detail = _soak("4.1", INPUTS)
    figures.append(Figure("duplicate_executions", duplicates, "<=", 0, detail))
    duplicates, detail = _soak("3.7", INPUTS // 2)
    figures.append(Figure("duplicate_executions_oscar_3_7", duplicates, "<=", 0, detail))
    for version in ("4.1", "3.7"):
        reruns, detail = _resume(version)
        suffix = "" if version == "4.1" else "_oscar_3_7"
        figures.append(Figure(f"batch_resume_reruns{suffix}", reruns, "<=", 0, detail))
    return figures


if __name__ == "__main__":
    measured = measure()
    print(render(measured))
    for figure in measured:
        print(figure.name, json.dumps(figure.detail))
