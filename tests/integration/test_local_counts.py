"""``GET /local/counts``: what the embedded OSCAR executed, per service and input (admin only)."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from minio import Minio

from airflow_provider_oscar.local.counts import input_digest
from airflow_provider_oscar.local.server import OscarLocal

ECHO = '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n'


def body(text: str) -> bytes:
    """The request body a client sends for ``text`` (base64, as the hook encodes it)."""
    return base64.b64encode(text.encode())


def counts(admin: httpx.Client) -> dict[str, Any]:
    response = admin.get("/local/counts")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_runs_and_jobs_are_counted_per_service_and_input(
    admin: httpx.Client, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(ECHO, log_level="CRITICAL")
    name, token = service["name"], service["token"]
    invoke = httpx.Client(base_url=admin.base_url, headers={"Authorization": f"Bearer {token}"})
    for text in ("a", "a", "b"):
        assert invoke.post(f"/run/{name}", content=body(text)).status_code == 200
    assert invoke.post(f"/job/{name}", content=body("a")).status_code == 201
    assert invoke.post(f"/run/{name}-missing", content=body("a")).status_code in (401, 404)

    found = counts(admin)
    assert found["runs"][name] == {input_digest(body("a")): 2, input_digest(body("b")): 1}
    assert found["jobs"][name] == {input_digest(body("a")): 1}
    assert found["requests"][f"POST /run/{name}"] == 3
    assert found["requests"][f"POST /job/{name}"] == 1
    assert f"{name}-missing" not in found["runs"]


def test_a_bucket_upload_counts_as_a_job_of_its_service(
    admin: httpx.Client, deploy: Callable[..., dict[str, Any]], s3: Minio
) -> None:
    service = deploy(
        ECHO,
        log_level="CRITICAL",
        input=[{"storage_provider": "minio.default", "path": "count-in/in"}],
    )
    name = service["name"]
    s3.put_object("count-in", "in/x.txt", io.BytesIO(b"x"), 1)
    deadline = time.monotonic() + 20
    while not counts(admin)["jobs"].get(name):
        assert time.monotonic() < deadline, "the upload started no job"
        time.sleep(0.2)
    assert sum(counts(admin)["jobs"][name].values()) == 1


def test_only_the_admin_may_read_the_counts(oscar: OscarLocal) -> None:
    oscar.settings.bearer_tokens["counts-user-token"] = "someone@example.org"
    try:
        user = httpx.get(
            f"{oscar.endpoint}/local/counts",
            headers={"Authorization": "Bearer counts-user-token"},
        )
        anonymous = httpx.get(f"{oscar.endpoint}/local/counts")
    finally:
        del oscar.settings.bearer_tokens["counts-user-token"]
    assert user.status_code == 403
    assert anonymous.status_code == 401


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_counts_cannot_be_changed(admin: httpx.Client, method: str) -> None:
    assert admin.request(method, "/local/counts").status_code in (404, 405)
