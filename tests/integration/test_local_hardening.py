"""Hardening of the embedded OSCAR: what ``test_local_security`` and ``test_local_limits`` leave
out, checked systematically.

The routes are enumerated from the application itself, so a route added later is covered (or
fails the allow-list of public routes) without anyone remembering to add a test.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from minio import Minio

from airflow_provider_oscar.local.api import create_app
from airflow_provider_oscar.local.cli import parse_args
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ui"),
    ("POST", "/run/{name}"),  # service token or OIDC bearer (test_local_security)
    ("POST", "/job/{name}"),
    ("POST", "/local/oidc/token"),  # the stand-in OIDC token endpoint: refresh token in the body
    ("POST", "/local/oidc/protocol/openid-connect/token"),  # the same at Keycloak's path
}
ODD_NAMES = [
    "..",
    "...",
    "%2e%2e",
    "UPPER",
    "under_score",
    "a.b",
    "-leading",
    "trailing-",
    "x" * 64,
    "n%C3%A4me",
    "a%20b",
    "a%00b",
    "a%2F..%2F..%2Fetc",
]


def routes(oscar: OscarLocal) -> list[tuple[str, str]]:
    """Every (method, path template) the embedded OSCAR answers."""
    assert oscar.cluster is not None
    app = create_app(oscar.cluster).app  # type: ignore[attr-defined]
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )


@pytest.fixture
def target(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """A service with a bucket and a finished job: what a request that slipped through could
    read, change or delete."""
    service = deploy(
        "echo done\n",
        output=[{"storage_provider": "minio.default", "path": "out"}],
    )
    job = f"{service['name']}-kept"
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201
    wait_until(
        lambda: (
            admin.get(f"/system/logs/{service['name']}").json()["jobs"][job]["status"]
            == "Succeeded"
        )
    )
    return {"service": service, "job": job, "bucket": service["name"]}


# loopback --------------------------------------------------------------------------------


def test_oscar_local_and_its_s3_store_listen_on_loopback_unless_told_otherwise(
    oscar: OscarLocal,
) -> None:
    assert parse_args([]).host == "127.0.0.1"
    assert OscarLocal().host == "127.0.0.1"
    assert len(oscar._sockets) == 2  # OSCAR's API and its MinIO
    assert {sock.getsockname()[0] for sock in oscar._sockets} == {"127.0.0.1"}
    assert httpx.URL(oscar.endpoint).host == "127.0.0.1"
    assert httpx.URL(oscar.s3.endpoint).host == "127.0.0.1"


# credentials on every route --------------------------------------------------------------


def test_only_the_known_public_routes_answer_without_admin_credentials(oscar: OscarLocal) -> None:
    guarded = ("/system", "/local")
    public = {(m, p) for m, p in routes(oscar) if not p.startswith(guarded)}
    public |= {(m, p) for m, p in routes(oscar) if p.startswith("/local/oidc/")}
    assert public == PUBLIC
    assert len(routes(oscar)) - len(public) >= 20  # the enumeration found the real routes


@pytest.mark.parametrize("credentials", ["none", "wrong password", "service token"])
def test_every_system_and_local_route_refuses_requests_without_admin_credentials(
    oscar: OscarLocal,
    admin: httpx.Client,
    target: dict[str, Any],
    credentials: str,
) -> None:
    service = target["service"]
    headers = {
        "none": {},
        "wrong password": {"Authorization": "Basic " + base64.b64encode(b"oscar:nope").decode()},
        "service token": {"Authorization": f"Bearer {service['token']}"},
    }[credentials]
    intruder = f"intruder-{uuid.uuid4().hex[:8]}"
    bodies: dict[str, Any] = {
        "/system/services": {"name": intruder, "image": "x", "script": "touch /tmp/owned\n"},
        "/system/buckets": {"bucket_name": intruder},
        "/system/buckets/{bucket}/presign": {"object_key": "k", "operation": "upload"},
        "/local/faults": {"kind": "error", "status": 500, "route": "/system/info"},
    }
    answered: dict[str, int] = {}
    checked = 0
    for method, template in routes(oscar):
        if (method, template) in PUBLIC:
            continue
        path = template.format(
            name=service["name"], job_name=target["job"], bucket=target["bucket"], user="someone"
        )
        response = httpx.request(
            method, f"{oscar.endpoint}{path}", headers=headers, json=bodies.get(template)
        )
        answered[f"{method} {template}"] = response.status_code
        checked += 1
    assert checked >= 20
    assert {route: code for route, code in answered.items() if code != 401} == {}
    # and nothing happened behind the refusals
    assert admin.get(f"/system/services/{service['name']}").status_code == 200
    assert target["job"] in admin.get(f"/system/logs/{service['name']}").json()["jobs"]
    assert admin.get(f"/system/buckets/{target['bucket']}").status_code == 200
    assert admin.get(f"/system/services/{intruder}").status_code == 404
    assert oscar.faults.active() == []


# odd names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ODD_NAMES)
def test_every_route_naming_a_service_refuses_an_odd_service_name(
    oscar: OscarLocal, admin: httpx.Client, target: dict[str, Any], name: str
) -> None:
    answered = {}
    for method, template in routes(oscar):
        if "{name}" not in template or (method, template) in PUBLIC:
            continue
        if template.startswith("/system/volumes/"):
            # a volume's name, not a service's: DeleteManagedVolume (v4.1.2
            # pkg/backends/resources/volume.go) takes a claim that is not there as deleted
            continue
        path = template.replace("{name}", name).format(job_name=target["job"])
        response = admin.request(method, path, json={})
        if template == "/system/metrics/{name}" and response.status_code == 200:
            # metrics.go (v4.1.0) computes any name's metrics for the admin: nothing else
            assert "start" in response.json()
            continue
        answered[f"{method} {template}"] = response.status_code
    assert len(answered) >= 8
    # 403 where OSCAR answers an unknown service so (deployment.go, logs.go delete of a job)
    refusals = (400, 403, 404)
    assert {route: code for route, code in answered.items() if code not in refusals} == {}
    assert admin.get(f"/system/services/{target['service']['name']}").status_code == 200


@pytest.mark.parametrize("name", ["..", "%2e%2e", "A", "ab", "a..b", "-ab", "a_b", "x" * 64])
def test_an_odd_bucket_name_reaches_no_bucket_on_any_route(
    oscar: OscarLocal, admin: httpx.Client, s3: Minio, name: str
) -> None:
    """The buckets handlers pass names to MinIO unchecked; MinIO refuses them or finds no
    such bucket, so every route answers an error and nothing is created."""
    answered = {}
    body = {"object_key": "k", "operation": "download"}
    for method, template in routes(oscar):
        if "{bucket}" in template:
            response = admin.request(method, template.replace("{bucket}", name), json=body)
            answered[f"{method} {template}"] = response.status_code
    decoded = httpx.URL(f"http://h/{name}").path.lstrip("/")
    for method in ("POST", "PUT"):
        response = admin.request(method, "/system/buckets", json={"bucket_name": decoded})
        answered[f"{method} /system/buckets"] = response.status_code
    assert len(answered) == 5
    assert {route: code for route, code in answered.items() if code < 400} == {}
    assert decoded not in [b.name for b in s3.list_buckets()]


def test_presigning_an_empty_object_key_answers_400(
    admin: httpx.Client, target: dict[str, Any]
) -> None:
    body = {"object_key": "/", "operation": "upload"}
    response = admin.post(f"/system/buckets/{target['bucket']}/presign", json=body)
    assert (response.status_code, response.text) == (400, "Object key cannot be empty")


@pytest.mark.parametrize("key", [".", "..", "./x", "a\x00b", "k" * 1025], ids=repr)
def test_an_odd_object_key_is_signed_but_refused_by_minio_when_used(
    admin: httpx.Client, target: dict[str, Any], s3: Minio, key: str
) -> None:
    """presign_bucket.go signs any key it can trim to something; MinIO refuses the odd ones
    (``IsValidObjectPrefix``, 1024 bytes at most) when the URL is used."""
    bucket = target["bucket"]
    before = sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))
    body = {"object_key": key, "operation": "upload"}
    signed = admin.post(f"/system/buckets/{bucket}/presign", json=body)
    assert signed.status_code == 200
    url = urlsplit(signed.json()["url"])
    connection = http.client.HTTPConnection(url.netloc)  # the path as signed, not normalised
    connection.request("PUT", f"{url.path}?{url.query}", body=b"odd")
    response = connection.getresponse()
    assert response.status == 400
    assert re.search(rb"<Code>(XMinioInvalidObjectName|KeyTooLongError)</Code>", response.read())
    after = sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))
    assert after == before


# hostile bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [10_001, 100_000])
def test_a_json_body_nested_deeper_than_go_allows_answers_400(
    admin: httpx.Client, depth: int
) -> None:
    """encoding/json stops at 10000 levels: ``exceeded max depth``, a 400 from ShouldBindJSON."""
    body = "[" * depth + "]" * depth
    response = admin.post("/system/services", content=body)
    assert (response.status_code, response.text) == (
        400,
        "The service specification is not valid: exceeded max depth",
    )


def test_a_json_body_nested_below_gos_limit_but_beyond_pythons_is_a_400_too(
    admin: httpx.Client,
) -> None:
    """Go decodes it (and refuses the array for ``labels``); Python's parser stops near 1000
    levels, so the embedded OSCAR refuses it with its own text (docs/fidelity.md)."""
    body = '{"name": "deep", "labels": ' + "[" * 9_000 + "]" * 9_000 + "}"
    response = admin.post("/system/services", content=body)
    assert response.status_code == 400
    assert response.text.startswith("The service specification is not valid: nesting too deep")


# the server's own file handling ----------------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A folder outside the embedded OSCAR's data directory, shaped like a job directory (an
    ``output`` folder with a file in it), with files worth keeping."""
    folder = tmp_path / "victim"
    (folder / "output").mkdir(parents=True)
    (folder / "keep.txt").write_text("precious")
    (folder / "output" / "private.txt").write_text("not an output")
    yield folder
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "keep.txt",
        "output",
        "output/private.txt",
    ]
    assert (folder / "output" / "private.txt").read_text() == "not an output"


