"""OscarHook's buckets against the embedded OSCAR: create, list, read, visibility, delete and
presigned URLs, as OIDC users and as the admin; what each user's MinIO keys may do afterwards
is checked on the S3 endpoint itself."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.release import OscarRelease, remember
from airflow_provider_oscar.local.server import OscarLocal
from tests.integration.system_hooks import admin_hook, counted, user_hook


@pytest.fixture
def users(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, OscarHook]]:
    hooks = {name: user_hook(oscar, monkeypatch, name) for name in ("alice", "bob", "carol")}
    yield hooks
    for hook in hooks.values():
        hook.close()


@pytest.fixture
def made(oscar: OscarLocal, unique_name: Callable[[str], str]) -> Iterator[Callable[[], str]]:
    """Fresh bucket names; whatever exists of them is deleted after the test."""
    names: list[str] = []

    def name() -> str:
        names.append(unique_name("hb"))
        return names[-1]

    yield name
    with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as admin:
        for bucket in names:
            admin.delete(f"/system/buckets/{bucket}")


def minio_of(hook: OscarHook) -> Minio:
    """A MinIO client with the MinIO keys ``/system/config`` gives the hook's user."""
    provider = hook.get_config()["minio_provider"]
    endpoint = urlsplit(provider["endpoint"])
    return Minio(
        endpoint.netloc,
        access_key=provider["access_key"],
        secret_key=provider["secret_key"],
        secure=False,
        region=provider["region"],
    )


def put(client: Minio, bucket: str, key: str, data: bytes = b"x") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def refused(call: Callable[[], Any]) -> str:
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value.code or ""


def test_an_oidc_user_creates_lists_reads_and_deletes_its_bucket(
    users: dict[str, OscarHook], s3: Minio, made: Callable[[], str]
) -> None:
    alice, name = users["alice"], made()
    alice.create_bucket(name)
    assert s3.bucket_exists(name)
    listed = {b.name: b for b in alice.list_buckets()}
    assert (listed[name].visibility, listed[name].owner) == ("private", "alice")
    read = alice.get_bucket(name)
    assert read is not None and (read.visibility, read.owner) == ("private", "alice")
    assert read.used_bytes == 0  # storage usage is reported from 4.1
    assert alice.delete_bucket(name) is True
    assert not s3.bucket_exists(name)
    assert alice.delete_bucket(name) is False
    assert name not in {b.name for b in alice.list_buckets()}
    # get_bucket.go refuses a bucket without a policy to OIDC users before looking it up
    with pytest.raises(OscarClientError, match="answered 403: User 'alice' is not authorised"):
        alice.get_bucket(name)


def test_a_private_bucket_turned_restricted_reaches_the_allowed_user_only(
    users: dict[str, OscarHook], made: Callable[[], str]
) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    name = made()
    alice.create_bucket(name)
    bob_s3, carol_s3 = minio_of(bob), minio_of(carol)  # both have MinIO users now
    assert refused(lambda: put(bob_s3, name, "before.txt")) == "AccessDenied"
    changed = alice.set_bucket_visibility(name, "restricted", allowed_users=["bob"])
    assert (changed.visibility, changed.allowed_users) == ("restricted", ("bob",))
    put(bob_s3, name, "allowed.txt")
    assert [o.object_name for o in minio_of(alice).list_objects(name)] == ["allowed.txt"]
    assert refused(lambda: put(carol_s3, name, "carol.txt")) == "AccessDenied"


def test_a_public_bucket_is_every_users_and_back_to_private_is_the_owners(
    users: dict[str, OscarHook], made: Callable[[], str]
) -> None:
    alice, carol = users["alice"], users["carol"]
    name = made()
    alice.create_bucket(name, visibility="public")
    carol_s3 = minio_of(carol)
    put(carol_s3, name, "anyone.txt")
    assert alice.set_bucket_visibility(name, "private").visibility == "private"
    assert refused(lambda: put(carol_s3, name, "again.txt")) == "AccessDenied"


def test_a_change_oscar_accepts_but_does_not_make_is_reported(
    users: dict[str, OscarHook], made: Callable[[], str]
) -> None:
    """update_bucket.go answers 204 and changes nothing for a bucket outside the caller's
    policy: the hook reads the bucket back and says so; the owner's bucket stays private."""
    alice, bob = users["alice"], users["bob"]
    name = made()
    alice.create_bucket(name)
    with pytest.raises(OscarClientError, match=rf"bucket '{name}' is still .* caller's own"):
        bob.set_bucket_visibility(name, "public")
    assert alice.get_bucket(name).visibility == "private"  # type: ignore[union-attr]


