"""The batch is exactly-once too: checkpoints, re-attached jobs, and the deferrable mode.

A batch killed halfway (its worker process SIGKILLed, no ``on_kill``) and retried runs only the
inputs that never finished; a deferrable batch submits, defers, resumes to record and submit
the next inputs, and a retry after its worker died re-attaches to the jobs it left running.
Executions are counted where they happen: the service's script appends its input to a file.
Every test runs on OSCAR 3.7 (jobs correlated under the lease) and 4.1 (jobs named).
"""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
from airflow.sdk import Context
from airflow.sdk.module_loading import import_string

from airflow_provider_oscar.compat import TaskDeferred
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
from tests.helpers import wait_until

# One write per run (its input and a newline), so concurrent runs never interleave a line.
RECORDING = 'echo "$(cat "$INPUT_FILE_PATH")" >> "$RUNS_FILE"\ncat "$INPUT_FILE_PATH"\n'
RELEASES = ["3.7", "4.1"]


class Batch:
    """A recording service on one release, and the task instance of a batch."""

    def __init__(self, oscar: OscarLocal, tmp_path: Path) -> None:
        self.oscar = oscar
        self.name = f"batch-{uuid.uuid4().hex[:8]}"
        self.runs = tmp_path / "runs"
        self.runs.touch()
        self.run_id = f"manual__{uuid.uuid4()}"
        self.admin = httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password))
        body = {
            "name": self.name,
            "image": "local/test",
            "script": RECORDING,
            "log_level": "CRITICAL",
            "environment": {"variables": {"RUNS_FILE": str(self.runs)}},
            "input": [{"storage_provider": "minio.default", "path": f"{self.name}/in"}],
        }
        assert self.admin.post("/system/services", json=body).status_code == 201

    def context(self, try_number: int = 1) -> Context:
        ti = SimpleNamespace(
            dag_id="drills",
            run_id=self.run_id,
            task_id="batch",
            map_index=-1,
            try_number=try_number,
            xcom_push=MagicMock(),
        )
        return cast(Context, {"ti": ti})

    def operator(self, inputs: list[str], **kwargs: Any) -> OscarBatchInvokeOperator:
        options = {
            "mode": "async",
            "decode": "text",
            "concurrency": 16,
            "poll_interval": 0.1,
            "progress_interval": 0,
            "deferrable": False,
            **kwargs,
        }
        return OscarBatchInvokeOperator(
            task_id="batch", service_name=self.name, inputs=inputs, **options
        )

    def executions(self) -> Counter[str]:
        return Counter(line for line in self.runs.read_text().splitlines() if line)


@pytest.fixture(params=RELEASES, ids=lambda v: f"oscar{v}")
def batch(
    request: pytest.FixtureRequest,
    oscar_at: Callable[[str], OscarLocal],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Batch]:
    oscar = oscar_at(request.param)
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", connection(oscar))
    made = Batch(oscar, tmp_path)
    yield made
    made.admin.delete(f"/system/services/{made.name}")
    made.admin.close()


def connection(oscar: OscarLocal) -> str:
    conn = json.loads(oscar.connection_json())
    conn["extra"].update(retries=1, backoff=0.02)
    return json.dumps(conn)


async def drive(
    make: Callable[[], OscarBatchInvokeOperator],
    context: Context,
    *,
    steps: int | None = None,
) -> tuple[dict[str, Any] | None, int]:
    """Run a deferrable batch as Airflow would: execute, run each trigger to its event,
    resume a fresh operator; stop after ``steps`` deferrals (the worker dies) if given."""
    try:
        return make().execute(context), 0
    except TaskDeferred as first:
        deferral = first
    done = 0
    while steps is None or done < steps:
        classpath, kwargs = deferral.trigger.serialize()
        events = import_string(classpath)(**kwargs).run()
        event = await events.__anext__()
        await events.aclose()
        done += 1
        payload = json.loads(json.dumps(event.payload))
        resumed = json.loads(json.dumps(deferral.kwargs or {}))
        try:
            return make().execute_complete(context, payload, **resumed), done
        except TaskDeferred as again:
            deferral = again
    return None, done


# in the worker ---------------------------------------------------------------------------------


def test_a_batch_of_200_killed_halfway_and_retried_runs_only_the_other_half(
    batch: Batch, capsys: pytest.CaptureFixture[str]
) -> None:
    from drill_worker import work_batch

    inputs = [f"input-{i:03d}" for i in range(200)]
    process = multiprocessing.get_context("spawn").Process(
        target=work_batch, args=(connection(batch.oscar), batch.name, batch.run_id, inputs)
    )
    process.start()
    try:
        wait_until(lambda: sum(batch.executions().values()) >= 100, timeout=120, interval=0.05)
    finally:
        process.kill()  # the worker dies: no on_kill, nothing flushed on the way out
        process.join()
    before = sum(batch.executions().values())
    result = batch.operator(inputs).execute(batch.context(try_number=2))
    assert (result["total"], result["succeeded"], result["failed"]) == (200, 200, 0)
    assert [r["text"] for r in result["results"]] == inputs
    executions = batch.executions()
    assert executions == Counter(inputs)  # every input ran exactly once, over both tries
    reruns = sum(executions.values()) - len(inputs)
    with capsys.disabled():
        print(
            f"\nbatch resume ({batch.oscar.profile.version}): 200 inputs, {before} ran before the "
            f"kill, {result['resumed']} skipped from the checkpoint, the rest re-attached or "
            f"submitted; batch_resume_reruns = {reruns}"
        )


# deferrable ----------------------------------------------------------------------------------


async def test_a_deferrable_batch_submits_defers_and_resumes_until_every_input_ran_once(
    batch: Batch,
) -> None:
    inputs = [f"leaf-{i}" for i in range(30)]
    result, steps = await drive(
        lambda: batch.operator(inputs, concurrency=5, deferrable=True), batch.context()
    )
    assert result is not None
    assert (result["total"], result["succeeded"]) == (30, 30)
    assert [r["text"] for r in result["results"]] == inputs
    assert steps >= 30 // 5  # at most five jobs at a time
    assert batch.executions() == Counter(inputs)
    assert batch.admin.get(f"/system/logs/{batch.name}").json()["jobs"] == {}  # deleted


async def test_a_deferrable_batch_retried_after_its_worker_died_re_attaches_and_skips(
    batch: Batch,
) -> None:
    inputs = [f"moss-{i}" for i in range(24)]

    def make() -> OscarBatchInvokeOperator:
        return batch.operator(inputs, concurrency=6, deferrable=True)

    partial, steps = await drive(make, batch.context(), steps=2)
    assert partial is None and steps == 2  # jobs of the third step still in flight
    ran = sum(batch.executions().values())
    result, _ = await drive(make, batch.context(try_number=2))
    assert result is not None and result["succeeded"] == 24
    assert batch.executions() == Counter(inputs)
    assert ran >= 2  # each of the first try's two steps resumed on at least one ended job


def test_a_deferrable_batch_in_sync_mode_stays_in_the_worker(batch: Batch) -> None:
    result = batch.operator(["x"], mode="sync", deferrable=True).execute(batch.context())
    assert result["succeeded"] == 1
