"""Storage on the embedded OSCAR: oscar-python Storage, bucket events, buckets and presign."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from minio import Minio
from oscar_python.client import Client

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import stays, wait_until

# Copies the input to the output folder under its own name, reporting the event variables.
COPY = (
    'echo "key=$STORAGE_OBJECT_KEY file=$(basename "$INPUT_FILE_PATH") job=$JOB_UUID"\n'
    'echo "$EVENT" > "$TMP_OUTPUT_DIR/event.json"\n'
    'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/copy-$(basename "$INPUT_FILE_PATH")"\n'
)


def jobs_of(admin: httpx.Client, service: str) -> dict[str, dict[str, str]]:
    return admin.get(f"/system/logs/{service}").json()["jobs"]


def finished(admin: httpx.Client, service: str) -> dict[str, dict[str, str]]:
    """Wait until the service has jobs and all have finished; returns them."""

    def probe() -> dict[str, dict[str, str]] | None:
        jobs = jobs_of(admin, service)
        done = jobs and all(j["status"] in ("Succeeded", "Failed") for j in jobs.values())
        return jobs if done else None

    return wait_until(probe)


@pytest.fixture
def client(oscar: OscarLocal) -> Client:
    return Client(
        {
            "cluster_id": "local",
            "endpoint": oscar.endpoint,
            "user": oscar.user,
            "password": oscar.password,
            "ssl": False,
        }
    )


@pytest.fixture
def pipeline(deploy: Callable[..., dict]) -> dict[str, Any]:
    """A service reading ``<name>/in`` and writing ``<name>/out``."""
    return deploy(
        COPY,
        input=[{"storage_provider": "minio.default", "path": "in"}],
        output=[{"storage_provider": "minio.default", "path": "out"}],
    )


def put(s3: Minio, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(bucket, key, io.BytesIO(data), len(data))


# oscar-python Storage --------------------------------------------------------------------


def test_oscar_python_storage_uploads_lists_and_downloads(
    client: Client, pipeline: dict[str, Any], tmp_path: Path, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    source = tmp_path / "photo.png"
    source.write_bytes(b"\x89PNG fake")
    storage = client.create_storage_client(name)
    storage.upload_file("minio.default", str(source), f"{name}/in")
    finished(admin, name)
    listing = storage.list_files_from_path("minio.default", f"{name}/out")
    keys = sorted(o["Key"] for o in listing["Contents"])
    assert keys == ["out/", "out/copy-photo.png", "out/event.json"]  # createBuckets' folder
    (tmp_path / "down").mkdir()
    storage.download_file("minio.default", str(tmp_path / "down"), f"{name}/out/copy-photo.png")
    assert (tmp_path / "down" / "copy-photo.png").read_bytes() == b"\x89PNG fake"


# bucket events ---------------------------------------------------------------------------


def test_upload_with_minio_starts_exactly_one_job_within_a_second(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    put(s3, name, "in/one.txt", b"1")
    jobs = wait_until(lambda: jobs_of(admin, name), timeout=1.0)
    assert len(jobs) == 1
    stays(lambda: len(jobs_of(admin, name)) == 1, 0.6)


def test_upload_with_boto3_starts_a_job(
    pipeline: dict[str, Any], oscar: OscarLocal, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    boto = boto3.client(
        "s3",
        endpoint_url=oscar.s3.endpoint,
        aws_access_key_id=oscar.s3.access_key,
        aws_secret_access_key=oscar.s3.secret_key,
        region_name=oscar.s3.region,
    )
    boto.put_object(Bucket=name, Key="in/boto.txt", Body=b"from boto3")
    wait_until(lambda: jobs_of(admin, name), timeout=1.0)


def test_storage_event_job_gets_the_object_and_minio_event_variables(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    put(s3, name, "in/sub dir/data+1.csv", b"a,b\n")
    ((job, info),) = finished(admin, name).items()
    assert info["status"] == "Succeeded"
    log = admin.get(f"/system/logs/{name}/{job}").text
    assert f"key=in/sub dir/data+1.csv file=data+1.csv job={job}" in log
    assert s3.get_object(name, "out/copy-data+1.csv").read() == b"a,b\n"


def test_storage_event_is_in_minio_notification_format(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    put(s3, name, "in/x.bin", b"xyz")
    finished(admin, name)
    event = json.loads(s3.get_object(name, "out/event.json").read())
    assert (event["EventName"], event["Key"]) == ("s3:ObjectCreated:Put", f"{name}/in/x.bin")
    (record,) = event["Records"]
    assert record["eventSource"] == "minio:s3"
    assert record["s3"]["bucket"]["name"] == name
    assert (record["s3"]["object"]["key"], record["s3"]["object"]["size"]) == ("in%2Fx.bin", 3)


def test_each_upload_starts_its_own_job(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    for index in range(3):
        put(s3, name, f"in/{index}.txt", str(index).encode())
    wait_until(lambda: len(jobs_of(admin, name)) == 3, timeout=2.0)
    stays(lambda: len(jobs_of(admin, name)) == 3, 0.6)


def test_overwriting_an_object_with_new_content_starts_another_job(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    put(s3, name, "in/same.txt", b"first")
    finished(admin, name)
    put(s3, name, "in/same.txt", b"second")
    wait_until(lambda: len(jobs_of(admin, name)) == 2, timeout=2.0)


def test_a_service_whose_input_bucket_exists_is_refused_and_the_bucket_kept(
    admin: httpx.Client, s3: Minio, unique_name: Callable[[str], str]
) -> None:
    """createBuckets: an existing input bucket fails the create (500, the service is deleted
    again); an "already exists" error keeps the buckets."""
    name = unique_name("late")
    s3.make_bucket(name)
    put(s3, name, "in/old.txt", b"old")
    spec = {"name": name, "image": "local/test", "script": COPY}
    spec["input"] = [{"storage_provider": "minio", "path": "in"}]
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (500, f'the bucket "{name}" already exists\n')
    assert admin.get(f"/system/services/{name}").status_code == 404
    assert [o.object_name for o in s3.list_objects(name, recursive=True)] == ["in/old.txt"]


def test_an_input_an_update_adds_on_an_existing_bucket_never_fires(
    admin: httpx.Client, s3: Minio, unique_name: Callable[[str], str], deploy: Callable[..., dict]
) -> None:
    """On update createBuckets ignores "already exists", which ends CreateS3PathWithWebhook
    before the bucket notification is set: uploads there start nothing."""
    service = deploy(COPY)
    data = unique_name("late")
    s3.make_bucket(data)
    spec = {key: service[key] for key in ("name", "image", "script")}
    spec["input"] = [{"storage_provider": "minio", "path": f"{data}/in"}]
    admin.put("/system/services", json=spec)
    assert admin.get(f"/system/services/{service['name']}").json()["input"][0]["path"] == (
        f"{data}/in"
    )
    put(s3, data, "in/new.txt", b"new")
    stays(lambda: jobs_of(admin, service["name"]) == {}, 0.6)


def test_a_folder_marker_in_the_input_folder_fires_a_job_that_fails(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    """MinIO notifies every object put, folder markers too; the supervisor then opens the
    input directory as a file."""
    name = pipeline["name"]
    put(s3, name, "in/subfolder/", b"")
    ((job, info),) = finished(admin, name).items()
    assert info["status"] == "Failed"
    assert "IsADirectoryError" in admin.get(f"/system/logs/{name}/{job}").text


def test_objects_outside_the_input_folder_do_not_fire(
    pipeline: dict[str, Any], s3: Minio, admin: httpx.Client
) -> None:
    name = pipeline["name"]
    put(s3, name, "elsewhere/x.txt", b"x")
    put(s3, name, "input-lookalike/y.txt", b"y")
    put(s3, name, "in/z.txt", b"z")
    (job,) = wait_until(lambda: jobs_of(admin, name), timeout=1.0)
    stays(lambda: len(jobs_of(admin, name)) == 1, 0.6)
    assert "key=in/z.txt" in admin.get(f"/system/logs/{name}/{job}").text


def test_uploads_stop_firing_after_the_service_is_deleted_and_recreated(
    admin: httpx.Client, s3: Minio, deploy: Callable[..., dict], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("again")
    spec = {"input": [{"storage_provider": "minio", "path": "in"}]}
    deploy(COPY, name=name, **spec)
    put(s3, name, "in/a.txt", b"a")
    wait_until(lambda: jobs_of(admin, name), timeout=1.0)
    assert admin.delete(f"/system/services/{name}").status_code == 204
    deploy(COPY, name=name, **spec)
    stays(lambda: jobs_of(admin, name) == {}, 0.6)


# /system/buckets -------------------------------------------------------------------------


@pytest.fixture
def bucket(admin: httpx.Client, unique_name: Callable[[str], str]) -> Any:
    name = unique_name("bkt")
    response = admin.post("/system/buckets", json={"bucket_name": name})
    assert (response.status_code, response.content) == (201, b"")
    yield name
    admin.delete(f"/system/buckets/{name}")


def test_an_admins_bucket_is_listed_without_visibility_in_oscars_key_order(
    admin: httpx.Client, bucket: str
) -> None:
    """create_bucket.go sets no policy for the admin (``uid == cfg.Name``), so MinIO knows no
    visibility for it; the owner shown is its ``owner`` tag, the admin's ``cfg.Name``."""
    text = admin.get("/system/buckets").text
    assert f'"bucket_name":"{bucket}","visibility":"","allowed_users":null,"owner":"oscar"' in text


