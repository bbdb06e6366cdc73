"""Managed volumes (v4.0) and users' quotas (v3.7): ``/system/volumes``, a service's ``volume``,
``/system/quotas/user``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.supervisor.mount import namespaces
from tests.helpers import wait_until
from tests.integration.test_local_releases import jobs, pick, submit


def subject() -> str:
    """A fresh OIDC subject: its namespace, ClusterQueue and limits are its own."""
    return f"u{uuid.uuid4().hex[:9]}"


@pytest.fixture
def user_of(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def client(who: str) -> httpx.Client:
        token = f"{who}-{uuid.uuid4().hex}"
        monkeypatch.setitem(oscar.settings.bearer_tokens, token, who)
        made = httpx.Client(base_url=oscar.endpoint, headers={"Authorization": f"Bearer {token}"})
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()


@pytest.fixture
def release_user(
    release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def client(who: str) -> httpx.Client:
        token = f"{who}-{uuid.uuid4().hex}"
        monkeypatch.setitem(release_oscar.settings.bearer_tokens, token, who)
        made = httpx.Client(
            base_url=release_oscar.endpoint, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()


def volume_name() -> str:
    return f"vol-{uuid.uuid4().hex[:8]}"


# /system/volumes ------------------------------------------------------------------------------


def test_the_admin_creates_reads_lists_and_deletes_a_volume(admin: httpx.Client) -> None:
    name = volume_name()
    created = admin.post("/system/volumes", json={"name": name, "size": "1536Mi"})
    assert created.status_code == 201, created.text
    assert created.text == (
        f'{{"name":"{name}","namespace":"oscar-svc","pvc_name":"{name}","size":"1536Mi",'
        '"owner_user":"cluster_admin","creation_mode":"api","status":{"phase":"ready"}}'
    )
    assert admin.get(f"/system/volumes/{name}").json() == created.json()
    assert name in [v["name"] for v in admin.get("/system/volumes").json()]
    again = admin.post("/system/volumes", json={"name": name, "size": "1Gi"})
    assert (again.status_code, again.text) == (409, "volume already exists in caller namespace")
    assert admin.delete(f"/system/volumes/{name}").status_code == 204
    gone = admin.get(f"/system/volumes/{name}")
    assert (gone.status_code, gone.text) == (404, "")
    assert admin.delete(f"/system/volumes/{name}").status_code == 204  # NotFound is no error


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (
            {"name": "v"},
            "The volume specification is not valid: Key: 'ManagedVolumeCreateRequest.Size' "
            "Error:Field validation for 'Size' failed on the 'required' tag",
        ),
        (
            {"name": "Not_DNS", "size": "1Gi"},
            "volume.name must satisfy Kubernetes DNS-1123 naming rules",
        ),
        ({"name": "v", "size": "0"}, "volume.size must be a valid positive quantity"),
        ({"name": "v", "size": "lots"}, "volume.size must be a valid positive quantity"),
    ],
)
def test_a_volume_request_is_validated(
    admin: httpx.Client, body: dict[str, str], answer: str
) -> None:
    response = admin.post("/system/volumes", json=body)
    assert (response.status_code, response.text) == (400, answer)


def test_an_oidc_users_volumes_live_in_their_namespace_under_their_quota(
    admin: httpx.Client, user_of: Callable[[str], httpx.Client]
) -> None:
    who = subject()
    user = user_of(who)
    name = volume_name()
    created = user.post("/system/volumes", json={"name": name, "size": "1Gi"}).json()
    assert created["namespace"] == f"oscar-svc-{who[:8]}"
    assert created["owner_user"] == who
    assert admin.get(f"/system/volumes/{name}").status_code == 404  # not the admin's namespace
    quota = user.get("/system/quotas/user").json()["volumes"]
    # 7Gi and 5 volumes, less the shared 2Gi oscar-pvc the user's namespace binds
    assert quota == {
        "disk": {"max": "5Gi", "used": "1Gi"},
        "volumes": {"max": "4", "used": "1"},
        "max_disk_per_volume": "5Gi",
        "min_disk_per_volume": "200Mi",
    }
    big = user.post("/system/volumes", json={"name": volume_name(), "size": "6Gi"})
    assert (big.status_code, big.text) == (
        400,
        "not enough volume disk quota: requested 6Gi, available 4Gi",
    )
    small_name = volume_name()
    small = user.post("/system/volumes", json={"name": small_name, "size": "100Mi"})
    assert (small.status_code, small.text) == (
        500,
        f'persistentvolumeclaims "{small_name}" is forbidden: minimum storage usage per '
        "PersistentVolumeClaim is 200Mi, but request is 100Mi",
    )


def test_the_volume_count_quota(
    admin: httpx.Client, user_of: Callable[[str], httpx.Client]
) -> None:
    who = subject()
    user = user_of(who)
    user.get("/system/config")  # the first request makes the user's namespace and queue
    update = {"volumes": {"volumes": "1"}}
    assert admin.put(f"/system/quotas/user/{who}", json=update).status_code == 200
    assert (
        user.post("/system/volumes", json={"name": volume_name(), "size": "1Gi"}).status_code == 201
    )
    refused = user.post("/system/volumes", json={"name": volume_name(), "size": "1Gi"})
    assert (refused.status_code, refused.text) == (
        400,
        "not enough volume count quota: requested 1, available 0",
    )


def test_volume_routes_arrive_in_4_0(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    response = release_admin.get("/system/volumes")
    if release_oscar.profile.since("v4.0.0"):
        assert response.status_code == 200
    else:
        assert (response.status_code, response.text) == (404, "404 page not found")


# a service's volume ----------------------------------------------------------------------


def service_spec(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "local/test", "script": "true\n", **fields}


def test_a_service_creates_its_volume_and_deletes_it_with_itself(admin: httpx.Client) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    spec = service_spec(name, volume={"size": "1Gi", "mount_path": "/mnt/data"})
    assert admin.post("/system/services", json=spec).status_code == 201
    service = admin.get(f"/system/services/{name}").json()
    assert service["volume"] == {
        "name": name,
        "size": "1Gi",
        "mount_path": "/mnt/data",
        "lifecycle_policy": "delete",
    }
    assert service["volume_status"] == {"enabled": True, "name": name, "phase": "in_use"}
    volume = admin.get(f"/system/volumes/{name}").json()
    assert (volume["creation_mode"], volume["created_by_service"], volume["lifecycle_policy"]) == (
        "service",
        name,
        "delete",
    )
    assert volume["attachments"] == [{"service_name": name, "mount_path": "/mnt/data"}]
    assert volume["status"] == {"phase": "in_use", "attachment_count": 1}
    refused = admin.delete(f"/system/volumes/{name}")
    assert (refused.status_code, refused.text) == (
        400,
        "managed volume is still attached to one or more services",
    )
    changed = {**spec, "volume": {"size": "2Gi", "mount_path": "/mnt/data"}}
    response = admin.put("/system/services", json=changed)
    assert (response.status_code, response.text) == (
        400,
        "volume updates are not supported after service creation",
    )
    assert admin.delete(f"/system/services/{name}").status_code == 204
    assert admin.get(f"/system/volumes/{name}").status_code == 404


def test_a_retained_volume_outlives_its_service_and_another_service_attaches_it(
    admin: httpx.Client,
) -> None:
    name, volume = f"svc-{uuid.uuid4().hex[:8]}", volume_name()
    keep = {"name": volume, "size": "1Gi", "mount_path": "/data", "lifecycle_policy": "retain"}
    assert admin.post("/system/services", json=service_spec(name, volume=keep)).status_code == 201
    assert admin.delete(f"/system/services/{name}").status_code == 204
    assert admin.get(f"/system/volumes/{volume}").json()["status"] == {"phase": "ready"}
    other = f"svc-{uuid.uuid4().hex[:8]}"
    attach = {"name": volume, "mount_path": "/work"}
    assert (
        admin.post("/system/services", json=service_spec(other, volume=attach)).status_code == 201
    )
    try:
        shown = admin.get(f"/system/volumes/{volume}").json()
        assert shown["attachments"] == [{"service_name": other, "mount_path": "/work"}]
    finally:
        admin.delete(f"/system/services/{other}")
    assert admin.get(f"/system/volumes/{volume}").status_code == 200  # attached, not created
    admin.delete(f"/system/volumes/{volume}")


@pytest.mark.parametrize(
    ("volume", "answer"),
    [
        ({"size": "1Gi"}, "volume.mount_path is required"),
        ({"mount_path": "/data"}, "volume.name is required when volume.size is not set"),
        ({"size": "1Gi", "mount_path": "data"}, "volume.mount_path must be an absolute path"),
        (
            {"size": "1Gi", "mount_path": "/oscar/bin/x"},
            "volume.mount_path cannot overlap OSCAR reserved paths",
        ),
        (
            {"size": "1Gi", "mount_path": "/d", "lifecycle_policy": "keep"},
            'volume.lifecycle_policy must be either "delete" or "retain"',
        ),
        (
            {"name": "v", "mount_path": "/d", "lifecycle_policy": "retain"},
            "volume.lifecycle_policy is only valid when volume.size is set",
        ),
    ],
)
def test_a_services_volume_is_validated(
    admin: httpx.Client, volume: dict[str, str], answer: str
) -> None:
    spec = service_spec(f"svc-{uuid.uuid4().hex[:8]}", volume=volume)
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        400,
        f"The service specification is not valid: {answer}",
    )


def test_a_service_naming_a_missing_volume_is_refused(admin: httpx.Client) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    spec = service_spec(name, volume={"name": volume_name(), "mount_path": "/data"})
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        400,
        "Referenced volume does not exist in the caller namespace",
    )
    assert admin.get(f"/system/services/{name}").status_code == 404


def test_an_oidc_users_service_volume_meets_kubernetes_limits(
    admin: httpx.Client, user_of: Callable[[str], httpx.Client]
) -> None:
    user = user_of(subject())
    name = f"svc-{uuid.uuid4().hex[:8]}"
    spec = service_spec(name, volume={"size": "6Gi", "mount_path": "/data"})
    response = user.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        500,
        f'Error creating the service: persistentvolumeclaims "{name}" is forbidden: maximum '
        "storage usage per PersistentVolumeClaim is 5Gi, but request is 6Gi",
    )
    assert admin.get(f"/system/services/{name}").status_code == 404


@pytest.mark.skipif(namespaces() is None, reason="no user namespaces on this machine")
def test_jobs_share_what_they_write_to_the_volume(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    script = 'n=$(cat /mnt/data/count 2>/dev/null || echo 0)\necho "$n"\n'
    script += "echo $((n + 1)) > /mnt/data/count\n"
    service = deploy(script, volume={"size": "1Gi", "mount_path": "/mnt/data"})

    def succeeded() -> int:
        return sum(j["status"] == "Succeeded" for j in jobs(admin, service["name"]).values())

    for done in (1, 2):
        assert submit(oscar, service).status_code == 201
        wait_until(lambda done=done: succeeded() == done)
    logs = [
        admin.get(f"/system/logs/{service['name']}/{job}").text
        for job in jobs(admin, service["name"])
    ]
    assert sorted(line for log in logs for line in log.splitlines() if line in ("0", "1")) == [
        "0",
        "1",
    ]


# /system/quotas ---------------------------------------------------------------------------


def test_quotas_of_a_user_at_each_release(
    release_oscar: OscarLocal,
    release_admin: httpx.Client,
    release_user: Callable[[str], httpx.Client],
) -> None:
    who = subject()
    user = release_user(who)
    # v3.7 makes the ClusterQueue with the user's first service; v4 at their first request
    name = f"svc-{uuid.uuid4().hex[:8]}"
    assert user.post("/system/services", json=service_spec(name)).status_code == 201
    try:
        response = user.get("/system/quotas/user")
        if not release_oscar.profile.since("v3.7.0"):
            assert (response.status_code, response.text) == (404, "404 page not found")
            return
        assert response.status_code == 200, response.text
        queue = f"oscar-cq-{who}"
        expected = pick(
            release_oscar,
            v3_6=None,
            v3_7={
                "user_id": who,
                "cluster_queue": queue,
                "resources": {
                    "cpu": {"max": "2", "used": "0"},
                    "memory": {"max": "2Gi", "used": "0"},
                },
            },
            v4_0={
                "user_id": who,
                "cluster_queue": queue,
                "resources": {
                    "cpu": {"max": 2000, "used": 0},
                    "memory": {"max": 2147483648, "used": 0},
                },
                "volumes": {
                    "disk": {"max": "5Gi", "used": "0"},
                    "volumes": {"max": "4", "used": "0"},
                    "max_disk_per_volume": "5Gi",
                    "min_disk_per_volume": "200Mi",
                },
            },
            v4_1={
                "user_id": who,
                "cluster_queue": queue,
                "resources": {
                    "cpu": {"max": 2000, "used": 0},
                    "ephemeral-storage": {"max": 1073741824, "used": 0},
                    "gpu": {"max": 0, "used": 0},
                    "memory": {"max": 2147483648, "used": 0},
                },
                "volumes": {
                    "disk": {"max": "5Gi", "used": "0"},
                    "volumes": {"max": "4", "used": "0"},
                    "max_disk_per_volume": "5Gi",
                    "min_disk_per_volume": "200Mi",
                },
                "minio": {
                    "buckets": {"max": 0, "used": 0},
                    "storage_per_bucket": {"max": "0"},
                    "storage_total": {"used": "0"},
                },
            },
        )
        assert response.json() == expected
        assert release_admin.get(f"/system/quotas/user/{who}").json() == expected
    finally:
        release_admin.delete(f"/system/services/{name}")


def test_quota_refusals(admin: httpx.Client, user_of: Callable[[str], httpx.Client]) -> None:
    who = subject()
    user = user_of(who)
    own = admin.get("/system/quotas/user")
    assert (own.status_code, own.text) == (
        401,
        "missing user identificator: missing user identificator",
    )
    for response in (
        user.get(f"/system/quotas/user/{who}"),
        user.put(f"/system/quotas/user/{who}", json={"cpu": "1"}),
    ):
        assert (response.status_code, response.text) == (403, "forbidden")
    empty = admin.put(f"/system/quotas/user/{who}", json={"gpu": "1"})
    assert (empty.status_code, empty.text) == (
        400,
        "cpu, memory, ephemeral_storage, volumes or minio must be provided",
    )
    wrong = admin.put(f"/system/quotas/user/{who}", json={"cpu": 2})
    assert (wrong.status_code, wrong.text) == (
        400,
        "invalid payload: json: cannot unmarshal number into Go struct field "
        "QuotaUpdateRequest.cpu of type string",
    )
    user.get("/system/config")  # the ClusterQueue is made at the user's first request
    bad = admin.put(f"/system/quotas/user/{who}", json={"cpu": "two"})
    assert (bad.status_code, bad.text) == (
        500,
        "invalid cpu quantity: quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    )
    stranger = subject()
    missing = admin.get(f"/system/quotas/user/{stranger}")
    assert (missing.status_code, missing.text) == (
        500,
        f"getting ClusterQueue oscar-cq-{stranger}: clusterqueues.kueue.x-k8s.io "
        f'"oscar-cq-{stranger}" not found',
    )


def test_an_admin_changes_a_users_quotas(
    admin: httpx.Client, user_of: Callable[[str], httpx.Client]
) -> None:
    who = subject()
    user_of(who).get("/system/config")
    update = {
        "cpu": "1500m",
        "memory": "3Gi",
        "volumes": {"disk": "3Gi", "max_disk_per_volume": "1Gi"},
        "minio": {"buckets": "3", "storage_per_bucket": "1Gi"},
    }
    response = admin.put(f"/system/quotas/user/{who}", json=update)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["resources"]["cpu"]["max"] == 1500
    assert answer["resources"]["memory"]["max"] == 3 * 1024**3
    assert answer["volumes"]["disk"] == {"max": "3Gi", "used": "0"}
    assert answer["volumes"]["max_disk_per_volume"] == "1Gi"
    assert answer["minio"]["buckets"]["max"] == 3
    assert answer["minio"]["storage_per_bucket"] == {"max": "1Gi"}
    bad = admin.put(f"/system/quotas/user/{who}", json={"minio": {"buckets": "-1"}})
    assert (bad.status_code, bad.text) == (
        500,
        "invalid minio.buckets quantity: must be greater than or equal to zero",
    )


def test_kueue_admits_against_the_changed_quota(
    oscar: OscarLocal,
    admin: httpx.Client,
    user_of: Callable[[str], httpx.Client],
    tmp_path: Any,
) -> None:
    """A ClusterQueue whose CPU quota is below a job's request never admits it."""
    who = subject()
    user = user_of(who)
    name = f"svc-{uuid.uuid4().hex[:8]}"
    assert user.post("/system/services", json=service_spec(name, cpu="0.5")).status_code == 201
    try:
        assert admin.put(f"/system/quotas/user/{who}", json={"cpu": "250m"}).status_code == 200
        service = admin.get(f"/system/services/{name}").json()
        assert submit(oscar, service).status_code == 201
        wait_until(lambda: [j["status"] for j in jobs(admin, name).values()] == ["Suspended"])
        assert admin.put(f"/system/quotas/user/{who}", json={"cpu": "1"}).status_code == 200
        wait_until(lambda: [j["status"] for j in jobs(admin, name).values()] == ["Succeeded"])
    finally:
        admin.delete(f"/system/services/{name}")
