"""The job, service-ready and output sensors against the embedded OSCAR, poking and deferred."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest
from minio import Minio

from airflow_provider_oscar.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_oscar.links import OscarJobLogsLink, OscarOutputLink
from airflow_provider_oscar.local.faults import FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.sensors.oscar import OscarJobSensor, OscarServiceReadySensor
from airflow_provider_oscar.sensors.storage import OscarOutputSensor
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger, OscarServiceReadyTrigger
from airflow_provider_oscar.triggers.storage import OscarOutputTrigger
from tests.helpers import CRASH_LOG, fail_deployment, resume

GATED = 'echo "waiting for the gate"\nwhile [ ! -e "$GATE" ]; do sleep 0.02; done\necho passed\n'
FAST = {"poke_interval": 0.05, "timeout": 30}


@pytest.fixture
def ctx() -> dict[str, Any]:
    return {"ti": MagicMock()}


@pytest.fixture(autouse=True)
def on_oscar(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


@pytest.fixture(scope="module")
def slow_oscar(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """Services pending for 1 s and jobs killed after 1 s (sharing the session's S3 store)."""
    settings = Settings(deploy_delay=1.0, job_timeout=1.0)
    with OscarLocal(settings=settings, s3=oscar.s3) as server:
        yield server


@pytest.fixture
def slow_admin(slow_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """An admin client on the slow OSCAR, which the default connection now points at."""
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", slow_oscar.connection_json())
    auth = (slow_oscar.user, slow_oscar.password)
    with httpx.Client(base_url=slow_oscar.endpoint, auth=auth) as admin:
        yield admin
        for service in admin.get("/system/services").json():
            admin.delete(f"/system/services/{service['name']}")


@pytest.fixture
def gated(deploy: Callable[..., dict], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A service whose jobs run until the returned gate file exists."""
    gate = tmp_path / "gate"
    return deploy(GATED, environment={"variables": {"GATE": str(gate)}}), gate


def submit(endpoint: str, service: dict[str, Any], suffix: str) -> str:
    job = f"{service['name']}-{suffix}"
    response = httpx.post(
        f"{endpoint}/job/{service['name']}",
        content=b"",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text
    return job


def create(admin: httpx.Client, name: str, script: str = "echo hi\n") -> dict[str, Any]:
    response = admin.post("/system/services", json={"name": name, "image": "t", "script": script})
    assert response.status_code == 201, response.text
    return admin.get(f"/system/services/{name}").json()


def job_sensor(service: dict[str, Any], job: str, **kwargs: Any) -> OscarJobSensor:
    return OscarJobSensor(
        task_id="wait", service_name=service["name"], job_name=job, **{**FAST, **kwargs}
    )


# job sensor, poking ----------------------------------------------------------------------


def test_job_sensor_returns_the_succeeded_jobs_info(
    oscar: OscarLocal, deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    job = submit(oscar.endpoint, service, "ok")
    info = job_sensor(service, job, deferrable=False).execute(ctx)
    assert info["name"] == job
    assert info["status"] == "Succeeded"
    assert info["finish_time"]


def test_job_sensor_copies_the_jobs_log_into_the_task_log(
    oscar: OscarLocal, deploy: Callable[..., dict], ctx: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    service = deploy("echo remote-line-1\necho remote-line-2\n")
    job = submit(oscar.endpoint, service, "log")
    job_sensor(service, job, deferrable=False).execute(ctx)
    out = capsys.readouterr().out
    assert f"[{job}] remote-line-1" in out
    assert f"[{job}] remote-line-2" in out


def test_job_sensor_fails_a_failed_job_with_its_last_log_lines(
    oscar: OscarLocal, deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    oscar.faults.add(FailingJobs(service=service["name"]))
    job = submit(oscar.endpoint, service, "bad")
    with pytest.raises(AirflowFailException, match="the job's pod was evicted") as failure:
        job_sensor(service, job, deferrable=False).execute(ctx)
    assert f"job {job!r} of service {service['name']!r} failed" in str(failure.value)


def test_job_sensor_returns_a_failed_job_when_failures_are_not_fatal(
    oscar: OscarLocal, deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    oscar.faults.add(FailingJobs(service=service["name"]))
    job = submit(oscar.endpoint, service, "bad")
    sensor = job_sensor(service, job, fail_on_job_failure=False, deferrable=False)
    assert sensor.execute(ctx)["status"] == "Failed"


def test_job_sensor_fails_clearly_when_the_job_does_not_exist(
    deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    job = f"{service['name']}-never"
    with pytest.raises(AirflowFailException, match=f"has no job '{job}'"):
        job_sensor(service, job, deferrable=False).execute(ctx)


# job sensor, deferred --------------------------------------------------------------------


def test_deferrable_job_sensor_defers_to_a_job_trigger_that_leaves_the_job_alone(
    oscar: OscarLocal, gated: tuple[dict[str, Any], Path], ctx: dict
) -> None:
    service, gate = gated
    job = submit(oscar.endpoint, service, "run")
    started = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        job_sensor(service, job, timeout=120, deferrable=True).execute(ctx)
    gate.touch()
    trigger = deferred.value.trigger
    assert isinstance(trigger, OscarJobTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs == {
        "oscar_conn_id": "oscar_default",
        "poll_interval": 0.05,
        "deadline": pytest.approx(started + 120, abs=5),
        "service_name": service["name"],
        "job_name": job,
        "cancel_on_kill": False,
        "live_logs": False,
        "log_lines": 0,
        "input_object": None,
    }
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=120)


def test_deferrable_job_sensor_persists_the_job_logs_link_before_deferring(
    oscar: OscarLocal, gated: tuple[dict[str, Any], Path], ctx: dict
) -> None:
    service, gate = gated
    job = submit(oscar.endpoint, service, "run")
    with pytest.raises(TaskDeferred):
        job_sensor(service, job, deferrable=True).execute(ctx)
    gate.touch()
    ctx["ti"].xcom_push.assert_called_once_with(
        key=OscarJobLogsLink.persist_key(),
        value={
            "endpoint": oscar.endpoint,
            "service": service["name"],
            "job": job,
            "bucket": None,
            "key": None,
        },
    )


async def test_deferred_job_sensor_resumes_with_the_jobs_info(
    oscar: OscarLocal, gated: tuple[dict[str, Any], Path], ctx: dict
) -> None:
    service, gate = gated
    job = submit(oscar.endpoint, service, "run")
    sensor = job_sensor(service, job, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    gate.touch()
    info = await resume(sensor, ctx, deferred.value)
    assert (info["name"], info["status"]) == (job, "Succeeded")


async def test_deferred_job_sensor_fails_a_job_that_failed_while_deferred(
    slow_oscar: OscarLocal, slow_admin: httpx.Client, unique_name: Callable[[str], str], ctx: dict
) -> None:
    service = create(slow_admin, unique_name("kill"), "sleep 30\n")
    job = submit(slow_oscar.endpoint, service, "slow")
    sensor = job_sensor(service, job, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    with pytest.raises(AirflowFailException, match="exceeded the time limit"):
        await resume(sensor, ctx, deferred.value)


async def test_deferred_job_sensor_times_out_as_a_sensor_timeout(
    oscar: OscarLocal, deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    oscar.faults.add(StuckJobs(service=service["name"]))
    job = submit(oscar.endpoint, service, "stuck")
    sensor = job_sensor(service, job, timeout=0.3, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    with pytest.raises(AirflowSensorTimeout, match="still Pending"):
        await resume(sensor, ctx, deferred.value)


async def test_deferred_job_sensor_fails_for_a_retry_when_the_job_disappears(
    oscar: OscarLocal,
    admin: httpx.Client,
    gated: tuple[dict[str, Any], Path],
    ctx: dict,
) -> None:
    service, _ = gated
    job = submit(oscar.endpoint, service, "run")
    sensor = job_sensor(service, job, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    assert admin.delete(f"/system/logs/{service['name']}/{job}").status_code == 204
    with pytest.raises(AirflowException, match="was deleted") as failure:
        await resume(sensor, ctx, deferred.value)
    assert not isinstance(failure.value, AirflowFailException)


def test_deferrable_job_sensor_with_soft_fail_skips_when_the_first_poke_fails(
    deploy: Callable[..., dict], ctx: dict
) -> None:
    service = deploy("echo done\n")
    sensor = job_sensor(service, f"{service['name']}-never", soft_fail=True, deferrable=True)
    with pytest.raises(AirflowSkipException):
        sensor.execute(ctx)


# service-ready sensor --------------------------------------------------------------------


def test_service_ready_sensor_returns_the_deployment_once_ready(
    slow_admin: httpx.Client, unique_name: Callable[[str], str], ctx: dict
) -> None:
    name = create(slow_admin, unique_name("rdy"))["name"]
    sensor = OscarServiceReadySensor(task_id="ready", service_name=name, deferrable=False, **FAST)
    deployment = sensor.execute(ctx)
    assert (deployment["service_name"], deployment["state"]) == (name, "ready")


def test_service_ready_sensor_fails_on_a_failed_deployment_and_logs_its_logs(
    slow_oscar: OscarLocal,
    slow_admin: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
    ctx: dict,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = create(slow_admin, unique_name("bad"))["name"]
    fail_deployment(slow_oscar, monkeypatch, name)
    sensor = OscarServiceReadySensor(task_id="ready", service_name=name, deferrable=False, **FAST)
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):
        sensor.execute(ctx)
    assert CRASH_LOG in capsys.readouterr().out


def test_service_ready_sensor_fails_for_a_service_that_does_not_exist(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    name = unique_name("none")
    sensor = OscarServiceReadySensor(task_id="ready", service_name=name, deferrable=False, **FAST)
    # deployment.go answers 403 for an unknown service; the sensor says what it means
    with pytest.raises(AirflowFailException, match=f"service '{name}' does not exist"):
        sensor.execute(ctx)


async def test_deferrable_service_ready_sensor_waits_in_a_trigger_for_the_deployment(
    slow_admin: httpx.Client, unique_name: Callable[[str], str], ctx: dict
) -> None:
    name = create(slow_admin, unique_name("rdy"))["name"]
    sensor = OscarServiceReadySensor(task_id="ready", service_name=name, deferrable=True, **FAST)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    assert isinstance(deferred.value.trigger, OscarServiceReadyTrigger)
    assert deferred.value.trigger.service_name == name
    assert (await resume(sensor, ctx, deferred.value))["state"] == "ready"


# output sensor ---------------------------------------------------------------------------


@pytest.fixture
def bucket(s3: Minio, unique_name: Callable[[str], str]) -> str:
    name = unique_name("out")
    s3.make_bucket(name)
    return name


def put(s3: Minio, bucket: str, key: str, data: bytes = b"{}") -> None:
    s3.put_object(bucket, key, io.BytesIO(data), len(data))


def test_output_sensor_returns_the_object_at_its_path(s3: Minio, bucket: str, ctx: dict) -> None:
    put(s3, bucket, "run/result.json", b"[1, 2]")
    sensor = OscarOutputSensor(
        task_id="out", path=f"{bucket}/run/result.json", deferrable=False, **FAST
    )
    (found,) = sensor.execute(ctx)
    assert (found["bucket"], found["key"], found["size"]) == (bucket, "run/result.json", 6)


def test_output_sensor_under_a_prefix_returns_only_names_containing_the_text(
    s3: Minio, bucket: str, ctx: dict
) -> None:
    for key in ("run/a.json", "run/a.log", "run/b.json", "other/c.json"):
        put(s3, bucket, key)
    sensor = OscarOutputSensor(
        task_id="out",
        path=f"{bucket}/run/",
        prefix=True,
        contains=".json",
        deferrable=False,
        **FAST,
    )
    assert sorted(o["key"] for o in sensor.execute(ctx)) == ["run/a.json", "run/b.json"]


def test_output_sensor_ignores_objects_older_than_newer_than(
    s3: Minio, bucket: str, ctx: dict
) -> None:
    put(s3, bucket, "run/old.json")
    sensor = OscarOutputSensor(
        task_id="out",
        path=f"{bucket}/run/old.json",
        newer_than=time.time() + 3600,
        deferrable=False,
        poke_interval=0.05,
        timeout=0.2,
    )
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(ctx)


async def test_deferrable_output_sensor_resumes_with_the_object_that_appeared(
    oscar: OscarLocal, s3: Minio, bucket: str, ctx: dict
) -> None:
    sensor = OscarOutputSensor(
        task_id="out", path=f"{bucket}/run/", prefix=True, deferrable=True, **FAST
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, OscarOutputTrigger)
    assert (trigger.path, trigger.prefix, trigger.poll_interval) == (f"{bucket}/run/", True, 0.05)
    put(s3, bucket, "run/sub/late.json")
    (found,) = await resume(sensor, ctx, deferred.value)
    assert found["key"] == "run/sub/late.json"


async def test_output_sensor_links_the_watched_folder_then_the_found_objects_folder(
    oscar: OscarLocal, s3: Minio, bucket: str, ctx: dict
) -> None:
    sensor = OscarOutputSensor(
        task_id="out", path=f"{bucket}/run/", prefix=True, deferrable=True, **FAST
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    put(s3, bucket, "run/sub/late.json")
    await resume(sensor, ctx, deferred.value)
    persisted = [
        (c.kwargs["value"]["bucket"], c.kwargs["value"]["key"])
        for c in ctx["ti"].xcom_push.call_args_list
        if c.kwargs["key"] == OscarOutputLink.persist_key()
    ]
    assert persisted == [(bucket, "run/"), (bucket, "run/sub/late.json")]


async def test_deferred_output_sensor_times_out_as_a_sensor_timeout(bucket: str, ctx: dict) -> None:
    sensor = OscarOutputSensor(
        task_id="out",
        path=f"{bucket}/missing.json",
        deferrable=True,
        poke_interval=0.05,
        timeout=0.3,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(ctx)
    with pytest.raises(AirflowSensorTimeout, match="no output"):
        await resume(sensor, ctx, deferred.value)
