"""OscarHook's retry policy against faults injected into the embedded OSCAR.

Requests are counted on the server: an :class:`ErrorBurst` or :class:`Latency` fault is used up
one request at a time, so its remaining ``count`` says how many requests reached the server.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.faults import Drop, ErrorBurst, Latency, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_retries_test"
RETRIES = 3
COUNTED = '#!/bin/sh\necho run >> "$COUNT_FILE"\necho ok\n'


@pytest.fixture
def connect(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OscarHook]:
    """A hook with few, quick retries (or other extras) on the session's OSCAR."""

    def _connect(host: str | None = None, **extra: Any) -> OscarHook:
        conn = json.loads(oscar.connection_json())
        conn["extra"].update({"retries": RETRIES, "backoff": 0.01, **extra})
        if host:
            conn["host"] = host
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return OscarHook(CONN_ID)

    return _connect


@pytest.fixture
def hook(connect: Callable[..., OscarHook]) -> OscarHook:
    return connect()


@pytest.fixture
def counted(deploy: Callable[..., dict[str, Any]], tmp_path: Path) -> tuple[str, Path]:
    """A service that appends a line to a file each time its script runs."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    env = {"variables": {"COUNT_FILE": str(runs)}}
    return str(deploy(COUNTED, log_level="CRITICAL", environment=env)["name"]), runs


def remaining(oscar: OscarLocal) -> int:
    """The remaining count of the single active fault (0 once it is used up)."""
    active = oscar.faults.active()
    assert len(active) <= 1, active
    return int(str(active[0]["count"])) if active else 0


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


# idempotent requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_is_retried_through_a_short_burst_of_server_errors(
    hook: OscarHook, oscar: OscarLocal, status: Literal[500, 502, 503, 504]
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=status, count=2))
    assert hook.get_info()["version"].startswith("v4.")
    assert remaining(oscar) == 0


def test_get_answered_429_waits_for_retry_after(hook: OscarHook, oscar: OscarLocal) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=429, count=1))
    started = time.monotonic()
    assert hook.get_info()["version"].startswith("v4.")
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, although backoff is 0.01 s


def test_burst_longer_than_the_retries_is_an_api_error_naming_cluster_and_status(
    hook: OscarHook, oscar: OscarLocal
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=503, count=10))
    with pytest.raises(OscarApiError) as caught:
        hook.get_info()
    assert not isinstance(caught.value, OscarClientError)
    assert caught.value.status_code == 503
    assert str(caught.value).startswith(f"OSCAR cluster {oscar.endpoint}: GET /system/info")
    assert "answered 503: injected fault" in str(caught.value)
    assert remaining(oscar) == 10 - (RETRIES + 1)


def test_retries_are_spaced_by_the_backoff_extra(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect(retries=6, backoff=0.01)
    oscar.faults.add(ErrorBurst(route="/system/info", status=503, count=6))
    started = time.monotonic()
    hook.get_info()
    assert time.monotonic() - started < 2.0  # 0.01 s doubling six times (0.63 s), small jitter


def test_zero_retries_sends_a_request_once(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=503, count=2))
    with pytest.raises(OscarApiError, match="answered 503"):
        connect(retries=0).get_info()
    assert remaining(oscar) == 1


def test_client_error_is_raised_at_once_without_retry(hook: OscarHook, oscar: OscarLocal) -> None:
    oscar.faults.add(Latency(route="/system/services/", seconds=0.001, count=100))
    with pytest.raises(OscarClientError) as caught:
        hook.get_deployment("no-such-service")
    assert caught.value.status_code == 403
    assert remaining(oscar) == 99


def test_wrong_password_is_a_client_error_sent_once(
    connect: Callable[..., OscarHook], oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(oscar.connection_json())
    conn["password"] = "wrong-password"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    oscar.faults.add(Latency(route="/system/info", seconds=0.001, count=100))
    with pytest.raises(OscarClientError, match="answered 401") as caught:
        OscarHook(CONN_ID).get_info()
    assert caught.value.status_code == 401
    assert remaining(oscar) == 99


def test_dropped_connection_on_a_get_is_retried(hook: OscarHook, oscar: OscarLocal) -> None:
    oscar.faults.add(Drop(route="/system/services", count=2))
    assert isinstance(hook.list_services(), list)
    assert remaining(oscar) == 0


def test_delete_is_retried_through_a_503(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\n")["name"]
    oscar.faults.add(ErrorBurst(route=f"/system/services/{name}", status=503, count=1))
    assert hook.delete_service(name) is True
    assert hook.get_service(name) is None


def test_apply_is_retried_through_a_503_and_creates_the_service_once(
    hook: OscarHook, oscar: OscarLocal, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("hook-retry")
    oscar.faults.add(ErrorBurst(route="/system/services", status=503, count=2))
    try:
        result = hook.apply_service({"name": name, "image": "local/test", "script": "echo\n"})
        assert result == {name: "created"}
        assert [s.name for s in hook.list_services()].count(name) == 1
    finally:
        hook.delete_service(name)


# job logs (a 500 there means "no pod yet", not a transient failure) ------------------------------


def test_job_logs_are_retried_through_a_503(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\necho the-log-line\n")["name"]
    hook.submit_job(name, "x", job_name=f"{name}-1")
    _wait(lambda: hook.list_jobs(name)[f"{name}-1"].finished)
    oscar.faults.add(ErrorBurst(route=f"/system/logs/{name}/", status=503, count=2))
    assert "the-log-line" in (hook.get_job_logs(name, f"{name}-1") or "")
    assert remaining(oscar) == 0


def test_job_logs_are_retried_after_a_dropped_connection(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\necho the-log-line\n")["name"]
    hook.submit_job(name, "x", job_name=f"{name}-1")
    _wait(lambda: hook.list_jobs(name)[f"{name}-1"].finished)
    oscar.faults.add(Drop(route=f"/system/logs/{name}/", count=1))
    assert "the-log-line" in (hook.get_job_logs(name, f"{name}-1") or "")


def test_job_logs_of_a_job_without_pod_are_none_after_one_request(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\n")["name"]
    oscar.faults.add(StuckJobs(service=name))
    hook.submit_job(name, "x", job_name=f"{name}-1")
    oscar.faults.add(Latency(route=f"/system/logs/{name}/", seconds=0.001, count=100))
    assert hook.get_job_logs(name, f"{name}-1") is None
    assert [f["count"] for f in oscar.faults.active()] == [99]


# invocations -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503])
def test_run_is_retried_while_the_service_is_cold_and_runs_once(
    hook: OscarHook, oscar: OscarLocal, counted: tuple[str, Path], status: Literal[502, 503]
) -> None:
    name, runs = counted
    hook.get_service_token(name)
    oscar.faults.add(ErrorBurst(route=f"/run/{name}", status=status, count=2))
    assert hook.run_service(name, "x").status_code == 200
    assert lines(runs) == 1


def test_run_answered_500_is_not_retried(
    hook: OscarHook, oscar: OscarLocal, counted: tuple[str, Path]
) -> None:
    name, runs = counted
    hook.get_service_token(name)
    oscar.faults.add(ErrorBurst(route=f"/run/{name}", status=500, count=2))
    with pytest.raises(OscarApiError, match="answered 500") as caught:
        hook.run_service(name, "x")
    assert caught.value.status_code == 500
    assert remaining(oscar) == 1
    assert lines(runs) == 0


def test_run_answered_504_is_not_retried(
    hook: OscarHook, oscar: OscarLocal, counted: tuple[str, Path]
) -> None:
    name, _ = counted
    hook.get_service_token(name)
    oscar.faults.add(ErrorBurst(route=f"/run/{name}", status=504, count=2))
    with pytest.raises(OscarApiError, match="answered 504"):
        hook.run_service(name, "x")
    assert remaining(oscar) == 1


def test_run_whose_connection_drops_is_not_sent_again(
    hook: OscarHook, oscar: OscarLocal, counted: tuple[str, Path]
) -> None:
    name, runs = counted
    hook.get_service_token(name)
    assert oscar.cluster is not None
    received = request_counts(oscar.cluster)
    oscar.faults.add(Drop(route=f"/run/{name}", count=1))
    # How the drop surfaces (RemoteProtocolError, or ReadError as a reset under load) is the
    # network's business; that the call reached the cluster once and was not sent again is ours.
    with pytest.raises(OscarApiError, match=rf"POST /run/{name} failed: \w+Error"):
        hook.run_service(name, "x")
    assert received[f"POST /run/{name}"] == 1
    assert lines(runs) == 0  # the drop happened before the script; a re-send would run it
    hook.run_service(name, "x")
    assert received[f"POST /run/{name}"] == 2
    assert lines(runs) == 1


def test_job_submission_answered_429_is_retried_and_creates_one_job(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\n")["name"]
    hook.get_service_token(name)
    oscar.faults.add(ErrorBurst(route=f"/job/{name}", status=429, count=1))
    hook.submit_job(name, "x")
    assert len(hook.list_jobs(name)) == 1


def test_job_submission_answered_500_is_not_retried(
    hook: OscarHook, oscar: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    name = deploy("#!/bin/sh\n")["name"]
    hook.get_service_token(name)
    oscar.faults.add(ErrorBurst(route=f"/job/{name}", status=500, count=2))
    with pytest.raises(OscarApiError, match="answered 500"):
        hook.submit_job(name, "x")
    assert remaining(oscar) == 1
    assert hook.list_jobs(name) == {}


# unreachable cluster -----------------------------------------------------------------------------


def test_unreachable_cluster_is_an_api_error_after_bounded_quick_retries(
    connect: Callable[..., OscarHook],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = connect(host=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(OscarApiError) as caught:
        hook.get_info()
    assert time.monotonic() - started < 1.0
    assert str(caught.value).startswith(
        f"OSCAR cluster http://127.0.0.1:{port}: GET /system/info failed: ConnectError"
    )
    assert caught.value.status_code is None


def test_unreachable_cluster_is_named_by_its_cluster_id(
    connect: Callable[..., OscarHook],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = connect(host=f"http://127.0.0.1:{port}", cluster_id="edge-site", retries=0)
    with pytest.raises(OscarApiError, match=r"^OSCAR cluster edge-site: GET /system/info failed"):
        hook.get_info()


def _wait(probe: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"not met within {timeout} s"
        time.sleep(0.02)
