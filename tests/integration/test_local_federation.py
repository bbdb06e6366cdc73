"""Federation (v4.1.0) between two embedded OSCARs: replicas made on the member, the
federation API, and a job the origin cannot schedule delegated to the member."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import stays, wait_until

PASSWORD = "shared-admin-password"


@pytest.fixture
def pair() -> Iterator[tuple[OscarLocal, OscarLocal]]:
    """An origin and a member cluster: same admin credentials, one set of OIDC tokens (one
    identity provider), the member's store its own."""
    origin = OscarLocal(oscar_version="4.1")
    member = OscarLocal(oscar_version="4.1")
    for server in (origin, member):
        server.settings.password = PASSWORD
    member.settings.bearer_tokens = origin.settings.bearer_tokens
    member.settings.refresh_tokens = origin.settings.refresh_tokens
    origin.start()
    member.start()
    yield origin, member
    member.stop()
    origin.stop()


def admin(server: OscarLocal) -> httpx.Client:
    return httpx.Client(base_url=server.endpoint, auth=(server.user, server.password))


def federated(origin: OscarLocal, member: OscarLocal, name: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": "local/test",
        "script": "echo ran-here\n",
        "cluster_id": "origin",
        "environment": {"secrets": {"refresh_token": fields.pop("refresh_token", "opaque")}},
        "clusters": {
            "origin": {"endpoint": origin.endpoint, "ssl_verify": False},
            "member": {
                "endpoint": member.endpoint,
                "auth_user": member.user,
                "auth_password": PASSWORD,
                "ssl_verify": False,
            },
        },
        "federation": {
            "topology": "star",
            "delegation": "static",
            "members": [{"type": "oscar", "cluster_id": "member", "service_name": f"{name}-r"}],
        },
    }
    spec.update(fields)
    return spec


def test_federation_routes_exist_from_4_1(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n")["name"]
    response = release_admin.get(f"/system/federation/{name}")
    if release_oscar.profile.since("v4.1.0"):
        assert (response.status_code, response.json()) == (
            200,
            {"topology": "none", "members": None},
        )
    else:
        assert (response.status_code, response.text) == (404, "404 page not found")


def test_a_federated_service_needs_a_refresh_token(admin: httpx.Client) -> None:
    spec = federated(OscarLocal(), OscarLocal(), f"fed-{uuid.uuid4().hex[:6]}")
    spec["environment"] = {}
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        400,
        "refresh_token secret is required for federated services",
    )


