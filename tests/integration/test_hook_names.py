"""Names the hooks put into URL paths cannot reach another OSCAR route.

Before any request, each service, job and bucket name is checked against OSCAR's rule and each
object key for ``.``/``..`` segments and NUL; the embedded OSCAR's request counts prove nothing
was sent. Without the checks, ``get_job_logs("..", "config")`` read ``/system/config``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_names_test"
# Each would leave its path segment: climb (also percent-encoded, as a route parameter
# arrives), add a segment, start a query or a fragment, end a C string, or end a line.
HOSTILE = ["..", "%2e%2e", "../config", "a/b", "a?b", "a#b", "a\x00b", "svc\n"]
SERVICE_CALLS: dict[str, Callable[[OscarHook, str], Any]] = {
    "get_service": lambda hook, name: hook.get_service(name),
    "delete_service": lambda hook, name: hook.delete_service(name),
    "get_deployment": lambda hook, name: hook.get_deployment(name),
    "get_deployment_logs": lambda hook, name: hook.get_deployment_logs(name),
    "get_service_token": lambda hook, name: hook.get_service_token(name),
    "run_service": lambda hook, name: hook.run_service(name, "x"),
    "submit_job": lambda hook, name: hook.submit_job(name, "x"),
    "list_jobs": lambda hook, name: hook.list_jobs(name),
    "delete_jobs": lambda hook, name: hook.delete_jobs(name),
    "get_job_logs": lambda hook, name: hook.get_job_logs(name, "job-1"),
    "delete_job": lambda hook, name: hook.delete_job(name, "job-1"),
    "alist_jobs": lambda hook, name: asyncio.run(hook.alist_jobs(name)),
}


@pytest.fixture
def hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", oscar.connection_json())
    return OscarStorageHook(CONN_ID)


@pytest.fixture
def sent(oscar: OscarLocal) -> Callable[[], Counter[str]]:
    """The requests the embedded OSCAR has received so far, by ``"METHOD /path"``."""
    assert oscar.cluster is not None
    counts = request_counts(oscar.cluster)
    return lambda: counts.copy()


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("call", SERVICE_CALLS)
def test_a_service_name_that_would_leave_its_segment_is_refused_before_any_request(
    hook: OscarHook, sent: Callable[[], Counter[str]], call: str, name: str
) -> None:
    before = sent()
    with pytest.raises(OscarClientError, match="service name") as caught:
        SERVICE_CALLS[call](hook, name)
    assert repr(name) in str(caught.value)
    assert sent() == before


@pytest.mark.parametrize("job", HOSTILE)
@pytest.mark.parametrize("call", ["get_job_logs", "delete_job", "adelete_job", "submit_job"])
def test_a_job_name_that_would_leave_its_segment_is_refused_before_any_request(
    hook: OscarHook,
    sent: Callable[[], Counter[str]],
    deploy: Callable[..., dict[str, Any]],
    call: str,
    job: str,
) -> None:
    service = str(deploy("#!/bin/sh\n")["name"])
    before = sent()
    with pytest.raises(OscarClientError, match="job name") as caught:
        if call == "submit_job":
            hook.submit_job(service, "x", job_name=job)
        elif call == "adelete_job":
            asyncio.run(hook.adelete_job(service, job))
        else:
            getattr(hook, call)(service, job)
    assert repr(job) in str(caught.value)
    assert caught.value.service == service
    assert sent() == before


def test_the_logs_of_a_job_named_dot_dot_are_not_the_clusters_config(hook: OscarHook) -> None:
    # The request the UI's log route made for GET /oscar/api/logs/<conn>/%2e%2e/config.
    with pytest.raises(OscarClientError, match=r"service name '\.\.'"):
        hook.get_job_logs("..", "config")


def test_job_names_as_oscar_makes_them_are_accepted(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    long_service = "a" * 39
    service = str(deploy("#!/bin/sh\n", name=long_service)["name"])
    job = f"{long_service[:16]}-3f2a9c1e-8b7d-4e6f-a5b4-c3d2e1f0a9b8"  # pkg/handlers/job.go
    assert hook.get_job_logs(service, job) is None  # no such job: no pod, no logs
    assert hook.delete_job(service, "x" * 63) is False


@pytest.mark.parametrize(
    ("bucket", "key"),
    [("..", "k"), ("a/b", "k"), ("Bucket", "k"), ("b?x", "k"), ("bu", "k"), ("bucket", "../x")],
)
def test_presign_refuses_a_bucket_or_key_that_would_leave_its_place(
    hook: OscarHook, sent: Callable[[], Counter[str]], bucket: str, key: str
) -> None:
    before = sent()
    with pytest.raises(OscarClientError, match=r"invalid (bucket name|object key)"):
        hook.presign(bucket, key, operation="download")
    assert sent() == before


@pytest.mark.parametrize(
    "path",
    ["../x/y", "bucket/../other/secret", "bucket/a/./b", "bucket/..", "Bucket/k", "b/k\x00"],
)
def test_storage_paths_that_would_leave_their_bucket_are_refused_before_any_request(
    hook: OscarStorageHook, sent: Callable[[], Counter[str]], path: str
) -> None:
    before = sent()
    for call in (
        lambda: hook.download_bytes(path),
        lambda: hook.upload_bytes(path, b"x"),
        lambda: hook.list_objects(path),
        lambda: asyncio.run(hook.astat(path)),
        lambda: asyncio.run(hook.aput_bytes(path, b"x")),
    ):
        with pytest.raises(OscarClientError, match=r"invalid (bucket name|object key)") as caught:
            call()
        assert repr(path) in str(caught.value)
    assert sent() == before


def test_keys_with_query_and_fragment_characters_stay_one_object(
    hook: OscarStorageHook, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("names")
    hook.upload_bytes(f"{bucket}/seed", b"", create_bucket=True)
    key = "in/odd?name#1 %2e%2e.json"
    assert asyncio.run(hook.aput_bytes(f"{bucket}/{key}", b"{}")) is not None
    listed = {o.key for o in hook.list_objects(f"{bucket}/in/")}
    assert listed == {key}
    found = asyncio.run(hook.aget_object(f"{bucket}/{key}"))
    assert found is not None and found[0] == b"{}"
