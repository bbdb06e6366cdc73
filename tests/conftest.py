"""Shared fixtures: one Airflow home and one embedded OSCAR per test session."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
    }
)

import httpx  # noqa: E402
from minio import Minio  # noqa: E402

from airflow_provider_oscar.local.server import OscarLocal  # noqa: E402


@pytest.fixture(scope="session")
def oscar() -> Iterator[OscarLocal]:
    """The session's embedded OSCAR on a free loopback port."""
    with OscarLocal() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "oscar" in request.fixturenames:
        request.getfixturevalue("oscar").faults.clear()


@pytest.fixture
def admin(oscar: OscarLocal) -> Iterator[httpx.Client]:
    """An httpx client with the admin's Basic credentials."""
    with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as client:
        yield client


@pytest.fixture
def s3(oscar: OscarLocal) -> Minio:
    """A MinIO client on the embedded OSCAR's S3 endpoint."""
    settings = oscar.s3
    return Minio(
        settings.endpoint.split("://", 1)[1],
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=False,
    )


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Service names unique within the session's shared OSCAR."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def deploy(admin: httpx.Client, unique_name: Callable[[str], str]) -> Iterator[Callable[..., dict]]:
    """Create a service from a script (deleted after the test); returns its definition."""
    created: list[str] = []

    def _deploy(script: str, **fields: Any) -> dict[str, Any]:
        name = fields.pop("name", None) or unique_name("svc")
        body = {"name": name, "image": "local/test", "script": script, **fields}
        response = admin.post("/system/services", json=body)
        assert response.status_code == 201, response.text
        created.append(name)
        return admin.get(f"/system/services/{name}").json()

    yield _deploy
    for name in created:
        admin.delete(f"/system/services/{name}")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's Airflow metadata database (SQLite), migrated once."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def oscar_default(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarLocal:
    """``oscar_default`` points at the session's embedded OSCAR."""
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())
    return oscar
