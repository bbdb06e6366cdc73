"""OscarHook's job listing, logs and deletion against the embedded OSCAR."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.api import JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.transport import client_options
from airflow_provider_oscar.local.faults import FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

CONN_ID = "oscar_jobs_test"
SCRIPT = '#!/bin/sh\necho "processed $(cat "$INPUT_FILE_PATH")"\n'


@pytest.fixture
def hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", oscar.connection_json())
    return OscarHook(CONN_ID)


@pytest.fixture
def service(deploy: Callable[..., dict[str, Any]]) -> str:
    return str(deploy(SCRIPT)["name"])


@pytest.fixture
def job_name(service: str, unique_name: Callable[[str], str]) -> str:
    return unique_name(service)


def finished(hook: OscarHook, service: str, job: str) -> JobInfo:
    def probe() -> JobInfo | None:
        info = hook.list_jobs(service).get(job)
        return info if info and info.finished else None

    return wait_until(probe)


def intercept(hook: OscarHook, answer: Callable[[httpx.Request, httpx.Response], httpx.Response]):
    """Let ``answer`` rewrite the embedded OSCAR's responses, as another OSCAR version would."""
    real = httpx.HTTPTransport()

    def handle(request: httpx.Request) -> httpx.Response:
        response = real.handle_request(request)
        response.read()
        return answer(request, response)

    options = client_options(hook.settings)
    hook._client = httpx.Client(transport=httpx.MockTransport(handle), **options)


# listing ------------------------------------------------------------------------------------


def test_list_jobs_reports_a_finished_job_as_succeeded_with_its_times(
    hook: OscarHook, service: str, job_name: str
) -> None:
    hook.submit_job(service, "x", job_name=job_name)
    info = finished(hook, service, job_name)
    assert (info.name, info.status) == (job_name, "Succeeded")
    assert info.creation_time and info.start_time and info.finish_time


def test_list_jobs_reports_a_failed_job(
    hook: OscarHook, service: str, job_name: str, oscar: OscarLocal
) -> None:
    oscar.faults.add(FailingJobs(service=service))
    hook.submit_job(service, "x", job_name=job_name)
    assert finished(hook, service, job_name).status == "Failed"


def test_list_jobs_follows_next_page_beyond_one_page(
    hook: OscarHook, service: str, oscar: OscarLocal
) -> None:
    count = 75  # OSCAR pages at 70 jobs; stuck jobs never start a process
    oscar.faults.add(StuckJobs(service=service, count=count))
    names = {f"{service}-{i:03d}" for i in range(count)}
    for name in names:
        hook.submit_job(service, "x", job_name=name)
    jobs = hook.list_jobs(service)
    assert set(jobs) == names
    assert {j.status for j in jobs.values()} == {"Pending"}