# $HOME is the job directory: the script replaces it with a link to the victim folder.
SWAP_JOB_DIRECTORY = 'cd /\nrm -rf "$HOME"\nln -s "$VICTIM" "$HOME"\necho swapped\n'


def job_directories(oscar: OscarLocal) -> list[Path]:
    return list((oscar.data_dir / "jobs").iterdir())


def test_a_run_that_swaps_its_job_directory_for_a_link_neither_leaks_nor_deletes_through_it(
    oscar: OscarLocal, deploy: Callable[..., dict[str, Any]], victim: Path
) -> None:
    service = deploy(SWAP_JOB_DIRECTORY, environment={"variables": {"VICTIM": str(victim)}})
    response = httpx.post(
        f"{oscar.endpoint}/run/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 200
    assert "The script replaced its job directory: no outputs are collected" in response.text
    assert base64.b64encode(b"not an output").decode() not in response.text
    assert not [p for p in job_directories(oscar) if p.is_symlink()]


def test_a_job_that_swaps_its_job_directory_for_a_link_neither_uploads_nor_deletes_through_it(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict[str, Any]],
    victim: Path,
    s3: Minio,
) -> None:
    service = deploy(
        SWAP_JOB_DIRECTORY,
        environment={"variables": {"VICTIM": str(victim)}},
        output=[{"storage_provider": "minio.default", "path": "out"}],
    )
    job = f"{service['name']}-swap"
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201
    wait_until(
        lambda: (
            admin.get(f"/system/logs/{service['name']}").json()["jobs"][job]["status"]
            == "Succeeded"
        )
    )
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    assert "replaced its job directory" in log
    assert [o.object_name for o in s3.list_objects(service["name"], recursive=True)] == ["out/"]
    assert not [p for p in job_directories(oscar) if p.name.startswith(job)]


# time limits -----------------------------------------------------------------------------


def test_a_job_started_by_an_upload_is_killed_at_the_job_time_limit_too(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict[str, Any]],
    s3: Minio,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    monkeypatch.setattr(oscar.settings, "job_timeout", 0.5)
    service = deploy(
        "sleep 30\n",
        input=[{"storage_provider": "minio.default", "path": "in"}],
    )
    s3.put_object(service["name"], "in/slow.txt", io.BytesIO(b"x"), 1)

    def failed_job() -> str | None:
        jobs = admin.get(f"/system/logs/{service['name']}").json()["jobs"]
        return next((n for n, j in jobs.items() if j["status"] == "Failed"), None)

    job = wait_until(failed_job)
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    assert "exceeded the time limit of 0.5 s" in log
    assert json.dumps(admin.get(f"/system/logs/{service['name']}").json()).count('"Running"') == 0
