"""A service's buckets as OSCAR makes them: visibility as MinIO policies, per-user buckets
(``isolation_level: USER``) and the mount, for the users the embedded OSCAR knows."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.supervisor.mount import namespaces
from tests.helpers import stays, wait_until
from tests.integration.test_local_minio import code_of, minio_of, put, read

# EGI-style subjects (FormatUID keeps what precedes the '@'; uid[:10] needs ten characters)
OWNER, OTHER = "0123456789abcdef@egi.eu", "fedcba9876543210@egi.eu"
TOKENS = {"owner-token": OWNER, "other-token": OTHER, "alice-token": "alice"}


@pytest.fixture
def people(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for token, user in TOKENS.items():
        monkeypatch.setitem(oscar.settings.bearer_tokens, token, user)
        headers = {"Authorization": f"Bearer {token}"}
        clients[user] = httpx.Client(base_url=oscar.endpoint, headers=headers)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def service_of(
    people: dict[str, httpx.Client], admin: httpx.Client
) -> Iterator[Callable[..., tuple[httpx.Response, str]]]:
    """``service_of(user, **fields)``: a service with ``<name>/in`` and ``<name>/out``."""
    made: list[str] = []

    def create(user: str, **fields: Any) -> tuple[httpx.Response, str]:
        name = fields.pop("name", None) or f"svc-{uuid.uuid4().hex[:8]}"
        spec = {
            "name": name,
            "image": "local/test",
            "script": "echo ran\n",
            "input": [{"storage_provider": "minio", "path": f"{name}/in"}],
            "output": [{"storage_provider": "minio", "path": f"{name}/out"}],
            **fields,
        }
        made.append(name)
        return people[user].post("/system/services", json=spec), name

    yield create
    for name in made:
        admin.delete(f"/system/services/{name}")


def listed(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {b["bucket_name"]: b for b in client.get("/system/buckets").json() or []}


# visibility ----------------------------------------------------------------------------------


def test_a_private_services_buckets_are_its_owners(
    people: dict[str, httpx.Client], service_of: Callable[..., tuple[httpx.Response, str]]
) -> None:
    response, name = service_of(OWNER)
    assert response.status_code == 201, response.text
    mine = listed(people[OWNER])[name]
    assert (mine["visibility"], mine["owner"], mine["metadata"]["from_service"]) == (
        "private",
        OWNER,
        name,
    )
    assert name not in listed(people[OTHER])
    assert code_of(lambda: put(minio_of(people[OTHER]), name, "in/x.txt")) == "AccessDenied"
    put(minio_of(people[OWNER]), name, "in/x.txt")


def test_a_public_service_opens_its_buckets_and_an_update_closes_them(
    people: dict[str, httpx.Client],
    admin: httpx.Client,
    service_of: Callable[..., tuple[httpx.Response, str]],
) -> None:
    response, name = service_of(OWNER, visibility="public")
    assert response.status_code == 201, response.text
    other = minio_of(people[OTHER])
    put(other, name, "in/from-other.txt")
    assert listed(people[OTHER])[name]["visibility"] == "public"
    spec = people[OWNER].get(f"/system/services/{name}").json()
    spec["visibility"] = "private"
    assert people[OWNER].put("/system/services", json=spec).status_code == 204
    assert code_of(lambda: put(other, name, "in/again.txt")) == "AccessDenied"
    assert listed(people[OWNER])[name]["visibility"] == "private"


def test_a_restricted_service_reaches_its_allowed_users_only(
    people: dict[str, httpx.Client], service_of: Callable[..., tuple[httpx.Response, str]]
) -> None:
    minio_of(people[OTHER])  # a MinIO user exists for the allowed user
    response, name = service_of(OWNER, visibility="restricted", allowed_users=[OTHER])
    assert response.status_code == 201, response.text
    put(minio_of(people[OTHER]), name, "in/allowed.txt")
    assert code_of(lambda: put(minio_of(people["alice"]), name, "in/x.txt")) == "AccessDenied"
    assert listed(people[OWNER])[name]["allowed_users"] == [OTHER]


def test_deleting_a_users_service_removes_its_buckets(
    people: dict[str, httpx.Client], service_of: Callable[..., tuple[httpx.Response, str]]
) -> None:
    response, name = service_of(OWNER)
    assert response.status_code == 201
    assert people[OWNER].delete(f"/system/services/{name}").status_code == 204
    assert name not in listed(people[OWNER])


# isolation_level: USER -----------------------------------------------------------------------


def test_user_isolation_makes_a_bucket_per_allowed_user_with_its_policy(
    people: dict[str, httpx.Client],
    service_of: Callable[..., tuple[httpx.Response, str]],
    admin: httpx.Client,
) -> None:
    """create.go: each allowed user (its MinIO user created when missing) gets
    ``<bucket>-<uid[:10]>`` in ``bucket_list``, in its own policy; the owner joins
    ``allowed_users``. createBuckets hands ``CreateS3PathWithWebhook`` a folder that already
    ends in ``/``: the folder object's path is cleaned by aws-sdk-go, but the notification's
    prefix stays ``in//``, which no object name matches, so uploads there start nothing."""
    response, name = service_of(OWNER, isolation_level="USER", allowed_users=[OTHER])
    assert response.status_code == 201, response.text
    service = admin.get(f"/system/services/{name}").json()
    own_bucket = f"{name}-{OTHER[:10]}"
    assert service["bucket_list"] == [own_bucket]
    assert service["allowed_users"] == [OTHER, OWNER]
    assert service["labels"]["uid"] == OWNER[:10]
    other = minio_of(people[OTHER])
    put(other, own_bucket, "in/mine.txt")
    assert read(other, own_bucket, "in/mine.txt") == b"x"
    assert code_of(lambda: put(minio_of(people[OWNER]), own_bucket, "in/x.txt")) == ("AccessDenied")
    stays(lambda: admin.get(f"/system/logs/{name}").json()["jobs"] == {}, 0.6)
    (config,) = minio_of(people[OTHER]).get_bucket_notification(own_bucket).queue_config_list
    assert config.prefix_filter_rule.value == "in//"


