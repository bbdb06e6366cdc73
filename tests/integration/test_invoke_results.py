"""What the invocation operators hand downstream: decoded answers, nothing lost, XCom kept small,
and live job logs in the task log while a job runs."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context
from minio import Minio

from airflow_provider_oscar.compat import AirflowFailException, TaskDeferred
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.invoke import (
    OscarRunServiceOperator,
    OscarSubmitJobOperator,
)
from airflow_provider_oscar.operators.offload import read_results
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor
from airflow_provider_oscar.triggers.oscar import OscarServiceReadyTrigger
from tests.helpers import first_event, wait_until

PREDICTION = '{"status": "OK", "labels": ["Iris setosa"], "probabilities": [0.9]}'
# Runs until its gate opens; meanwhile the job's log holds the supervisor's records so far.
GATED = 'while [ ! -e "$GATE" ]; do sleep 0.05; done\necho finished\n'
LIVE = "Script file found"  # a record the supervisor logs before the script starts
STREAMED = (
    "2026-01-01 00:00:00,000 - supervisor - INFO - SUPERVISOR: Initializing Binary supervisor\n"
    f"2026-01-01 00:00:00,001 - supervisor - INFO - {LIVE} in '/oscar/config/script.sh'\n"
)


@pytest.fixture
def streamed_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log reads of a running job answer what its pod printed so far, as a real pod's log
    does (logs.go streams the pod's log; the embedded OSCAR writes a job's log when it ends)."""
    real_sync = httpx.HTTPTransport.handle_request
    real_async = httpx.AsyncHTTPTransport.handle_async_request

    def streamed(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        job_log = request.method == "GET" and parts[:2] == ["system", "logs"] and len(parts) == 4
        if job_log and response.status_code == 200 and not response.content:
            return httpx.Response(200, text=STREAMED, request=request)
        return response

    def sync(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = real_sync(self, request)
        response.read()
        return streamed(request, response)

    async def asynchronous(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> Any:
        response = await real_async(self, request)
        await response.aread()
        return streamed(request, response)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", sync)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", asynchronous)


@pytest.fixture(autouse=True)
def _connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


def context() -> Context:
    ti = SimpleNamespace(
        dag_id="results",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="invoke",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


def with_bucket(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/out"}],
    }


def run(service: str, **kwargs: Any) -> dict[str, Any]:
    arguments = {"input_data": "x", **kwargs}
    return OscarRunServiceOperator(task_id="invoke", service_name=service, **arguments).execute(
        context()
    )


# decode="auto" -------------------------------------------------------------------------------


def test_auto_decodes_a_prediction_as_a_prediction(deploy: Callable[..., dict]) -> None:
    service = deploy(f"echo '{PREDICTION}'\n", log_level="CRITICAL")["name"]
    assert run(service)["prediction"]["labels"] == ["Iris setosa"]


def test_auto_keeps_console_text_that_is_no_prediction(deploy: Callable[..., dict]) -> None:
    service = deploy("echo 'just words'\n", log_level="CRITICAL")["name"]
    result = run(service)
    assert result["text"].strip() == "just words"
    assert "prediction" not in result


def test_auto_keeps_a_binary_output_file_when_there_is_nowhere_to_save_it(
    deploy: Callable[..., dict],
) -> None:
    script = 'printf "\\001\\002\\377" > "$TMP_OUTPUT_DIR/blob.bin"\n'
    service = deploy(script, log_level="CRITICAL")["name"]
    result = run(service)
    assert result["files"] == {"output": 3}
    assert base64.b64decode(result["content_base64"]["output"]) == b"\x01\x02\xff"


def test_a_prediction_expected_but_not_given_fails_saving_the_raw_output_first(
    deploy: Callable[..., dict], s3: Minio, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("raw")
    service = deploy("echo 'not a prediction'\n", log_level="CRITICAL", **with_bucket(name))
    with pytest.raises(AirflowFailException, match="expected a prediction document") as failed:
        run(service["name"], decode="prediction")
    message = str(failed.value)
    assert "the raw output was saved to" in message
    saved = message.rsplit("saved to ", 1)[1].split()[0].rstrip(",")
    bucket, key = saved.split("/", 1)
    assert s3.get_object(bucket, key).read().strip() == b"not a prediction"


# results out of XCom -------------------------------------------------------------------------


def test_a_result_over_the_threshold_goes_to_the_bucket_and_xcom_keeps_a_summary(
    deploy: Callable[..., dict], s3: Minio, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("big")
    script = "python3 -c \"print('leaf ' * 20000)\"\n"
    deploy(script, log_level="CRITICAL", **with_bucket(name))
    result = run(name, results_threshold_bytes=4096)
    assert "text" not in result
    assert result["result_bytes"] > 4096
    bucket, key = result["result_object"].split("/", 1)
    assert key.startswith(".oscar-airflow/results/")
    stored = json.loads(s3.get_object(bucket, key).read())
    assert stored["text"].startswith("leaf leaf")
    (whole,) = read_results([result])  # what a consumer reads back
    assert whole == stored


def test_mapped_results_are_read_in_one_call_and_offloaded_ones_fetched(
    deploy: Callable[..., dict], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("mapped")
    deploy("python3 -c \"print('moss ' * 5000)\"\n", log_level="CRITICAL", **with_bucket(name))
    offloaded = run(name, results_threshold_bytes=1024)
    small = {"service": name, "text": "tiny"}

    class Lazy(list[Any]):  # counts requests as Airflow's LazyXComSequence would
        requests = 0

        def __getitem__(self, index: Any) -> Any:
            Lazy.requests += 1
            return super().__getitem__(index)

    values = read_results(Lazy([offloaded, small, small]))
    assert Lazy.requests == 1  # one slice, not one request per map index
    assert values[0]["text"].startswith("moss moss") and values[1:] == [small, small]


# live logs -----------------------------------------------------------------------------------


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    yield path
    path.touch()


@pytest.mark.usefixtures("streamed_logs")
def test_new_job_log_lines_reach_the_task_log_while_the_job_runs(
    deploy: Callable[..., dict], gate: Path, oscar: OscarLocal
) -> None:
    service = deploy(GATED, environment={"variables": {"GATE": str(gate)}})
    op = OscarSubmitJobOperator(
        task_id="invoke", service_name=service["name"], input_data="x", poll_interval=0.1,
        decode="none", timeout=30,
    )  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        done = asyncio.run(_run_and_gate(op, gate, logs))
    assert done["job"]["status"] == "Succeeded"
    reads = _log_reads(oscar, service["name"])
    polls = _listings(oscar, service["name"])
    assert reads <= polls + 1  # at most one log read per poll (and the final one)


async def _run_and_gate(op: OscarSubmitJobOperator, gate: Path, logs: list[Any]) -> Any:
    waiting = asyncio.ensure_future(asyncio.to_thread(op.execute, context()))
    try:  # the record shows in the task log while the job still waits for its gate
        await asyncio.to_thread(
            wait_until, lambda: any(LIVE in str(e.get("event")) for e in logs), 20
        )
    finally:
        gate.touch()
    return await waiting


@pytest.mark.usefixtures("streamed_logs")
async def test_a_deferred_job_trigger_copies_new_log_lines_and_says_how_many(
    deploy: Callable[..., dict], gate: Path
) -> None:
    service = deploy(GATED, environment={"variables": {"GATE": str(gate)}})
    op = OscarSubmitJobOperator(
        task_id="invoke", service_name=service["name"], input_data="x", poll_interval=0.1,
        decode="none", deferrable=True, timeout=30,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferral:
        op.execute(context())
    trigger = deferral.value.trigger
    with structlog.testing.capture_logs() as logs:
        running = asyncio.ensure_future(first_event(trigger))
        try:
            await asyncio.to_thread(
                wait_until, lambda: any(LIVE in str(e.get("event")) for e in logs), 20
            )
        finally:
            gate.touch()
        event = await running
    assert event.payload["status"] == "success"
    assert event.payload["log_lines"] >= 1


def _log_reads(oscar: OscarLocal, service: str) -> int:
    from airflow_provider_oscar.local.api import request_counts

    assert oscar.cluster is not None
    counts = request_counts(oscar.cluster)
    return sum(n for route, n in counts.items() if route.startswith(f"GET /system/logs/{service}/"))


def _listings(oscar: OscarLocal, service: str) -> int:
    from airflow_provider_oscar.local.api import request_counts

    assert oscar.cluster is not None
    return request_counts(oscar.cluster)[f"GET /system/logs/{service}"]


# cancelling an upload ------------------------------------------------------------------------


def test_killing_an_upload_that_started_no_job_yet_removes_its_pending_input(
    deploy: Callable[..., dict], s3: Minio, unique_name: Callable[[str], str], oscar: OscarLocal
) -> None:
    from airflow_provider_oscar.local.faults import StuckJobs

    name = unique_name("pending")
    deploy("cat $INPUT_FILE_PATH\n", **with_bucket(name))
    oscar.faults.add(StuckJobs(service=name, count=-1))  # the job never starts
    op = OscarSubmitJobOperator(
        task_id="invoke", service_name=name, via="bucket", input_data="x", poll_interval=0.1,
        deferrable=True,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferral:
        op.execute(context())
    trigger = deferral.value.trigger
    key = trigger.input_object.split("/", 1)[1]
    assert s3.stat_object(name, key)
    asyncio.run(trigger.cancel_remote())
    inputs = s3.list_objects(name, prefix="in/", recursive=True)
    assert [o.object_name for o in inputs if not str(o.object_name).endswith("/")] == []
    admin = httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password))
    assert admin.get(f"/system/logs/{name}").json()["jobs"] == {}


# readiness before OSCAR 4.0 ------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_the_readiness_sensor_works_on_3_7_from_the_service_itself(
    oscar_at: Callable[[str], OscarLocal], monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    oscar = oscar_at("3.7")
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())
    name = f"ready-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as admin:
        body = {"name": name, "image": "local/test", "script": "true\n"}
        assert admin.post("/system/services", json=body).status_code == 201
        try:
            sensor = OscarServiceReadySensor(
                task_id="ready", service_name=name, poke_interval=0.1, deferrable=deferrable
            )
            deployment = sensor.execute(context())
            trigger = OscarServiceReadyTrigger(service_name=name, poll_interval=0.1)
            event = asyncio.run(first_event(trigger))
        finally:
            admin.delete(f"/system/services/{name}")
    assert deployment["readiness"] == "ready"
    assert event.payload["status"] == "success"