def test_creating_a_federated_service_makes_its_replica_on_the_member(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    origin, member = pair
    name = f"fed-{uuid.uuid4().hex[:6]}"
    with admin(origin) as at_origin, admin(member) as at_member:
        response = at_origin.post("/system/services", json=federated(origin, member, name))
        assert response.status_code == 201, response.text
        mine = at_origin.get(f"/system/services/{name}").json()
        replica = at_member.get(f"/system/services/{name}-r").json()
    assert mine["federation"]["group_id"] == name  # ApplyFederation's default
    assert replica["annotations"] == {
        "oscar.grycap/federation-worker": "true",
        "oscar.grycap/origin-cluster": "origin",
        "oscar.grycap/origin-service": name,
    }
    assert replica["token"] == mine["token"]  # a worker keeps its origin's token
    assert replica["federation"] == {"group_id": name, "topology": "star", "delegation": "static"}
    assert replica["clusters"]["member"]["auth_password"] == ""  # stripClusterCredentials
    # the worker keeps the origin's MinIO as its default provider
    assert replica["storage_providers"]["minio"]["default"]["endpoint"] == origin.s3.endpoint


def test_a_member_that_refuses_the_caller_fails_the_create(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    origin, member = pair
    member.settings.password = "another-password"
    name = f"fed-{uuid.uuid4().hex[:6]}"
    with admin(origin) as at_origin:
        response = at_origin.post("/system/services", json=federated(origin, member, name))
        assert at_origin.get(f"/system/services/{name}").status_code == 404
    assert (response.status_code, response.text) == (
        401,
        f'federation auth failed: [auth rejected by cluster "{member.endpoint}" (status 401)]',
    )


def test_a_failed_expansion_is_rolled_back(pair: tuple[OscarLocal, OscarLocal]) -> None:
    origin, member = pair
    name = f"fed-{uuid.uuid4().hex[:6]}"
    spec = federated(origin, member, name)
    spec["federation"]["members"][0]["service_name"] = "Not_A_Name"  # the member refuses it
    with admin(origin) as at_origin:
        response = at_origin.post("/system/services", json=spec)
        assert at_origin.get(f"/system/services/{name}").status_code == 404
    assert response.status_code == 500
    assert response.text.startswith("Federation failed; rollback completed: [cluster responded")


def test_the_federation_api_reads_adds_updates_and_removes_members(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    origin, member = pair
    name = f"fed-{uuid.uuid4().hex[:6]}"
    first = {"type": "oscar", "cluster_id": "member", "service_name": f"{name}-r"}
    second = {"type": "oscar", "cluster_id": "member", "service_name": f"{name}-s"}
    with admin(origin) as at_origin:
        assert (
            at_origin.post("/system/services", json=federated(origin, member, name)).status_code
            == 201
        )
        read = at_origin.get(f"/system/federation/{name}").json()
        assert read["topology"] == "star"
        assert [m["service_name"] for m in read["members"]] == [f"{name}-r"]
        added = at_origin.post(f"/system/federation/{name}", json={"members": [second]})
        # the replica of a new member does not exist yet: the PUT propagation fails there
        assert (added.status_code, added.text) == (
            200,
            "Updated with federation warnings: [cluster responded with status 404]",
        )
        moved = {**first, "priority": 5}
        updated = at_origin.put(
            f"/system/federation/{name}", json={"members": [first], "update": [moved]}
        )
        assert updated.status_code == 200
        removed = at_origin.request(
            "DELETE", f"/system/federation/{name}", json={"members": [second, first]}
        )
        assert (removed.status_code, removed.json()) == (200, {"topology": "star", "members": None})
        assert at_origin.get("/system/federation/ghost").status_code == 404
        garbled = at_origin.post(f"/system/federation/{name}", content=b"{")
        assert garbled.status_code == 400 and garbled.text.startswith("Invalid payload: ")


def _refresh_token(issuer: str, subject: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": issuer, "azp": "oscar-local", "scope": "openid", "sub": subject}
    return f"{part({'alg': 'none'})}.{part(claims)}."


def test_a_job_the_origin_cannot_schedule_is_delegated_to_its_member(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    """resourcemanager: no node of the origin can take the job, so it goes to the member
    (its refresh token exchanged at the issuer for an access token); the worker's job reads
    its origin's MinIO keys from the origin's /system/config."""
    origin, member = pair
    origin.settings.resource_manager = True
    origin.settings.total_cpu = 0.1  # the service asks for 0.2
    refresh = _refresh_token(f"{origin.endpoint}/local/oidc", "fed-user")
    origin.settings.refresh_tokens[refresh] = "fed-user"
    name = f"fed-{uuid.uuid4().hex[:6]}"
    spec = federated(origin, member, name, refresh_token=refresh, visibility="public")
    with admin(origin) as at_origin, admin(member) as at_member:
        assert at_origin.post("/system/services", json=spec).status_code == 201
        token = at_origin.get(f"/system/services/{name}").json()["token"]
        # the delegated user has called the member before (job.go wants its MinIO user)
        exchanged = httpx.post(
            f"{origin.endpoint}/local/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh},
        ).json()["access_token"]
        httpx.get(
            f"{member.endpoint}/system/config", headers={"Authorization": f"Bearer {exchanged}"}
        )
        response = httpx.post(
            f"{origin.endpoint}/job/{name}",
            content=b"aGVsbG8=",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201
        jobs = wait_until(lambda: at_member.get(f"/system/logs/{name}-r").json()["jobs"])
        ((job, _),) = jobs.items()
        assert job.startswith(f"{name}-")  # the origin's job name (X-Delegated-Job-ID)
        stays(lambda: at_origin.get(f"/system/logs/{name}").json()["jobs"] == {}, 0.3)

        def log() -> str | None:
            info = at_member.get(f"/system/logs/{name}-r").json()["jobs"][job]
            if info["status"] not in ("Succeeded", "Failed"):
                return None
            return at_member.get(f"/system/logs/{name}-r/{job}").text

        text = wait_until(log)
    assert "Using MinIO credentials for user: 'fed-user'" in text  # the origin's user keys


def test_without_the_resource_manager_nothing_is_delegated(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    origin, member = pair
    origin.settings.total_cpu = 0.1
    name = f"fed-{uuid.uuid4().hex[:6]}"
    with admin(origin) as at_origin, admin(member) as at_member:
        assert (
            at_origin.post("/system/services", json=federated(origin, member, name)).status_code
            == 201
        )
        token = at_origin.get(f"/system/services/{name}").json()["token"]
        response = httpx.post(
            f"{origin.endpoint}/job/{name}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201
        wait_until(lambda: at_origin.get(f"/system/logs/{name}").json()["jobs"])
        assert at_member.get(f"/system/logs/{name}-r").json()["jobs"] == {}


def test_delegation_with_a_refresh_token_that_is_no_jwt_panics(
    pair: tuple[OscarLocal, OscarLocal],
) -> None:
    """delegate.go ``exchangeRefreshToken`` reads claims of a token it could not parse."""
    origin, member = pair
    origin.settings.resource_manager = True
    origin.settings.total_cpu = 0.1
    name = f"fed-{uuid.uuid4().hex[:6]}"
    with admin(origin) as at_origin:
        assert (
            at_origin.post("/system/services", json=federated(origin, member, name)).status_code
            == 201
        )
        token = at_origin.get(f"/system/services/{name}").json()["token"]
    response = httpx.post(
        f"{origin.endpoint}/job/{name}", headers={"Authorization": f"Bearer {token}"}
    )
    assert (response.status_code, response.content) == (500, b"")
