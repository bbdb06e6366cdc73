"""Stop, start and restart of an exposed service (v4.1.0 ``lifecycle.go``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal

OWNER, OTHER = "0123456789abcdef@egi.eu", "fedcba9876543210@egi.eu"
EXPOSE = {"api_port": [8080], "min_scale": 2, "max_scale": 3}


@pytest.fixture
def bearer(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for user in (OWNER, OTHER):
        token = f"token-{user[:4]}"
        monkeypatch.setitem(oscar.settings.bearer_tokens, token, user)
        headers = {"Authorization": f"Bearer {token}"}
        clients[user] = httpx.Client(base_url=oscar.endpoint, headers=headers)
    yield clients
    for client in clients.values():
        client.close()


def test_stop_start_restart_an_exposed_service(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n", expose=EXPOSE)["name"]
    stopped = admin.post(f"/system/services/{name}/stop")
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert (body["state"], body["reason"], body["resource_kind"]) == (
        "stopped",
        "Deployment is stopped.",
        "exposed_service",
    )
    assert body["active_instances"] == 0
    listed = admin.get(f"/system/services/{name}/deployment").json()
    assert listed["state"] == "stopped"

    started = admin.post(f"/system/services/{name}/start").json()
    assert (started["state"], started["active_instances"]) == ("ready", 2)
    restarted = admin.post(f"/system/services/{name}/restart")
    assert (restarted.status_code, restarted.json()["state"]) == (200, "ready")


def test_start_without_a_previous_count_uses_min_scale(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n", expose={"api_port": [8080]})["name"]
    assert admin.post(f"/system/services/{name}/start").json()["active_instances"] == 1


def test_lifecycle_refusals(
    admin: httpx.Client, deploy: Callable[..., dict], bearer: dict[str, httpx.Client]
) -> None:
    plain = deploy("true\n")["name"]
    response = admin.post(f"/system/services/{plain}/stop")
    assert (response.status_code, response.text) == (400, f'service "{plain}" is not exposed')
    assert admin.post("/system/services/no-such-service/stop").status_code == 404
    assert admin.post("/system/services/bad!name/stop").text == "invalid serviceName"

    created = bearer[OWNER].post(
        "/system/services",
        json={"name": "exposed-" + plain[4:], "image": "x", "script": "true", "expose": EXPOSE},
    )
    assert created.status_code == 201, created.text
    name = "exposed-" + plain[4:]
    try:
        denied = bearer[OTHER].post(f"/system/services/{name}/stop")
        assert (denied.status_code, denied.text) == (
            403,
            f"User {OTHER} doesn't have permission to manage this service",
        )
        assert bearer[OWNER].post(f"/system/services/{name}/stop").json()["state"] == "stopped"
    finally:
        admin.delete(f"/system/services/{name}")


def test_lifecycle_routes_arrive_in_4_1(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    expose = EXPOSE if release_oscar.profile.since("v4.1.0") else {"api_port": 8080}
    name = release_deploy("true\n", expose=expose)["name"]
    response = release_admin.post(f"/system/services/{name}/stop")
    if release_oscar.profile.since("v4.1.0"):
        assert response.status_code == 200
    else:
        assert (response.status_code, response.text) == (404, "404 page not found")