def test_created_bucket_exists_in_the_store(bucket: str, s3: Minio) -> None:
    assert s3.bucket_exists(bucket)


def test_get_bucket_lists_its_objects(admin: httpx.Client, bucket: str, s3: Minio) -> None:
    put(s3, bucket, "a/b.txt", b"12345")
    body = admin.get(f"/system/buckets/{bucket}").json()
    assert body["bucket_name"] == bucket
    assert [(o["object_name"], o["size_bytes"]) for o in body["objects"]] == [("a/b.txt", 5)]
    assert (body["is_truncated"], body["returned_items"]) == (False, 1)


def test_get_of_an_unknown_bucket_answers_500_as_the_s3_listing_fails(
    admin: httpx.Client,
) -> None:
    response = admin.get("/system/buckets/no-such-bucket")
    assert response.status_code == 500
    assert response.text.startswith("Error listing objects in bucket 'no-such-bucket': ")
    assert "no-such-bucket" not in admin.get("/system/buckets").text


def test_an_admins_put_leaves_a_bucket_without_policies_as_it_is(
    admin: httpx.Client, bucket: str
) -> None:
    """update_bucket.go changes policies only of a public bucket or one in the caller's
    policy; an admin's bucket has none."""
    spec = {"bucket_name": bucket, "visibility": "restricted", "allowed_users": ["bob"]}
    assert admin.put("/system/buckets", json=spec).status_code == 204
    listed = {b["bucket_name"]: b for b in admin.get("/system/buckets").json()}
    assert (listed[bucket]["visibility"], listed[bucket]["allowed_users"]) == ("", None)


