"""The embedded OSCAR's MinIO: signatures, per-user keys and policies, MinIO's own calls.

Each OIDC user gets its own MinIO user (``/system/config`` hands out its keys); what those
keys reach is decided by the policies OSCAR sets (pkg/utils/minio.go), as MinIO decides it.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from minio import Minio
from minio.error import S3Error

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import stays, wait_until

TOKENS = {"alice-token": "alice", "bob-token": "bob", "carol-token": "carol"}


@pytest.fixture
def users(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> dict[str, httpx.Client]:
    """OSCAR clients of three OIDC users (each has its MinIO user once it called OSCAR)."""
    clients = {}
    for token, user in TOKENS.items():
        monkeypatch.setitem(oscar.settings.bearer_tokens, token, user)
        client = httpx.Client(base_url=oscar.endpoint, headers={"Authorization": f"Bearer {token}"})
        clients[user] = client
    yield clients
    for client in clients.values():
        client.close()


def minio_of(client: httpx.Client) -> Minio:
    """A MinIO client with the keys ``/system/config`` gives the caller."""
    provider = client.get("/system/config").json()["minio_provider"]
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


def read(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def signed_url(oscar: OscarLocal, path: str, query: dict[str, str] | None = None) -> str:
    """A presigned GET with the root user's keys (minio-py presigns object URLs only)."""
    from airflow_provider_oscar.local.s3 import sigv4

    s3 = oscar.s3
    pairs = list((query or {}).items())
    return sigv4.presign(
        "GET", s3.endpoint, path, s3.access_key, s3.secret_key, s3.region, 300, pairs
    )


def code_of(call: Callable[[], Any]) -> str:
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value.code or ""


@pytest.fixture
def bucket_of(
    users: dict[str, httpx.Client], admin: httpx.Client, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """``bucket_of("alice", visibility=..., allowed_users=...)``: a bucket made through
    ``POST /system/buckets`` by that user."""
    made: list[str] = []

    def make(user: str, **fields: Any) -> str:
        name = unique_name(user)
        response = users[user].post("/system/buckets", json={"bucket_name": name, **fields})
        assert response.status_code == 201, response.text
        made.append(name)
        return name

    yield make
    for name in made:
        admin.delete(f"/system/buckets/{name}")


# signatures and MinIO's own routes --------------------------------------------------------


def test_an_unknown_access_key_is_refused(oscar: OscarLocal) -> None:
    stranger = Minio(urlsplit(oscar.s3.endpoint).netloc, "nobody", "x" * 20, secure=False)
    assert code_of(stranger.list_buckets) == "InvalidAccessKeyId"


def test_a_wrong_secret_is_refused(oscar: OscarLocal) -> None:
    s3 = oscar.s3
    forger = Minio(urlsplit(s3.endpoint).netloc, s3.access_key, "wrong" * 4, secure=False)
    assert code_of(forger.list_buckets) == "SignatureDoesNotMatch"


def test_anonymous_requests_are_refused_even_on_a_public_bucket(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str], oscar: OscarLocal
) -> None:
    """OSCAR sets no bucket policy: "public" means every OSCAR user, not anonymous."""
    name = bucket_of("alice", visibility="public")
    put(minio_of(users["alice"]), name, "open.txt")
    response = httpx.get(f"{oscar.s3.endpoint}/{name}/open.txt")
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert response.headers["server"] == "MinIO"


