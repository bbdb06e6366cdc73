"""OscarHook's awaitable face (used by triggers) against the embedded OSCAR.

Every test here forbids the blocking ``get_connection``: the async methods must read the
connection with ``aget_connection`` only. Jobs are submitted with raw HTTP so that nothing in a
test needs the hook's blocking face.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.faults import Drop, ErrorBurst, Latency, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal

pytestmark = pytest.mark.asyncio

CONN_ID = "oscar_async_test"
SCRIPT = '#!/bin/sh\necho "async says $(cat "$INPUT_FILE_PATH")"\n'


class SyncConnectionUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _forbid_sync_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise SyncConnectionUsed("the blocking get_connection was called from async code")

    monkeypatch.setattr(OscarHook, "get_connection", forbidden)


@pytest.fixture
def connect(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OscarHook]:
    def _connect(host: str | None = None, **extra: Any) -> OscarHook:
        conn = json.loads(oscar.connection_json())
        conn["extra"].update({"retries": 3, "backoff": 0.01, **extra})
        if host:
            conn["host"] = host
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return OscarHook(CONN_ID)

    return _connect


@pytest.fixture
def hook(connect: Callable[..., OscarHook]) -> OscarHook:
    return connect()


@pytest.fixture
def service(deploy: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return deploy(SCRIPT)


@pytest.fixture
def submit(oscar: OscarLocal) -> Callable[[dict[str, Any], str], None]:
    """Submit a job named ``job`` to ``service`` with raw HTTP."""

    def _submit(service: dict[str, Any], job: str) -> None:
        response = httpx.post(
            f"{oscar.endpoint}/job/{service['name']}",
            content=base64.b64encode(b"hi"),
            headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
        )
        assert response.status_code == 201, response.text

    return _submit


async def finished(hook: OscarHook, service: str, job: str, timeout: float = 10.0) -> str:
    """Await the job's end with the async face; returns its status."""
    deadline = time.monotonic() + timeout
    while True:
        info = (await hook.alist_jobs(service)).get(job)
        if info and info.finished:
            return info.status
        assert time.monotonic() < deadline, f"{job} did not finish within {timeout} s"
        await asyncio.sleep(0.02)


async def test_the_blocking_connection_lookup_is_forbidden_in_these_tests(hook: OscarHook) -> None:
    with pytest.raises(SyncConnectionUsed):
        hook.get_info()


async def test_aget_status_returns_node_capacity(hook: OscarHook) -> None:
    status = await hook.aget_status()
    assert status["cluster"]["nodes"][0]["cpu"]["capacity_cores"] > 0


async def test_aget_status_leaves_the_event_loop_free_while_oscar_is_slow(
    hook: OscarHook, oscar: OscarLocal
) -> None:
    oscar.faults.add(Latency(route="/system/status", seconds=0.4))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await hook.aget_status()
    finally:
        task.cancel()
    assert ticks >= 10  # a blocked loop would tick at most once


async def test_aget_deployment_reports_a_ready_service(
    hook: OscarHook, service: dict[str, Any]
) -> None:
    status = await hook.aget_deployment(service["name"])
    assert (status["service_name"], status["state"]) == (service["name"], "ready")


async def test_alist_jobs_sees_a_job_finish(
    hook: OscarHook, service: dict[str, Any], submit: Callable[..., None]
) -> None:
    job = f"{service['name']}-a1"
    submit(service, job)
    assert await finished(hook, service["name"], job) == "Succeeded"


async def test_alist_jobs_of_an_unknown_service_is_a_client_error(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError) as caught:
        await hook.alist_jobs("no-such-service")
    assert caught.value.status_code == 404


async def test_aget_job_logs_returns_the_script_output(
    hook: OscarHook, service: dict[str, Any], submit: Callable[..., None]
) -> None:
    job = f"{service['name']}-a1"
    submit(service, job)
    await finished(hook, service["name"], job)
    assert "async says hi" in (await hook.aget_job_logs(service["name"], job) or "")


async def test_aget_job_logs_of_a_pending_job_is_none(
    hook: OscarHook, service: dict[str, Any], submit: Callable[..., None], oscar: OscarLocal
) -> None:
    oscar.faults.add(StuckJobs(service=service["name"]))
    job = f"{service['name']}-a1"
    submit(service, job)
    assert (await hook.alist_jobs(service["name"]))[job].status == "Pending"
    assert await hook.aget_job_logs(service["name"], job) is None


async def test_adelete_job_removes_the_job(
    hook: OscarHook, service: dict[str, Any], submit: Callable[..., None]
) -> None:
    job = f"{service['name']}-a1"
    submit(service, job)
    await finished(hook, service["name"], job)
    assert await hook.adelete_job(service["name"], job) is True
    assert job not in await hook.alist_jobs(service["name"])


async def test_adelete_of_an_unknown_job_is_false(hook: OscarHook, service: dict[str, Any]) -> None:
    assert await hook.adelete_job(service["name"], f"{service['name']}-missing") is False


async def test_async_get_is_retried_through_a_503_burst(hook: OscarHook, oscar: OscarLocal) -> None:
    oscar.faults.add(ErrorBurst(route="/system/status", status=503, count=2))
    assert "cluster" in await hook.aget_status()
    assert oscar.faults.active() == []


async def test_async_get_is_retried_after_a_dropped_connection(
    hook: OscarHook, oscar: OscarLocal, service: dict[str, Any]
) -> None:
    oscar.faults.add(Drop(route=f"/system/logs/{service['name']}", count=1))
    assert await hook.alist_jobs(service["name"]) == {}
    assert oscar.faults.active() == []


async def test_async_burst_longer_than_the_retries_is_an_api_error(
    hook: OscarHook, oscar: OscarLocal
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/status", status=502, count=10))
    with pytest.raises(OscarApiError, match=r"GET /system/status answered 502") as caught:
        await hook.aget_status()
    assert caught.value.status_code == 502
    assert oscar.faults.active()[0]["count"] == 10 - 4


async def test_async_unreachable_cluster_is_an_api_error_after_quick_retries(
    connect: Callable[..., OscarHook],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = connect(host=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(OscarApiError, match=rf"127\.0\.0\.1:{port}: GET /system/status failed"):
        await hook.aget_status()
    assert time.monotonic() - started < 1.0


async def test_async_methods_read_a_changed_connection(
    connect: Callable[..., OscarHook],
) -> None:
    hook = connect(cluster_id="first")
    await hook.aget_status()
    connect(cluster_id="renamed", retries=0)
    with pytest.raises(OscarClientError, match=r"^OSCAR cluster renamed:"):
        await hook.aget_deployment("no-such-service")
