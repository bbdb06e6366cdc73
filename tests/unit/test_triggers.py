"""The job, service-ready and output triggers: serialisation, and their events against OSCAR."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from airflow.sdk.module_loading import import_string
from airflow.triggers.base import BaseTrigger
from minio import Minio

from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.faults import FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.triggers.batch import OscarJobsTrigger
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger, OscarServiceReadyTrigger
from airflow_provider_oscar.triggers.storage import OscarOutputTrigger
from tests.helpers import first_event

TRIGGERS = [
    OscarJobTrigger(
        service_name="svc", job_name="svc-1", oscar_conn_id="c", poll_interval=2, deadline=1e9
    ),
    OscarJobTrigger(service_name="svc", job_name="svc-1", cancel_on_kill=False),
    OscarJobTrigger(
        service_name="svc", job_name="svc-2", live_logs=True, log_lines=7, input_object="b/in/x"
    ),
    OscarJobsTrigger(service_name="svc", job_names=["svc-1", "svc-2"], enough=1, deadline=3e9),
    OscarServiceReadyTrigger(service_name="svc", oscar_conn_id="c", poll_interval=1, deadline=5.5),
    OscarOutputTrigger(
        path="out/x/", prefix=True, contains=".json", newer_than=1.7e9, deadline=2e9
    ),
    OscarOutputTrigger(path="out/x/result.json"),
    OscarOutputTrigger(path="out/x/", prefix=True, contains="tok", input_object="in/x/tok-a"),
]


@pytest.fixture
def connected(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Triggers reach the session's OSCAR, and any synchronous connection lookup fails."""

    def no_sync_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trigger looked its connection up synchronously")

    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())
    monkeypatch.setattr(OscarHook, "get_connection", no_sync_lookup)
    yield


@pytest.fixture(scope="module")
def slow_oscar(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """An OSCAR whose new services stay ``pending`` for a minute (sharing the session's S3)."""
    with OscarLocal(settings=Settings(deploy_delay=60), s3=oscar.s3) as server:
        yield server


def submit(oscar: OscarLocal, service: dict[str, Any], job: str) -> None:
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=b"",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text


# serialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialized_trigger_rebuilds_from_its_classpath_with_the_same_kwargs(
    trigger: BaseTrigger,
) -> None:
    classpath, kwargs = trigger.serialize()
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialized_trigger_kwargs_survive_a_json_round_trip(trigger: BaseTrigger) -> None:
    _, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs


# job trigger -----------------------------------------------------------------------------


@pytest.mark.usefixtures("connected")
async def test_job_trigger_reports_success_with_the_job_info(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    job = f"{service['name']}-ok"
    submit(oscar, service, job)
    trigger = OscarJobTrigger(service_name=service["name"], job_name=job, poll_interval=0.05)
    event = await first_event(trigger)
    assert event.payload["status"] == "success"
    assert event.payload["info"]["name"] == job
    assert event.payload["info"]["status"] == "Succeeded"


@pytest.mark.usefixtures("connected")
async def test_job_trigger_reports_a_failed_job_as_failed(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    oscar.faults.add(FailingJobs(service=service["name"]))
    job = f"{service['name']}-bad"
    submit(oscar, service, job)
    trigger = OscarJobTrigger(service_name=service["name"], job_name=job, poll_interval=0.05)
    event = await first_event(trigger)
    assert event.payload["status"] == "failed"
    assert event.payload["info"]["status"] == "Failed"


@pytest.mark.usefixtures("connected")
async def test_job_trigger_times_out_at_its_deadline_with_the_last_status(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo done\n")
    oscar.faults.add(StuckJobs(service=service["name"]))
    job = f"{service['name']}-stuck"
    submit(oscar, service, job)
    trigger = OscarJobTrigger(
        service_name=service["name"],
        job_name=job,
        poll_interval=0.05,
        deadline=time.time() + 0.3,
    )
    event = await first_event(trigger)
    assert event.payload["status"] == "timeout"
    assert event.payload["info"]["status"] == "Pending"


@pytest.mark.usefixtures("connected")
async def test_job_trigger_reports_a_job_absent_from_its_listings_as_gone(
    deploy: Callable[..., dict],
) -> None:
    service = deploy("echo done\n")
    trigger = OscarJobTrigger(
        service_name=service["name"], job_name=f"{service['name']}-none", poll_interval=0.05
    )
    event = await first_event(trigger)
    assert event.payload["status"] == "gone"
    assert "deleted" in event.payload["message"]


# service-ready trigger -------------------------------------------------------------------


@pytest.mark.usefixtures("connected")
async def test_service_ready_trigger_reports_a_ready_deployment(
    deploy: Callable[..., dict],
) -> None:
    service = deploy("echo done\n")
    event = await first_event(OscarServiceReadyTrigger(service_name=service["name"]))
    assert event.payload["status"] == "success"
    assert event.payload["deployment"]["state"] == "ready"


@pytest.mark.usefixtures("connected")
async def test_service_ready_trigger_times_out_while_the_deployment_is_pending(
    slow_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, unique_name: Callable[[str], str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", slow_oscar.connection_json())
    name = unique_name("slow")
    with httpx.Client(
        base_url=slow_oscar.endpoint, auth=(slow_oscar.user, slow_oscar.password)
    ) as admin:
        created = admin.post(
            "/system/services", json={"name": name, "image": "local/test", "script": "true\n"}
        )
        assert created.status_code == 201, created.text
        trigger = OscarServiceReadyTrigger(
            service_name=name, poll_interval=0.05, deadline=time.time() + 0.3
        )
        event = await first_event(trigger)
        admin.delete(f"/system/services/{name}")
    assert event.payload["status"] == "timeout"
    assert event.payload["deployment"]["state"] == "pending"


# output trigger --------------------------------------------------------------------------


@pytest.mark.usefixtures("connected")
async def test_output_trigger_reports_the_objects_found_under_a_prefix(
    s3: Minio, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("out")
    s3.make_bucket(bucket)
    s3.put_object(bucket, "run/a.json", io.BytesIO(b"{}"), 2)
    s3.put_object(bucket, "run/a.log", io.BytesIO(b"log"), 3)
    trigger = OscarOutputTrigger(path=f"{bucket}/run/", prefix=True, contains=".json")
    event = await first_event(trigger)
    assert event.payload["status"] == "success"
    assert [(o["key"], o["size"]) for o in event.payload["objects"]] == [("run/a.json", 2)]


@pytest.mark.usefixtures("connected")
async def test_output_trigger_times_out_when_the_object_never_appears(
    s3: Minio, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("out")
    s3.make_bucket(bucket)
    trigger = OscarOutputTrigger(
        path=f"{bucket}/run/missing.json", poll_interval=0.05, deadline=time.time() + 0.3
    )
    event = await first_event(trigger)
    assert event.payload["status"] == "timeout"


@pytest.mark.usefixtures("connected")
async def test_output_trigger_times_out_at_a_deadline_that_falls_between_two_polls(
    s3: Minio, unique_name: Callable[[str], str]
) -> None:
    """poll_interval 30 s, deadline in 0.5 s: the event comes at the deadline."""
    bucket = unique_name("out")
    s3.make_bucket(bucket)
    started = time.monotonic()
    trigger = OscarOutputTrigger(
        path=f"{bucket}/run/missing.json", poll_interval=30, deadline=time.time() + 0.5
    )
    event = await asyncio.wait_for(first_event(trigger), 15)
    assert event.payload["status"] == "timeout"
    assert 0.5 <= time.monotonic() - started < 15