def test_the_stores_own_admin_routes_are_not_reachable(
    oscar: OscarLocal, s3: Minio, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("kept")
    s3.make_bucket(name)
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{oscar.s3.endpoint}/moto-api/reset")
        assert response.status_code == 403
    assert code_of(lambda: s3.list_objects("moto-api").__next__()) == "NoSuchBucket"
    assert s3.bucket_exists(name)


def test_minio_admin_calls_answer_an_s3_xml_error(oscar: OscarLocal) -> None:
    assert httpx.get(f"{oscar.s3.endpoint}/minio/health/live").status_code == 200
    response = httpx.get(signed_url(oscar, "/minio/admin/v3/info"))
    assert response.status_code == 501
    assert response.headers["content-type"] == "application/xml"
    assert "<Code>NotImplemented</Code>" in response.text


def test_a_body_that_does_not_match_its_declared_hash_is_refused(
    oscar: OscarLocal, s3: Minio, unique_name: Callable[[str], str]
) -> None:
    from datetime import datetime, timezone

    from airflow_provider_oscar.local.s3 import sigv4

    name = unique_name("hash")
    s3.make_bucket(name)
    now = datetime.now(timezone.utc)
    host = urlsplit(oscar.s3.endpoint).netloc
    declared = sigv4.EMPTY_SHA256
    headers = {"host": host, "x-amz-date": sigv4.amz_date(now), "x-amz-content-sha256": declared}
    auth = sigv4.sign(
        "PUT",
        f"/{name}/k",
        [],
        headers,
        oscar.s3.access_key,
        oscar.s3.secret_key,
        oscar.s3.region,
        declared,
        now,
    )
    response = httpx.put(
        f"{oscar.s3.endpoint}/{name}/k",
        content=b"not empty",
        headers={**headers, "authorization": auth},
    )
    assert response.status_code == 400
    assert "<Code>XAmzContentSHA256Mismatch</Code>" in response.text
    assert list(s3.list_objects(name)) == []


def test_an_upload_cut_short_by_its_client_leaves_the_object_as_it_was(
    oscar: OscarLocal, s3: Minio, unique_name: Callable[[str], str]
) -> None:
    """A writer killed mid-upload: MinIO keeps the previous object whole, as the lease and
    job records of the provider rely on."""
    import socket
    from datetime import datetime, timezone

    from airflow_provider_oscar.local.s3 import sigv4

    name = unique_name("cut")
    s3.make_bucket(name)
    put(s3, name, "record.json", b'{"state": "pending"}')
    now = datetime.now(timezone.utc)
    host = urlsplit(oscar.s3.endpoint).netloc
    whole = b'{"state": "submitted", "job": "j-1"}'
    headers = {
        "host": host,
        "x-amz-date": sigv4.amz_date(now),
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "content-length": str(len(whole)),
    }
    path = f"/{name}/record.json"
    auth = sigv4.sign(
        "PUT",
        path,
        [],
        headers,
        oscar.s3.access_key,
        oscar.s3.secret_key,
        oscar.s3.region,
        "UNSIGNED-PAYLOAD",
        now,
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "authorization": auth}.items())
    address = urlsplit(oscar.s3.endpoint)
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\n{head}\r\n".encode() + whole[:9])
        time.sleep(0.2)  # the front has started reading the body
    stays(lambda: read(s3, name, "record.json") == b'{"state": "pending"}', 1.0)
    assert [o.object_name for o in s3.list_objects(name)] == ["record.json"]


# users' keys and what they reach ---------------------------------------------------------


def test_an_oidc_user_gets_its_own_minio_keys(
    users: dict[str, httpx.Client], oscar: OscarLocal
) -> None:
    provider = users["alice"].get("/system/config").json()["minio_provider"]
    assert provider["access_key"] == "alice"
    assert provider["secret_key"] not in ("", "hidden", oscar.s3.secret_key)
    assert len(provider["secret_key"]) == 14  # GenerateRandomKey(10): base64url, unpadded
    assert provider["endpoint"] == oscar.s3.endpoint
    again = users["alice"].get("/system/config").json()["minio_provider"]
    assert again["secret_key"] == provider["secret_key"]


