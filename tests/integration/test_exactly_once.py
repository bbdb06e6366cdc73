"""Kill drills: every input runs exactly once on the cluster, whatever fails in between.

Each drill runs on the OSCAR 3.7 profile (jobs correlated under the lease) and 4.1 (jobs named
after the task instance). The service's script records every run in a file on the host, and
waits for a gate file before answering, so a drill can act while the job runs. Executions are
counted in that file and jobs in the cluster's job list: never in the operator.

Triggers run as Airflow 3.3.2's triggerer runs them (``TriggerRunner.run_trigger``): a user
action cancels with the triggerer's user-action message and calls ``on_kill``; a restart
cancels plainly. Before 3.3 both are plain cancels, and the trigger tells them apart by the
task instance's state (a stand-in for the task SDK's ``get_task_states``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG, TriggerRunner
from airflow.sdk import Context
from airflow.sdk.module_loading import import_string

from airflow_provider_oscar import compat
from airflow_provider_oscar.compat import TaskDeferred
from airflow_provider_oscar.hooks import correlation
from airflow_provider_oscar.local.faults import ErrorBurst
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.invoke import OscarSubmitJobOperator
from tests.helpers import wait_until

GATED = (
    'echo "start $(cat "$INPUT_FILE_PATH")" >> "$RUNS_FILE"\n'
    'while [ ! -e "$GATE" ]; do sleep 0.05; done\n'
    'echo "done $(cat "$INPUT_FILE_PATH")" >> "$RUNS_FILE"\n'
    'cat "$INPUT_FILE_PATH"\n'
)
RELEASES = ["3.7", "4.1"]


class Drill:
    """A gated service on one release, its runs file and gate, and a task instance."""

    def __init__(self, oscar: OscarLocal, tmp_path: Path) -> None:
        self.oscar = oscar
        self.name = f"drill-{uuid.uuid4().hex[:8]}"
        self.runs = tmp_path / "runs"
        self.runs.touch()
        self.gate = tmp_path / "gate"
        self.run_id = f"manual__{uuid.uuid4()}"
        self.admin = httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password))
        body = {
            "name": self.name,
            "image": "local/test",
            "script": GATED,
            "log_level": "CRITICAL",
            "environment": {"variables": {"RUNS_FILE": str(self.runs), "GATE": str(self.gate)}},
            "input": [{"storage_provider": "minio.default", "path": f"{self.name}/in"}],
            "output": [{"storage_provider": "minio.default", "path": f"{self.name}/out"}],
        }
        assert self.admin.post("/system/services", json=body).status_code == 201

    def close(self) -> None:
        self.admin.delete(f"/system/services/{self.name}")
        self.admin.close()

    def context(self, try_number: int = 1) -> Context:
        ti = SimpleNamespace(
            dag_id="drills",
            run_id=self.run_id,
            task_id="classify",
            map_index=-1,
            try_number=try_number,
            xcom_push=MagicMock(),
        )
        return cast(Context, {"ti": ti})

    def operator(self, **kwargs: Any) -> OscarSubmitJobOperator:
        arguments = {"input_data": "drill input", "poll_interval": 0.1, "timeout": 60.0}
        return OscarSubmitJobOperator(
            task_id="classify", service_name=self.name, decode="text", **{**arguments, **kwargs}
        )

    def jobs(self) -> dict[str, dict[str, Any]]:
        return dict(self.admin.get(f"/system/logs/{self.name}").json()["jobs"])

    def running(self, timeout: float = 20) -> str:
        return str(
            wait_until(
                lambda: next((n for n, j in self.jobs().items() if j["status"] == "Running"), None),
                timeout=timeout,
            )
        )

    def executions(self, stage: str = "start") -> int:
        return sum(1 for line in self.runs.read_text().splitlines() if line.startswith(stage))


@pytest.fixture(params=RELEASES, ids=lambda v: f"oscar{v}")
def drill(
    request: pytest.FixtureRequest,
    oscar_at: Callable[[str], OscarLocal],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Drill]:
    oscar = oscar_at(request.param)
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", connection(oscar))
    made = Drill(oscar, tmp_path)
    yield made
    made.gate.touch()
    oscar.faults.clear()
    made.close()


def connection(oscar: OscarLocal) -> str:
    import json

    conn = json.loads(oscar.connection_json())
    conn["extra"].update(retries=1, backoff=0.02)
    return json.dumps(conn)


# the worker dies between submitting and waiting ----------------------------------------------


def test_a_worker_killed_while_waiting_is_retried_and_re_attaches_to_its_one_job(
    drill: Drill, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed at once, the worker may die holding the submission lease (before 4.1): the
    retry takes it over once it expires (shortened here from 20 s to 2 s)."""
    from drill_worker import work

    monkeypatch.setattr(correlation, "LEASE_TTL", 2.0)
    process = multiprocessing.get_context("spawn").Process(
        target=work, args=(connection(drill.oscar), drill.name, drill.run_id)
    )
    process.start()
    try:
        job = drill.running(timeout=90)  # a spawned interpreter imports Airflow first
    finally:
        process.kill()  # SIGKILL: no on_kill, as when a worker's machine goes away
        process.join()
    result = drill.operator().execute  # the retry, on another worker
    drill.gate.touch()
    answer = result(drill.context(try_number=2))
    assert answer["job"]["name"] == job
    assert answer["text"] == "drill input"
    assert list(drill.jobs()) == [job]
    assert (drill.executions("start"), drill.executions("done")) == (1, 1)