def test_put_of_a_bucket_tagged_as_a_service_bucket_answers_403(
    admin: httpx.Client, bucket: str, s3: Minio
) -> None:
    from minio.commonconfig import Tags

    tags = Tags.new_bucket_tags()
    tags["service"] = "true"
    s3.set_bucket_tags(bucket, tags)
    response = admin.put("/system/buckets", json={"bucket_name": bucket})
    assert (response.status_code, response.text) == (
        403,
        "Forbidden action: A bucket from a service can't be modified\n",
    )


def test_put_of_a_services_bucket_is_not_refused(
    admin: httpx.Client, pipeline: dict[str, Any]
) -> None:
    """create.go tags a service's buckets ``from_service``, not the ``service`` tag the
    update handler checks."""
    response = admin.put("/system/buckets", json={"bucket_name": pipeline["name"]})
    assert (response.status_code, response.content) == (204, b"")


def test_post_of_an_existing_bucket_answers_400_already_exists(
    admin: httpx.Client, bucket: str
) -> None:
    response = admin.post("/system/buckets", json={"bucket_name": bucket})
    assert response.status_code == 400
    assert response.text == (
        f"Error creating bucket with name '{bucket}': the bucket \"{bucket}\" already exists\n"
    )


def test_post_over_a_service_bucket_changes_nothing(
    admin: httpx.Client, pipeline: dict[str, Any]
) -> None:
    name = pipeline["name"]
    assert admin.post("/system/buckets", json={"bucket_name": name}).status_code == 400
    metadata = admin.get(f"/system/buckets/{name}").json()["metadata"]
    assert metadata["from_service"] == name