def test_a_private_bucket_is_only_the_owners(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    name = bucket_of("alice")
    alice, bob = minio_of(users["alice"]), minio_of(users["bob"])
    put(alice, name, "mine.txt", b"secret")
    assert read(alice, name, "mine.txt") == b"secret"
    assert code_of(lambda: read(bob, name, "mine.txt")) == "AccessDenied"
    assert code_of(lambda: put(bob, name, "theirs.txt")) == "AccessDenied"
    assert name in [b.name for b in alice.list_buckets()]
    assert name not in [b.name for b in _buckets_or_none(bob)]


def _buckets_or_none(client: Minio) -> list[Any]:
    try:
        return list(client.list_buckets())
    except S3Error as exc:
        assert exc.code == "AccessDenied"  # ListBucketsHandler: nothing the user may list
        return []


def test_a_public_bucket_is_every_users(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    name = bucket_of("alice", visibility="public")
    put(minio_of(users["alice"]), name, "shared.txt", b"shared")
    bob = minio_of(users["bob"])
    assert read(bob, name, "shared.txt") == b"shared"
    put(bob, name, "bobs.txt")  # all_users_group has s3:* on it
    assert name in [b.name for b in bob.list_buckets()]


def test_a_restricted_bucket_reaches_its_allowed_users_with_restricted_actions(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    minio_of(users["bob"])  # bob's MinIO user exists
    name = bucket_of("alice", visibility="restricted", allowed_users=["bob"])
    alice, bob, carol = (minio_of(users[u]) for u in ("alice", "bob", "carol"))
    put(alice, name, "for-bob.txt", b"hi")
    assert read(bob, name, "for-bob.txt") == b"hi"
    put(bob, name, "from-bob.txt")
    bob.remove_object(name, "from-bob.txt")
    assert code_of(lambda: bob.remove_bucket(name)) == "AccessDenied"  # not a restricted action
    assert code_of(lambda: read(carol, name, "for-bob.txt")) == "AccessDenied"


def test_a_restricted_bucket_for_a_user_without_minio_user_answers_500_but_exists(
    users: dict[str, httpx.Client], admin: httpx.Client, unique_name: Callable[[str], str]
) -> None:
    """SetPolicies adds the allowed users to the bucket's group; MinIO refuses an unknown
    member, and create_bucket.go writes 500 without stopping."""
    name = unique_name("alice")
    body = {"bucket_name": name, "visibility": "restricted", "allowed_users": ["dave"]}
    response = users["alice"].post("/system/buckets", json=body)
    assert (response.status_code, response.text) == (
        500,
        "Error creating policies for bucket: error creating bucket group: error creating/"
        f"updating MinIO group {name}: The specified user does not exist.",
    )
    listed = {b["bucket_name"]: b for b in users["alice"].get("/system/buckets").json()}
    assert (listed[name]["visibility"], listed[name]["owner"]) == ("private", "alice")
    admin.delete(f"/system/buckets/{name}")


# /system/buckets as MinIO's policies make it ----------------------------------------------


def test_each_user_lists_the_buckets_its_keys_reach(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    private = bucket_of("alice")
    public = bucket_of("alice", visibility="public")
    mine = {b["bucket_name"]: b for b in users["alice"].get("/system/buckets").json()}
    assert (mine[private]["visibility"], mine[private]["owner"]) == ("private", "alice")
    assert (mine[public]["visibility"], mine[public]["owner"]) == ("public", "alice")
    theirs = {b["bucket_name"]: b for b in users["bob"].get("/system/buckets").json()}
    assert private not in theirs
    assert (theirs[public]["visibility"], theirs[public]["owner"]) == ("public", "alice")


def test_a_user_without_any_bucket_lists_an_empty_array(
    users: dict[str, httpx.Client], oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(oscar.settings.bearer_tokens, "erin-token", "erin")
    response = httpx.get(
        f"{oscar.endpoint}/system/buckets", headers={"Authorization": "Bearer erin-token"}
    )
    assert (response.status_code, response.text) == (200, "[]")


def test_another_users_private_bucket_is_listed_by_get_as_oscar_does(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    """get_bucket.go refuses only a bucket without any policy; the objects of someone
    else's private bucket are listed (their content stays out of reach: MinIO's policy)."""
    name = bucket_of("alice")
    put(minio_of(users["alice"]), name, "a.txt")
    body = users["bob"].get(f"/system/buckets/{name}").json()
    assert (body["visibility"], body["owner"]) == ("private", "alice")
    assert [o["object_name"] for o in body["objects"]] == ["a.txt"]


def test_get_of_a_bucket_without_policy_is_refused_to_oidc_users(
    users: dict[str, httpx.Client], admin: httpx.Client, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("adm")
    assert admin.post("/system/buckets", json={"bucket_name": name}).status_code == 201
    response = users["bob"].get(f"/system/buckets/{name}")
    assert (response.status_code, response.text) == (403, "User 'bob' is not authorised")
    admin.delete(f"/system/buckets/{name}")


def test_presign_follows_ownership_and_visibility(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    private = bucket_of("alice")
    body = {"object_key": "k", "operation": "download"}
    refused = users["bob"].post(f"/system/buckets/{private}/presign", json=body)
    assert (refused.status_code, refused.text) == (
        403,
        f"User 'bob' is not authorised to generate presigned URLs for bucket '{private}'",
    )
    assert users["alice"].post(f"/system/buckets/{private}/presign", json=body).status_code == 200
    public = bucket_of("alice", visibility="public")
    put(minio_of(users["alice"]), public, "k", b"content")
    url = users["bob"].post(f"/system/buckets/{public}/presign", json=body).json()["url"]
    assert httpx.get(url).content == b"content"


def test_a_user_may_not_delete_another_users_bucket(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    name = bucket_of("alice", visibility="public")
    response = users["bob"].delete(f"/system/buckets/{name}")
    assert (response.status_code, response.text) == (403, "User 'bob' is not authorised")
    assert users["alice"].delete(f"/system/buckets/{name}").status_code == 204
    assert code_of(lambda: minio_of(users["alice"]).list_objects(name).__next__()) in (
        "NoSuchBucket",
        "AccessDenied",
    )


def test_a_user_changes_its_bucket_to_restricted(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    minio_of(users["bob"])
    name = bucket_of("alice")
    body = {"bucket_name": name, "visibility": "restricted", "allowed_users": ["bob"]}
    assert users["alice"].put("/system/buckets", json=body).status_code == 204
    listed = {b["bucket_name"]: b for b in users["alice"].get("/system/buckets").json()}
    assert (listed[name]["visibility"], listed[name]["allowed_users"]) == ("restricted", ["bob"])
    put(minio_of(users["bob"]), name, "now-allowed.txt")


def test_a_put_without_visibility_makes_a_public_bucket_as_oscar_does(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    """SetPolicies treats anything but private and restricted as public."""
    name = bucket_of("alice")
    assert users["alice"].put("/system/buckets", json={"bucket_name": name}).status_code == 204
    put(minio_of(users["bob"]), name, "anyone.txt")


# MinIO's notification stream -----------------------------------------------------------------


def _listen(client: Minio, bucket: str, found: list[dict[str, Any]], **filters: Any) -> None:
    def pump() -> None:
        with client.listen_bucket_notification(bucket, **filters) as events:
            for event in events:
                found.extend(event["Records"])
                return

    threading.Thread(target=pump, daemon=True).start()


def test_listen_bucket_notification_streams_the_records_of_new_objects(
    s3: Minio, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("listen")
    s3.make_bucket(name)
    found: list[dict[str, Any]] = []
    _listen(s3, name, found, prefix="in/", suffix=".json", events=("s3:ObjectCreated:*",))
    time.sleep(0.3)
    put(s3, name, "out/skipped.json")
    put(s3, name, "in/skipped.txt")
    put(s3, name, "in/wanted.json", b"{}")
    (record,) = wait_until(lambda: found, timeout=5)
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "in%2Fwanted.json"
    assert record["s3"]["object"]["size"] == 2
    assert record["userIdentity"]["principalId"] == s3._provider.retrieve().access_key


def test_the_stream_keeps_alive_with_spaces_or_ping_records(oscar: OscarLocal, s3: Minio) -> None:
    name = "listen-keepalive"
    if not s3.bucket_exists(name):
        s3.make_bucket(name)  # shared by the session's runs of this test
    for query, expected in (({}, b" "), ({"ping": "1"}, b'{"Records":null}\n')):
        url = urlsplit(signed_url(oscar, f"/{name}/", {"events": "s3:ObjectCreated:*", **query}))
        connection = http.client.HTTPConnection(url.netloc, timeout=5)
        connection.request("GET", f"{url.path}?{url.query}")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type") == "text/event-stream"
        assert response.read1(64).startswith(expected)
        connection.close()


def test_listening_with_an_unknown_event_name_is_an_s3_error(
    s3: Minio, oscar: OscarLocal, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("listen")
    s3.make_bucket(name)
    response = httpx.get(signed_url(oscar, f"/{name}/", {"events": "s3:Nothing:*"}))
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text


def test_a_user_may_not_listen_on_another_users_private_bucket(
    users: dict[str, httpx.Client], bucket_of: Callable[..., str]
) -> None:
    from airflow_provider_oscar.local.s3 import sigv4

    name = bucket_of("alice")
    provider = users["bob"].get("/system/config").json()["minio_provider"]
    url = sigv4.presign(
        "GET",
        provider["endpoint"],
        f"/{name}/",
        provider["access_key"],
        provider["secret_key"],
        provider["region"],
        300,
        [("events", "s3:ObjectCreated:*")],
    )
    response = httpx.get(url)
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text


# bucket notifications through S3 ----------------------------------------------------------


def test_a_notification_to_an_unknown_target_is_refused(
    s3: Minio, unique_name: Callable[[str], str]
) -> None:
    from minio.notificationconfig import NotificationConfig, QueueConfig

    name = unique_name("notif")
    s3.make_bucket(name)
    arn = "arn:minio:sqs:us-east-1:nothing:webhook"
    config = NotificationConfig(
        queue_config_list=[QueueConfig(queue=arn, events=["s3:ObjectCreated:*"])]
    )
    assert code_of(lambda: s3.set_bucket_notification(name, config)) == "InvalidArgument"


def test_a_notification_to_a_services_webhook_starts_its_jobs(
    s3: Minio, deploy: Callable[..., dict], admin: httpx.Client, unique_name: Callable[[str], str]
) -> None:
    from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig

    service = deploy("echo ran\n")
    elsewhere = unique_name("other")
    s3.make_bucket(elsewhere)
    arn = f"arn:minio:sqs:us-east-1:{service['name']}:webhook"
    rule = PrefixFilterRule("drop/")
    config = NotificationConfig(
        queue_config_list=[
            QueueConfig(queue=arn, events=["s3:ObjectCreated:*"], prefix_filter_rule=rule)
        ]
    )
    s3.set_bucket_notification(elsewhere, config)
    assert s3.get_bucket_notification(elsewhere).queue_config_list[0].queue == arn
    put(s3, elsewhere, "drop/a.txt")
    wait_until(lambda: admin.get(f"/system/logs/{service['name']}").json()["jobs"], timeout=5)


def test_a_copy_into_an_input_folder_fires_a_copy_event(
    s3: Minio, oscar: OscarLocal, deploy: Callable[..., dict], admin: httpx.Client
) -> None:
    service = deploy(
        'echo "$EVENT" > "$TMP_OUTPUT_DIR/e.json"\n',
        input=[{"storage_provider": "minio", "path": "in"}],
        output=[{"storage_provider": "minio", "path": "out"}],
    )
    name = service["name"]
    put(s3, name, "staging.txt")
    boto = boto3.client(
        "s3",
        endpoint_url=oscar.s3.endpoint,
        aws_access_key_id=oscar.s3.access_key,
        aws_secret_access_key=oscar.s3.secret_key,
        region_name=oscar.s3.region,
    )
    boto.copy_object(
        Bucket=name, Key="in/copied.txt", CopySource={"Bucket": name, "Key": "staging.txt"}
    )
    wait_until(lambda: any(o.object_name == "out/e.json" for o in s3.list_objects(name, "out/")))
    event = json.loads(read(s3, name, "out/e.json"))
    assert event["Records"][0]["eventName"] == "s3:ObjectCreated:Copy"


# jobs use the uploader's keys ------------------------------------------------------------


def test_a_job_uses_the_keys_of_the_user_whose_upload_started_it(
    users: dict[str, httpx.Client],
    admin: httpx.Client,
    unique_name: Callable[[str], str],
    oscar: OscarLocal,
) -> None:
    """job.go mounts the secret of the event's principal; the owner's own upload gets the
    ``minio`` (root) secret."""
    name = unique_name("pub")
    spec = {
        "name": name,
        "image": "local/test",
        "script": "true\n",
        "visibility": "public",
        "input": [{"storage_provider": "minio", "path": f"{name}/in"}],
    }
    assert users["alice"].post("/system/services", json=spec).status_code == 201
    try:
        put(minio_of(users["bob"]), name, "in/from-bob.txt")
        put(minio_of(users["alice"]), name, "in/from-alice.txt")

        def logs() -> list[str] | None:
            jobs = admin.get(f"/system/logs/{name}").json()["jobs"]
            done = [j for j, i in jobs.items() if i["status"] in ("Succeeded", "Failed")]
            if len(done) < 2:
                return None
            return [admin.get(f"/system/logs/{name}/{j}").text for j in done]

        texts = wait_until(logs, timeout=10)
        users_seen = sorted(
            line.rsplit("'", 2)[-2]
            for t in texts
            for line in t.splitlines()
            if "Using MinIO credentials for user" in line
        )
        assert users_seen == sorted(["bob", oscar.s3.access_key])
    finally:
        admin.delete(f"/system/services/{name}")


def test_a_job_whose_principal_has_no_minio_user_never_starts(
    deploy: Callable[..., dict], oscar: OscarLocal, admin: httpx.Client
) -> None:
    """The pod mounts the principal's secret: without one it cannot start (FailedMount)."""
    service = deploy("echo ran\n")
    event = {"Records": [{"requestParameters": {"principalId": "ghost", "sourceIPAddress": "x"}}]}
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=json.dumps(event),
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 201
    wait_until(lambda: admin.get(f"/system/logs/{service['name']}").json()["jobs"])
    stays(
        lambda: (
            list(admin.get(f"/system/logs/{service['name']}").json()["jobs"].values())
            == [{"status": "Pending"}]
        ),
        0.5,
    )


def test_boto3_uploads_through_the_front_like_minio_clients(
    oscar: OscarLocal, unique_name: Callable[[str], str], s3: Minio
) -> None:
    boto = boto3.client(
        "s3",
        endpoint_url=oscar.s3.endpoint,
        aws_access_key_id=oscar.s3.access_key,
        aws_secret_access_key=oscar.s3.secret_key,
        region_name=oscar.s3.region,
    )
    name = unique_name("boto")
    boto.create_bucket(Bucket=name)
    boto.put_object(Bucket=name, Key="a b+c.txt", Body=b"boto")
    assert read(s3, name, "a b+c.txt") == b"boto"
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        boto3.client(
            "s3",
            endpoint_url=oscar.s3.endpoint,
            aws_access_key_id="nobody",
            aws_secret_access_key="nothing-here",
            region_name=oscar.s3.region,
        ).list_buckets()
