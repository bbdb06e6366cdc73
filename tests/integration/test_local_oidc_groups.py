"""OIDC users' groups (VOs): who gets in, which VO a service gets, who may invoke it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal


@pytest.fixture
def member(
    release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[str, httpx.Client]]]:
    """``member("vo.a", ...)``: a fresh OIDC user in those groups (none: the default VO)."""
    clients: list[httpx.Client] = []

    def make(*groups: str) -> tuple[str, httpx.Client]:
        who, token = f"u{uuid.uuid4().hex[:9]}", uuid.uuid4().hex
        monkeypatch.setitem(release_oscar.settings.bearer_tokens, token, who)
        if groups:
            monkeypatch.setitem(release_oscar.settings.oidc_groups, who, list(groups))
        client = httpx.Client(
            base_url=release_oscar.endpoint, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return who, client

    yield make
    for client in clients:
        client.close()


def spec(**fields: str) -> dict[str, str]:
    return {"name": f"svc-{uuid.uuid4().hex[:8]}", "image": "x", "script": "true", **fields}


def test_a_service_gets_the_first_cluster_vo_its_creator_is_in(
    release_admin: httpx.Client, member: Callable[..., tuple[str, httpx.Client]]
) -> None:
    _, user = member("vo.a", "vo.b")
    body = spec()
    assert user.post("/system/services", json=body).status_code == 201
    try:
        # the cluster's groups: the default VO, then every group a user was given
        assert release_admin.get(f"/system/services/{body['name']}").json()["vo"] == "vo.a"
    finally:
        release_admin.delete(f"/system/services/{body['name']}")


def test_a_cluster_vo_the_creator_is_not_in_is_refused(
    member: Callable[..., tuple[str, httpx.Client]],
) -> None:
    _, user = member("vo.a")
    refused = user.post("/system/services", json=spec(vo="vo.oscar-local"))
    assert (refused.status_code, refused.text) == (
        400,
        "this user isn't enrrolled on the vo: vo.oscar-local\n",
    )


def test_a_user_in_none_of_the_clusters_groups_is_refused(
    release_oscar: OscarLocal,
    release_admin: httpx.Client,
    member: Callable[..., tuple[str, httpx.Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auth/oidc.go IsAuthorised: /system answers 401; /job 401 (v3 and v4); /run 401 in v3,
    404 in v4 (run.go checks before it selects the service)."""
    _, insider = member()
    body = spec(visibility="public")
    assert insider.post("/system/services", json=body).status_code == 201
    try:
        monkeypatch.setattr(release_oscar.settings, "cluster_groups", ["vo.oscar-local"])
        _, outsider = member("vo.elsewhere")
        response = outsider.get("/system/services")
        assert (response.status_code, response.text) == (401, "")
        job = outsider.post(f"/job/{body['name']}", content=b"{}")
        assert (job.status_code, job.text) == (401, "")
        run = outsider.post(f"/run/{body['name']}", content=b"{}")
        expected = 404 if release_oscar.profile.since("v4.0.0") else 401
        assert (run.status_code, run.text) == (expected, "")
    finally:
        release_admin.delete(f"/system/services/{body['name']}")


def test_before_4_0_an_invoker_must_be_in_the_services_vo(
    release_oscar: OscarLocal,
    release_admin: httpx.Client,
    member: Callable[..., tuple[str, httpx.Client]],
) -> None:
    """run.go/job.go ``UserHasVO(service.VO)`` up to v3.7; from v4.0 visibility decides."""
    _, owner = member("vo.a")
    body = spec(visibility="public")
    assert owner.post("/system/services", json=body).status_code == 201
    try:
        _, other = member("vo.b")
        other.get("/system/config")  # v4.1 jobs need the caller's MinIO user (a direct request)
        job = other.post(f"/job/{body['name']}", content=b"{}")
        if release_oscar.profile.since("v4.0.0"):
            assert job.status_code == 201
        else:
            assert (job.status_code, job.text) == (401, "this user isn't enrrolled on the vo: vo.a")
    finally:
        release_admin.delete(f"/system/services/{body['name']}")