def test_the_admins_buckets_have_no_policy_so_no_visibility(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, made: Callable[[], str]
) -> None:
    """create_bucket.go sets policies only when the caller is not ``cfg.Name``."""
    admin = admin_hook(oscar, monkeypatch)
    name = made()
    seen = counted(oscar)
    with pytest.raises(OscarClientError, match="visibility 'public' cannot be given"):
        admin.create_bucket(name, visibility="public")
    assert seen()["POST /system/buckets"] == 0
    assert admin.get_bucket(name) is None  # get_bucket.go: 500 NoSuchBucket for the admin
    admin.create_bucket(name)
    assert admin.get_bucket(name).visibility == ""  # type: ignore[union-attr]
    with pytest.raises(OscarClientError, match="is still no policy"):
        admin.set_bucket_visibility(name, "public")
    assert seen()["PUT /system/buckets"] == 1


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda h: h.create_bucket("ok-bucket", visibility="secret"), "visibility 'secret'"),
        (
            lambda h: h.create_bucket("ok-bucket", allowed_users=["bob"]),
            "allowed_users applies to restricted",
        ),
        (
            lambda h: h.set_bucket_visibility("ok-bucket", "restricted", allowed_users="bob"),
            "allowed_users must be a list",
        ),
        (lambda h: h.create_bucket("Not_A_Bucket"), "invalid bucket name"),
        (lambda h: h.delete_bucket("a/b"), "invalid bucket name"),
        (lambda h: h.presign("ok-bucket", "k", operation="delete"), "operation 'delete'"),
        (lambda h: h.presign("ok-bucket", "k", operation="upload", expires=0), "expires 0"),
        (
            lambda h: h.presign("ok-bucket", "k", operation="upload", expires=8 * 86400),
            "expires 691200",
        ),
        (
            lambda h: h.presign("ok-bucket", "k", operation="upload", content_type=3),
            "content_type",
        ),
        (lambda h: h.presign("ok-bucket", "../k", operation="download"), "invalid object key"),
    ],
)
def test_bad_arguments_fail_before_any_request_naming_the_field(
    oscar: OscarLocal, users: dict[str, OscarHook], call: Callable[[OscarHook], Any], field: str
) -> None:
    alice = users["alice"]
    alice.release()  # read once: what follows may not send anything
    seen = counted(oscar)
    with pytest.raises(OscarClientError, match=field):
        call(alice)
    assert not seen()


def test_presigned_urls_upload_and_download_on_every_release(
    release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, unique_name: Callable[[str], str]
) -> None:
    hook = admin_hook(release_oscar, monkeypatch)
    name = unique_name("hb-presign")
    hook.create_bucket(name)
    try:
        upload = hook.presign(name, "in/a.txt", operation="upload", content_type="text/plain")
        assert (upload.method, upload.headers) == ("PUT", {"Content-Type": "text/plain"})
        sent = httpx.put(upload.url, content=b"hello", headers=upload.headers)
        assert sent.status_code == 200, sent.text
        download = hook.presign(name, "in/a.txt", operation="download", expires=60)
        assert download.expires_at is not None
        assert httpx.get(download.url).content == b"hello"
        day = 86400
        if release_oscar.profile.since("v4.0.0"):
            assert hook.presign(name, "in/a.txt", operation="download", expires=day).url
        else:
            seen = counted(release_oscar)
            with pytest.raises(OscarClientError, match=r"expires 86400 is over 3600 s.*v3\."):
                hook.presign(name, "in/a.txt", operation="download", expires=day)
            assert not seen()
    finally:
        assert hook.delete_bucket(name) is True


def test_a_release_without_the_route_is_refused_naming_release_and_feature(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presign came with v3.6.4, bucket reads and system logs with v3.6.5 (main.go)."""
    hook = user_hook(oscar, monkeypatch, "dave")
    remember(hook.settings.key, OscarRelease.parse("v3.6.3"))
    seen = counted(oscar)
    with pytest.raises(OscarClientError, match=r"runs v3\.6\.3, which has no presigned URLs"):
        hook.presign("some-bucket", "k", operation="download")
    with pytest.raises(OscarClientError, match=r"no bucket reads \(GET .* OSCAR v3\.6\.5\)"):
        hook.get_bucket("some-bucket")
    with pytest.raises(OscarClientError, match=r"no system logs"):
        hook.get_system_logs()
    assert not seen()