def test_force_rerun_deletes_the_earlier_job_and_runs_the_input_afresh(drill: Drill) -> None:
    drill.gate.touch()
    first = drill.operator().execute(drill.context())
    again = drill.operator(force_rerun=True).execute(drill.context(try_number=2))
    assert again["text"] == "drill input"
    if drill.oscar.profile.release < (4, 1, 0):
        assert again["job"]["name"] != first["job"]["name"]
    assert list(drill.jobs()) == [again["job"]["name"]]
    assert drill.executions("done") == 2


# killed or restarted while deferred -----------------------------------------------------------


async def run_trigger(trigger: Any) -> tuple[TriggerRunner, asyncio.Task[None]]:
    """Run a trigger as Airflow 3.3.2's triggerer does (rebuilt from its serialised form)."""
    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)
    runner = TriggerRunner()
    task = asyncio.create_task(runner.run_trigger(1, rebuilt))
    runner.triggers[1] = {"task": task, "name": "drill", "events": 0}
    return runner, task


def deferred(drill: Drill) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferral:
        drill.operator(deferrable=True).execute(drill.context())
    return deferral.value


async def cancel(task: asyncio.Task[None], message: str | None = None) -> None:
    await asyncio.sleep(0.3)  # the trigger polls a few times first
    task.cancel(message)
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("state", ["failed", "success", "up_for_retry"])
async def test_a_task_killed_while_deferred_before_airflow_3_3_deletes_its_job(
    drill: Drill, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    monkeypatch.setattr(compat, "AIRFLOW_V_3_3_PLUS", False)
    monkeypatch.setattr(compat, "task_state", _state(state))
    deferral = deferred(drill)
    job = deferral.trigger.job_name
    drill.running()
    _, task = await run_trigger(deferral.trigger)
    await cancel(task)  # 3.1 and 3.2 cancel plainly on a user action too
    wait_until(lambda: job not in drill.jobs())
    drill.gate.touch()
    time.sleep(0.3)
    assert (drill.executions("start"), drill.executions("done")) == (1, 0)


async def test_a_task_killed_while_deferred_on_airflow_3_3_deletes_its_job(drill: Drill) -> None:
    deferral = deferred(drill)
    job = deferral.trigger.job_name
    drill.running()
    _, task = await run_trigger(deferral.trigger)
    await cancel(task, _USER_ACTION_CANCEL_MSG)
    wait_until(lambda: job not in drill.jobs())
    drill.gate.touch()
    time.sleep(0.3)
    assert (drill.executions("start"), drill.executions("done")) == (1, 0)


@pytest.mark.parametrize("airflow", ["3.2", "3.3"])
async def test_a_triggerer_restart_never_cancels_and_the_new_trigger_finds_the_job(
    drill: Drill, monkeypatch: pytest.MonkeyPatch, airflow: str
) -> None:
    if airflow == "3.2":
        monkeypatch.setattr(compat, "AIRFLOW_V_3_3_PLUS", False)
        monkeypatch.setattr(compat, "task_state", _state("deferred"))
    deferral = deferred(drill)
    job = deferral.trigger.job_name
    drill.running()
    _, task = await run_trigger(deferral.trigger)
    await cancel(task)  # the triggerer stops: cleanup() runs, on_kill() does not
    assert drill.jobs()[job]["status"] == "Running"
    drill.gate.touch()
    runner, again = await run_trigger(deferral.trigger)  # another triggerer picks it up
    await asyncio.wait_for(again, 20)
    ((_, event),) = [(e.trigger_id, e.event) for e in runner.events]
    assert event.payload["status"] == "success"
    assert (drill.executions("start"), drill.executions("done")) == (1, 1)


def _state(state: str) -> Callable[[Any], Any]:
    async def task_state(ti: Any) -> str:
        return state

    return task_state


# an outage while waiting ----------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [False, True], ids=["waiting", "deferrable"])
async def test_a_wait_rides_out_an_api_outage_and_succeeds(drill: Drill, deferrable: bool) -> None:
    """3 s of 503 on every job listing and log read (30 s in production, the same path:
    the pauses double from the poll interval up to a minute)."""
    op = drill.operator(deferrable=deferrable)
    outage = ErrorBurst(route=f"/system/logs/{drill.name}", status=503, count=-1)

    async def outage_then_gate() -> None:
        await asyncio.to_thread(drill.running)
        drill.oscar.faults.add(outage)
        await asyncio.sleep(3)
        drill.gate.touch()
        drill.oscar.faults.clear()

    helper = asyncio.create_task(outage_then_gate())
    if deferrable:
        with pytest.raises(TaskDeferred) as deferral:
            op.execute(drill.context())
        runner, task = await run_trigger(deferral.value.trigger)
        await asyncio.wait_for(task, 30)
        (event,) = [e.event for e in runner.events]
        result = drill.operator().execute_complete(
            drill.context(), event.payload, **(deferral.value.kwargs or {})
        )
    else:
        result = await asyncio.to_thread(op.execute, drill.context())
    await helper
    assert result["text"] == "drill input"
    assert (drill.executions("start"), drill.executions("done")) == (1, 1)