def test_post_with_an_invalid_bucket_name_answers_400(admin: httpx.Client) -> None:
    response = admin.post("/system/buckets", json={"bucket_name": "Bad_Bucket"})
    assert response.status_code == 400
    assert "Bad_Bucket" in response.text


def test_delete_bucket_answers_204_and_removes_it_with_its_objects(
    admin: httpx.Client, s3: Minio, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("bkt")
    admin.post("/system/buckets", json={"bucket_name": name})
    put(s3, name, "k", b"v")
    response = admin.delete(f"/system/buckets/{name}")
    assert (response.status_code, response.content) == (204, b"")
    assert not s3.bucket_exists(name)


def test_delete_of_an_unknown_bucket_answers_404_with_oscars_text(admin: httpx.Client) -> None:
    response = admin.delete("/system/buckets/no-such-bucket")
    assert (response.status_code, response.text) == (
        404,
        "The bucket 'no-such-bucket' does not exist",
    )


# presign ---------------------------------------------------------------------------------


def presign(admin: httpx.Client, bucket: str, **body: Any) -> httpx.Response:
    return admin.post(f"/system/buckets/{bucket}/presign", json=body)


def test_presigned_upload_url_works_with_a_plain_put(
    admin: httpx.Client, bucket: str, s3: Minio
) -> None:
    response = presign(admin, bucket, object_key="up/file.txt", operation="upload")
    signed = response.json()
    assert list(signed) == ["object_key", "operation", "method", "url", "expires_at"]
    assert signed["method"] == "PUT"
    assert httpx.put(signed["url"], content=b"presigned!").status_code == 200
    assert s3.get_object(bucket, "up/file.txt").read() == b"presigned!"


def test_presigned_download_url_works_with_a_plain_get(
    admin: httpx.Client, bucket: str, s3: Minio
) -> None:
    put(s3, bucket, "down.txt", b"fetch me")
    signed = presign(admin, bucket, object_key="down.txt", operation="download").json()
    assert (signed["operation"], signed["method"]) == ("download", "GET")
    assert httpx.get(signed["url"]).content == b"fetch me"


def test_presign_with_an_unsupported_operation_answers_400(
    admin: httpx.Client, bucket: str
) -> None:
    response = presign(admin, bucket, object_key="k", operation="delete")
    assert response.status_code == 400
    assert response.text.startswith("Unsupported operation")


@pytest.mark.parametrize("expires", [-1, 7 * 24 * 3600 + 1, "soon"])
def test_presign_with_an_invalid_expiry_answers_400(
    admin: httpx.Client, bucket: str, expires: object
) -> None:
    response = presign(admin, bucket, object_key="k", operation="upload", expires_in=expires)
    assert response.status_code == 400
    if isinstance(expires, str):
        assert response.text == (
            "Invalid presign request: json: cannot unmarshal string into Go struct field "
            "PresignRequest.expires_in of type int64"
        )
    else:
        assert response.text == (
            f"Invalid expiration requested: {expires}. Allowed range is 1-604800 seconds"
        )


def test_presign_needs_an_operation(admin: httpx.Client, bucket: str) -> None:
    response = presign(admin, bucket, object_key="k")
    assert (response.status_code, response.text) == (
        400,
        "Invalid presign request: Key: 'PresignRequest.Operation' Error:Field validation for "
        "'Operation' failed on the 'required' tag",
    )


def test_presign_in_an_unknown_bucket_answers_404(admin: httpx.Client) -> None:
    response = presign(admin, "no-such-bucket", object_key="k", operation="download")
    assert (response.status_code, response.text) == (404, "Bucket 'no-such-bucket' not found")
