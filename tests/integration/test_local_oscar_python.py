"""oscar-python 2.2.0, the official client, drives each release through what that release serves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from oscar_python.client import Client

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until


@pytest.fixture
def client(release_oscar: OscarLocal) -> Client:
    return Client(
        {
            "cluster_id": "local",
            "endpoint": release_oscar.endpoint,
            "user": release_oscar.user,
            "password": release_oscar.password,
            "ssl": False,
        }
    )


@pytest.fixture
def service(client: Client) -> Iterator[str]:
    name = f"opy-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "image": "local/test", "script": "echo hello\n", "log_level": "CRITICAL"}
    assert client.create_service(spec).status_code == 201
    yield name
    client.remove_service(name)


def test_oscar_python_reads_the_cluster(release_oscar: OscarLocal, client: Client) -> None:
    assert client.get_cluster_info().json()["version"] == release_oscar.profile.version
    assert "minio_provider" in client.get_cluster_config().json()
    assert client.get_cluster_status().json()["cluster"]["nodes_count"] == 1
    assert client.health_check().text == "Ok"
    assert client.list_buckets().status_code == 200


def test_oscar_python_manages_a_service(client: Client, service: str) -> None:
    assert service in [s["name"] for s in client.list_services().json()]
    definition = client.get_service(service).json()
    definition["script"] = "echo changed\n"
    assert client.update_service(service, definition).status_code == 204
    assert client.get_service(service).json()["script"] == "echo changed\n"


def test_oscar_python_runs_and_submits(client: Client, service: str) -> None:
    assert client.run_service(service, input="hi").text == "hello\n\n"
    assert client.run_service(service, input="hi", async_call=True).status_code == 201
    listed = wait_until(
        lambda: [
            name
            for name, job in client.list_jobs(service).json()["jobs"].items()
            if job["status"] == "Succeeded"
        ]
    )
    assert client.get_job_logs(service, listed[0]).status_code == 200
    assert client.remove_job(service, listed[0]).status_code == 204
    assert client.remove_all_jobs(service).status_code == 204
    assert client.list_jobs(service).json() == {"jobs": {}}


def test_oscar_python_deployment_status_exists_from_4_0(
    release_oscar: OscarLocal, client: Client, service: str
) -> None:
    if release_oscar.profile.release >= (4, 0, 0):
        assert client.get_deployment_status(service).json()["state"] == "ready"
    else:
        with pytest.raises(requests.HTTPError, match="404"):
            client.get_deployment_status(service)