def test_list_jobs_reads_the_bare_map_of_oscar_up_to_3_6_3(
    hook: OscarHook, service: str, job_name: str
) -> None:
    hook.submit_job(service, "x", job_name=job_name)
    finished(hook, service, job_name)

    def bare_map(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == f"/system/logs/{service}":
            return httpx.Response(200, json=response.json()["jobs"])
        return response

    intercept(hook, bare_map)
    assert hook.list_jobs(service)[job_name].status == "Succeeded"


def test_list_jobs_of_an_old_oscar_treats_an_empty_status_as_unknown(
    hook: OscarHook, service: str
) -> None:
    def bare_map(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == f"/system/logs/{service}":
            return httpx.Response(200, json={f"{service}-old": {"status": ""}})
        return response

    intercept(hook, bare_map)
    assert hook.list_jobs(service) == {f"{service}-old": JobInfo(f"{service}-old", "Unknown")}


def test_list_jobs_is_empty_when_oscar_answers_an_oidc_user_with_an_empty_body(
    hook: OscarHook, service: str, job_name: str
) -> None:
    hook.submit_job(service, "x", job_name=job_name)

    def empty_body(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == f"/system/logs/{service}":
            return httpx.Response(200, content=b"")
        return response

    intercept(hook, empty_body)
    assert hook.list_jobs(service) == {}


def test_list_jobs_of_an_unknown_service_is_a_client_error(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError) as caught:
        hook.list_jobs("no-such-service")
    assert (caught.value.status_code, caught.value.service) == (404, "no-such-service")


# logs ---------------------------------------------------------------------------------------


def test_get_job_logs_returns_the_script_output(
    hook: OscarHook, service: str, job_name: str
) -> None:
    hook.submit_job(service, "data", job_name=job_name)
    finished(hook, service, job_name)
    logs = hook.get_job_logs(service, job_name)
    assert logs is not None
    assert "processed data" in logs


def test_get_job_logs_with_timestamps_prefixes_every_line(
    hook: OscarHook, service: str, job_name: str
) -> None:
    hook.submit_job(service, "data", job_name=job_name)
    finished(hook, service, job_name)
    logs = hook.get_job_logs(service, job_name, timestamps=True)
    assert logs
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
    assert all(stamp.match(line) for line in logs.splitlines())


def test_get_job_logs_of_a_pending_job_without_a_pod_is_none(
    hook: OscarHook, service: str, job_name: str, oscar: OscarLocal
) -> None:
    oscar.faults.add(StuckJobs(service=service))
    hook.submit_job(service, "x", job_name=job_name)
    assert hook.list_jobs(service)[job_name].status == "Pending"
    assert hook.get_job_logs(service, job_name) is None


def test_get_job_logs_of_a_suspended_job_is_none(
    hook: OscarHook, service: str, job_name: str, oscar: OscarLocal
) -> None:
    oscar.faults.add(StuckJobs(service=service, status="Suspended"))
    hook.submit_job(service, "x", job_name=job_name)
    assert hook.list_jobs(service)[job_name].status == "Suspended"
    assert hook.get_job_logs(service, job_name) is None


def test_get_job_logs_of_a_failed_job_explain_the_failure(
    hook: OscarHook, service: str, job_name: str, oscar: OscarLocal
) -> None:
    oscar.faults.add(FailingJobs(service=service))
    hook.submit_job(service, "x", job_name=job_name)
    finished(hook, service, job_name)
    assert "injected failure" in (hook.get_job_logs(service, job_name) or "")


# deleting -----------------------------------------------------------------------------------


def test_delete_job_removes_it_from_the_list(hook: OscarHook, service: str, job_name: str) -> None:
    hook.submit_job(service, "x", job_name=job_name)
    finished(hook, service, job_name)
    assert hook.delete_job(service, job_name) is True
    assert job_name not in hook.list_jobs(service)


def test_delete_of_an_unknown_job_is_false(hook: OscarHook, service: str) -> None:
    assert hook.delete_job(service, f"{service}-missing") is False


def test_delete_jobs_removes_only_succeeded_jobs_by_default(
    hook: OscarHook, service: str, oscar: OscarLocal
) -> None:
    hook.submit_job(service, "x", job_name=f"{service}-done")
    finished(hook, service, f"{service}-done")
    oscar.faults.add(StuckJobs(service=service))
    hook.submit_job(service, "x", job_name=f"{service}-stuck")
    hook.delete_jobs(service)
    assert list(hook.list_jobs(service)) == [f"{service}-stuck"]


def test_delete_jobs_with_everything_removes_pending_jobs_too(
    hook: OscarHook, service: str, oscar: OscarLocal
) -> None:
    oscar.faults.add(StuckJobs(service=service))
    hook.submit_job(service, "x", job_name=f"{service}-stuck")
    hook.delete_jobs(service, everything=True)
    assert hook.list_jobs(service) == {}


def test_job_info_serialises_to_a_json_dict(hook: OscarHook, service: str, job_name: str) -> None:
    hook.submit_job(service, "x", job_name=job_name)
    info = finished(hook, service, job_name)
    assert json.loads(json.dumps(info.to_dict()))["status"] == "Succeeded"
