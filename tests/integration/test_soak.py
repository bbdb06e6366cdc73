"""Soak: 200 inputs fanned out through a cluster that fails one request in ten.

The batch operator classifies 200 inputs against the embedded OSCAR while a seeded random fault
plan answers about 10 % of the requests on the service's invocation route (and, for jobs, on its
job list and job logs) with a transient failure: 502, 503, 500, 429 (``Retry-After: 1``) or a
connection dropped mid-answer. Every input carries an id and a nonce; the service echoes its
input back, so each result can be matched to the input it claims to answer.

The user-visible promise, asynchronously: all 200 results come back, each exactly once, each
from its own input, and every input ran exactly once on the cluster (a job belongs to its input,
not to a request: a retried request re-attaches to it). Synchronously a ``/run`` whose
connection dropped may have run: it is reported for that input, never sent again, so every
input ran at most once and the others come back. The figures are printed with the output.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, cast
from unittest.mock import MagicMock

import pytest
from airflow.sdk import Context

from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.faults import FaultPlan
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

INPUTS = 200
FAULT_RATE = 0.10
SEED = 20260611
# Records its input (one write per run), then answers with it (console output).
ECHO = 'echo "$(cat "$INPUT_FILE_PATH")" >> "$RUNS_FILE"\ncat "$INPUT_FILE_PATH"\n'
TRANSIENT: list[int | Literal["drop"]] = [502, 503, 500, 429, "drop"]


class RandomFaults(FaultPlan):
    """Fails a seeded random ``rate`` of the requests under ``routes`` with a transient fault.

    Everything else (explicitly added faults, stuck or failing jobs) works as in
    :class:`FaultPlan`. ``injected`` counts the faults by kind, ``seen`` the requests drawn for.
    """

    def __init__(self, routes: tuple[str, ...], rate: float, seed: int) -> None:
        super().__init__()
        self.routes = routes
        self.rate = rate
        self._random = random.Random(seed)
        self._draw_lock = threading.Lock()
        self._pending: dict[str, int | Literal["drop"]] = {}
        self.injected: Counter[str] = Counter()
        self.seen = 0

    def _draw(self, path: str) -> int | Literal["drop"] | None:
        """One draw per request: the middleware asks ``drops`` first, then ``error_status``."""
        with self._draw_lock:
            if not path.startswith(self.routes):
                return None
            self.seen += 1
            if self._random.random() >= self.rate:
                return None
            fault = self._random.choice(TRANSIENT)
            self.injected[str(fault)] += 1
            return fault

    def drops(self, path: str) -> bool:
        fault = self._draw(path)
        if fault == "drop":
            return True
        if fault is not None:  # an error status: keep it for error_status() of this request
            with self._draw_lock:
                self._pending[path] = fault
        return super().drops(path)

    def error_status(self, path: str) -> int | None:
        with self._draw_lock:
            fault = self._pending.pop(path, None)
        return fault if isinstance(fault, int) else super().error_status(path)


def task_context() -> Context:
    ti = SimpleNamespace(
        dag_id="soak",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="classify_all",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_two_hundred_inputs_through_ten_percent_transient_faults_come_back_once_each(
    mode: Literal["sync", "async"],
    oscar: OscarLocal,
    deploy: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    runs_file = tmp_path / "runs"
    runs_file.touch()
    environment = {"variables": {"RUNS_FILE": str(runs_file)}}
    service = str(deploy(ECHO, log_level="CRITICAL", environment=environment)["name"])
    conn = json.loads(oscar.connection_json())
    conn["extra"].update({"retries": 3, "backoff": 0.02})
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps(conn))
    cluster = oscar.cluster
    assert cluster is not None
    routes = (
        (f"/run/{service}",) if mode == "sync" else (f"/job/{service}", f"/system/logs/{service}")
    )
    chaos = RandomFaults(routes, FAULT_RATE, SEED)
    monkeypatch.setattr(cluster, "faults", chaos)
    inputs = [{"id": f"input-{i:03d}", "nonce": uuid.uuid4().hex} for i in range(INPUTS)]
    before = Counter(request_counts(cluster))

    started = time.monotonic()
    result = OscarBatchInvokeOperator(
        task_id="classify_all",
        service_name=service,
        inputs=inputs,
        input_ids=[item["id"] for item in inputs],
        mode=mode,
        decode="text",
        concurrency=16,
        input_retries=4,
        input_retry_delay=0.05,
        on_failure="continue",
        poll_interval=0.1,
        progress_interval=0,
    ).execute(task_context())
    seconds = time.monotonic() - started

    records = result["results"]
    assert len(records) == INPUTS
    assert sorted(r["index"] for r in records) == list(range(INPUTS))  # none lost, none twice
    assert Counter(r["input"] for r in records) == Counter(i["id"] for i in inputs)
    cut = [r for r in records if r["status"] != "ok"]
    for record in records:
        if record["status"] == "ok":
            answered = json.loads(record["text"])
            assert answered == inputs[record["index"]], f"{record['input']} got another's answer"
        else:  # a dropped /run: said so, not sent again
            assert "may have happened" in record["error"], record
    assert sum(chaos.injected.values()) >= FAULT_RATE * INPUTS / 2, chaos.injected
    runs = Counter(json.loads(line)["id"] for line in runs_file.read_text().splitlines() if line)
    if mode == "async":
        assert (result["succeeded"], result["failed"]) == (INPUTS, 0)
        assert runs == Counter(i["id"] for i in inputs)  # each input ran exactly once
    else:
        assert result["failed"] == len(cut) <= chaos.injected["drop"]
        assert max(runs.values()) == 1  # at most once: nothing that may have run is re-sent
    duplicates = sum(runs.values()) - len(runs)

    seen = Counter(request_counts(cluster))
    seen.subtract(before)
    route = f"POST /{'run' if mode == 'sync' else 'job'}/{service}"
    retried = sum(1 for r in records if r.get("attempts", 1) > 1)
    with capsys.disabled():
        print(
            f"\nsoak ({mode}): {INPUTS} inputs, {len(records)} results, "
            f"{len({r['index'] for r in records})} distinct, 0 mixed, {len(cut)} cut runs "
            f"reported; {sum(chaos.injected.values())} faults injected in {chaos.seen} requests "
            f"({dict(sorted(chaos.injected.items()))}); {seen[route]} {route.split()[0]}s of "
            f"{route.split()[1].rsplit('/', 1)[0]}; {sum(runs.values())} script runs, "
            f"{max(runs.values())} at most per input (duplicate_executions = {duplicates}); "
            f"{retried} inputs needed a second attempt; "
            f"{seconds:.1f} s ({INPUTS / seconds:.0f} inputs/s, concurrency 16)"
        )
