"""Fault injection on the embedded OSCAR: from Python (``oscar.faults``) and ``/local/faults``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.faults import Drop, ErrorBurst, Latency, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until


def submit(oscar: OscarLocal, service: dict[str, Any], job: str, token: str = "") -> int:
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={
            "Authorization": f"Bearer {token or service['token']}",
            "X-Delegated-Job-ID": job,
        },
    )
    return response.status_code


def status_of(admin: httpx.Client, service: str, job: str) -> str | None:
    info = admin.get(f"/system/logs/{service}").json()["jobs"].get(job)
    return info["status"] if info else None


# Python API ------------------------------------------------------------------------------


def test_error_burst_fails_the_next_requests_then_wears_off(
    oscar: OscarLocal, admin: httpx.Client
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=503, count=2))
    statuses = [admin.get("/system/info").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_error_burst_only_hits_its_route(oscar: OscarLocal, admin: httpx.Client) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=500))
    assert admin.get("/system/config").status_code == 200
    assert admin.get("/system/info").status_code == 500


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_burst_answers_its_status_as_plain_text(
    oscar: OscarLocal, admin: httpx.Client, status: int
) -> None:
    oscar.faults.add(ErrorBurst(route="/system/services", status=status))
    response = admin.get("/system/services")
    assert response.status_code == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_429_burst_carries_retry_after(oscar: OscarLocal, admin: httpx.Client) -> None:
    oscar.faults.add(ErrorBurst(route="/system/status", status=429))
    response = admin.get("/system/status")
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


def test_error_burst_on_run_hits_invocations(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo hi\n")
    oscar.faults.add(ErrorBurst(route=f"/run/{service['name']}", status=502))
    response = httpx.post(
        f"{oscar.endpoint}/run/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 502


def test_latency_delays_matching_requests_once(oscar: OscarLocal, admin: httpx.Client) -> None:
    oscar.faults.add(Latency(route="/health", seconds=0.4))
    started = time.monotonic()
    assert admin.get("/health").status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    admin.get("/health")
    assert time.monotonic() - started < 0.4


def test_dropped_connection_raises_a_transport_error(
    oscar: OscarLocal, admin: httpx.Client
) -> None:
    oscar.faults.add(Drop(route="/system/info"))
    with pytest.raises(httpx.TransportError):
        admin.get("/system/info")
    assert admin.get("/system/info").status_code == 200


def test_never_ending_fault_stays_until_cleared(oscar: OscarLocal, admin: httpx.Client) -> None:
    oscar.faults.add(ErrorBurst(route="/system/info", status=503, count=-1))
    assert [admin.get("/system/info").status_code for _ in range(4)] == [503] * 4
    oscar.faults.clear()
    assert admin.get("/system/info").status_code == 200


def test_stuck_jobs_stay_pending(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"]))
    stuck, free = f"{service['name']}-stuck", f"{service['name']}-free"
    submit(oscar, service, stuck)
    submit(oscar, service, free)
    wait_until(lambda: status_of(admin, service["name"], free) == "Succeeded")
    assert status_of(admin, service["name"], stuck) == "Pending"


# /local/faults ---------------------------------------------------------------------------


def test_faults_route_without_credentials_answers_401(oscar: OscarLocal) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = httpx.request(method, f"{oscar.endpoint}/local/faults", json={"kind": "drop"})
        assert response.status_code == 401, method
    assert oscar.faults.active() == []


def test_faults_route_is_for_the_admin_only(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OIDC user must not rotate other users' tokens or take the cluster down."""
    monkeypatch.setitem(oscar.settings.bearer_tokens, "mallory-token", "mallory")
    headers = {"Authorization": "Bearer mallory-token"}
    fault = {"kind": "error", "route": "/", "status": 503, "count": -1}
    for method in ("GET", "POST", "DELETE"):
        response = httpx.request(
            method, f"{oscar.endpoint}/local/faults", json=fault, headers=headers
        )
        assert (response.status_code, response.text) == (
            403,
            "fault injection is for the admin only",
        ), method
    assert oscar.faults.active() == []


def test_faults_route_adds_an_error_burst(oscar: OscarLocal, admin: httpx.Client) -> None:
    response = admin.post(
        "/local/faults", json={"kind": "error", "route": "/system/config", "status": 500}
    )
    assert (response.status_code, response.content) == (201, b"")
    assert admin.get("/system/config").status_code == 500
    assert admin.get("/system/config").status_code == 200


def test_faults_route_lists_and_clears_active_faults(
    oscar: OscarLocal, admin: httpx.Client
) -> None:
    admin.post("/local/faults", json={"kind": "latency", "route": "/x", "seconds": 1, "count": 3})
    listed = admin.get("/local/faults").json()
    assert listed == [{"count": 3, "kind": "latency", "route": "/x", "seconds": 1.0}]
    assert admin.delete("/local/faults").status_code == 204
    assert admin.get("/local/faults").json() == []


def test_faults_route_refuses_an_unknown_kind_with_400(admin: httpx.Client) -> None:
    response = admin.post("/local/faults", json={"kind": "meteor"})
    assert response.status_code == 400
    assert response.text.startswith("invalid fault:")


def test_faults_route_refuses_an_unsupported_status_with_400(admin: httpx.Client) -> None:
    response = admin.post("/local/faults", json={"kind": "error", "status": 418})
    assert response.status_code == 400


def test_faults_route_refuses_a_count_of_zero_with_400(
    oscar: OscarLocal, admin: httpx.Client
) -> None:
    response = admin.post("/local/faults", json={"kind": "error", "status": 500, "count": 0})
    assert response.status_code == 400
    assert oscar.faults.active() == []


def test_faults_route_is_not_itself_subject_to_faults(
    oscar: OscarLocal, admin: httpx.Client
) -> None:
    oscar.faults.add(ErrorBurst(route="/", status=503, count=-1))
    assert admin.delete("/local/faults").status_code == 204
    assert admin.get("/system/info").status_code == 200


def test_failing_jobs_fault_from_the_route_fails_the_next_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo fine\n")
    admin.post("/local/faults", json={"kind": "fail", "service": service["name"]})
    failed, fine = f"{service['name']}-failed", f"{service['name']}-fine"
    submit(oscar, service, failed)
    submit(oscar, service, fine)
    wait_until(lambda: status_of(admin, service["name"], fine) == "Succeeded")
    wait_until(lambda: status_of(admin, service["name"], failed) == "Failed")


def test_suspended_fault_from_the_route_leaves_the_job_suspended(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    admin.post(
        "/local/faults", json={"kind": "stuck", "service": service["name"], "status": "Suspended"}
    )
    job = f"{service['name']}-held"
    submit(oscar, service, job)
    assert status_of(admin, service["name"], job) == "Suspended"


def test_token_rotation_makes_the_old_token_401(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    response = admin.post(
        "/local/faults", json={"kind": "rotate_token", "service": service["name"]}
    )
    assert response.status_code == 201
    new_token = admin.get(f"/system/services/{service['name']}").json()["token"]
    assert new_token != service["token"]
    assert submit(oscar, service, f"{service['name']}-old") == 401
    assert submit(oscar, service, f"{service['name']}-new", token=new_token) == 201


def test_token_rotation_of_an_unknown_service_answers_404(admin: httpx.Client) -> None:
    response = admin.post("/local/faults", json={"kind": "rotate_token", "service": "nobody"})
    assert response.status_code == 404