def test_user_isolation_with_a_uid_shorter_than_ten_characters_panics(
    service_of: Callable[..., tuple[httpx.Response, str]], admin: httpx.Client
) -> None:
    """``full_uid[:10]`` on a shorter uid: a Go runtime panic, Gin's Recovery answers 500
    with an empty body before anything is created."""
    response, name = service_of("alice", isolation_level="USER", allowed_users=[OTHER])
    assert (response.status_code, response.content) == (500, b"")
    assert admin.get(f"/system/services/{name}").status_code == 404


# mount ---------------------------------------------------------------------------------------


def test_a_mount_bucket_is_created_when_missing_and_kept_when_the_service_goes(
    admin: httpx.Client, deploy: Callable[..., dict], s3: Minio
) -> None:
    bucket = f"mnt-{uuid.uuid4().hex[:8]}"
    service = deploy(
        "true\n", mount={"storage_provider": "minio.default", "path": f"{bucket}/data"}
    )
    assert [o.object_name for o in s3.list_objects(bucket, recursive=True)] == ["data/"]
    assert admin.delete(f"/system/services/{service['name']}").status_code == 204
    assert s3.bucket_exists(bucket)
    admin.delete(f"/system/buckets/{bucket}")


def test_a_public_bucket_cannot_be_a_mount(
    people: dict[str, httpx.Client], service_of: Callable[..., tuple[httpx.Response, str]]
) -> None:
    bucket = f"pub-{uuid.uuid4().hex[:8]}"
    body = {"bucket_name": bucket, "visibility": "public"}
    assert people[OWNER].post("/system/buckets", json=body).status_code == 201
    mount = {"storage_provider": "minio.default", "path": f"{bucket}/data"}
    response, name = service_of(OWNER, mount=mount)
    assert (response.status_code, response.text) == (
        500,
        f'the bucket "{bucket}" must be private to be used as mount',
    )
    assert people[OWNER].get(f"/system/services/{name}").status_code == 404
    people[OWNER].delete(f"/system/buckets/{bucket}")


def test_the_admin_may_mount_its_own_bucket_from_4_1(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    """An admin bucket has no policy (visibility ""); v4.1.0 takes it as private when its
    ``owner`` tag is ``oscar``; before, it is refused."""
    bucket = f"adm-{uuid.uuid4().hex[:8]}"
    assert release_admin.post("/system/buckets", json={"bucket_name": bucket}).status_code == 201
    name = f"svc-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "image": "local/test", "script": "true\n"}
    spec["mount"] = {"storage_provider": "minio.default", "path": f"{bucket}/data"}
    response = release_admin.post("/system/services", json=spec)
    try:
        if release_oscar.profile.since("v4.1.0"):
            assert response.status_code == 201, response.text
        else:
            assert (response.status_code, response.text) == (
                500,
                f'the bucket "{bucket}" must be private to be used as mount',
            )
    finally:
        release_admin.delete(f"/system/services/{name}")
        release_admin.delete(f"/system/buckets/{bucket}")


def test_mount_options_with_shell_characters_are_refused_from_4_1(
    deploy: Callable[..., dict], admin: httpx.Client
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    mount = {"storage_provider": "minio.default", "path": f"{name}/m", "options": "--x; rm -rf /"}
    spec = {"name": name, "image": "local/test", "script": "true\n", "mount": mount}
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        500,
        "mount options contain invalid characters",
    )


@pytest.mark.skipif(namespaces() is None, reason="this machine gives processes no mount namespace")
def test_a_job_reads_and_writes_its_mount_under_mnt(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], s3: Minio
) -> None:
    bucket = f"mnt-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    s3.put_object(bucket, "models/weights.txt", io.BytesIO(b"w=42"), 4)
    s3.put_object(bucket, "models/stale.txt", io.BytesIO(b"old"), 3)
    script = (
        f"cat /mnt/{bucket}/models/weights.txt\n"
        f"echo written > /mnt/{bucket}/models/new.txt\n"
        f"rm /mnt/{bucket}/models/stale.txt\n"
    )
    service = deploy(
        script,
        log_level="DEBUG",
        mount={"storage_provider": "minio.default", "path": f"{bucket}/models"},
    )
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 201
    ((job, info),) = wait_until(
        lambda: [
            (j, i)
            for j, i in admin.get(f"/system/logs/{service['name']}").json()["jobs"].items()
            if i["status"] in ("Succeeded", "Failed")
        ]
    )
    assert info["status"] == "Succeeded"
    assert "w=42" in admin.get(f"/system/logs/{service['name']}/{job}").text
    keys = sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))
    assert keys == ["models/", "models/new.txt", "models/weights.txt"]  # createBuckets' folder
    assert read(s3, bucket, "models/new.txt") == b"written\n"


def test_a_synchronous_run_has_no_mount(
    oscar: OscarLocal, deploy: Callable[..., dict], s3: Minio
) -> None:
    """Knative pods get no rclone sidecar (mount.go is applied to job pods only)."""
    bucket = f"mnt-{uuid.uuid4().hex[:8]}"
    service = deploy(
        f"ls /mnt/{bucket}/models 2>&1 || echo no-mount\n",
        log_level="CRITICAL",
        mount={"storage_provider": "minio.default", "path": f"{bucket}/models"},
    )
    s3.put_object(bucket, "models/weights.txt", io.BytesIO(b"w"), 1)
    response = httpx.post(
        f"{oscar.endpoint}/run/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert "weights.txt" not in response.text
