"""Shared fixtures: one Airflow home per test session, one embedded OSCAR per release.

``oscar`` is the session's default OSCAR (4.1); ``oscar_at("3.7")`` starts (once) and returns
the one playing another release; a test taking ``release_oscar`` runs once per release, so CI
runs the whole suite on 4.1 and the version-sensitive tests on 3.6, 3.7 and 4.0 too.
"""

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

from airflow_provider_oscar.local.profiles import DEFAULT_VERSION, PROFILES  # noqa: E402
from airflow_provider_oscar.local.server import OscarLocal  # noqa: E402

RELEASES = tuple(PROFILES)  # "3.6", "3.7", "4.0", "4.1"


@pytest.fixture(scope="session")
def oscar_at() -> Iterator[Callable[[str], OscarLocal]]:
    """``oscar_at("3.7")``: the session's embedded OSCAR playing that release (started once)."""
    servers: dict[str, OscarLocal] = {}

    def at(version: str) -> OscarLocal:
        if version not in servers:
            # the other releases share the default one's S3 store (names are unique)
            s3 = at(DEFAULT_VERSION).s3 if version != DEFAULT_VERSION else None
            servers[version] = OscarLocal(oscar_version=version, s3=s3).start()
        return servers[version]

    yield at
    for server in reversed(servers.values()):  # the default one, owning the S3 store, last
        server.stop()


@pytest.fixture(scope="session")
def oscar(oscar_at: Callable[[str], OscarLocal]) -> OscarLocal:
    """The session's default embedded OSCAR (the latest release) on a free loopback port."""
    return oscar_at(DEFAULT_VERSION)


@pytest.fixture(params=RELEASES, ids=lambda version: f"oscar{version}")
def release_oscar(
    request: pytest.FixtureRequest, oscar_at: Callable[[str], OscarLocal]
) -> Iterator[OscarLocal]:
    """The test runs once against each release's embedded OSCAR."""
    server = oscar_at(request.param)
    yield server
    server.faults.clear()


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


def _deployer(admin: httpx.Client) -> Iterator[Callable[..., dict]]:
    created: list[str] = []

    def _deploy(script: str, **fields: Any) -> dict[str, Any]:
        name = fields.pop("name", None) or f"svc-{uuid.uuid4().hex[:8]}"
        body = {"name": name, "image": "local/test", "script": script, **fields}
        response = admin.post("/system/services", json=body)
        assert response.status_code == 201, response.text
        created.append(name)
        return admin.get(f"/system/services/{name}").json()

    yield _deploy
    for name in created:
        admin.delete(f"/system/services/{name}")


@pytest.fixture
def deploy(admin: httpx.Client) -> Iterator[Callable[..., dict]]:
    """Create a service from a script (deleted after the test); returns its definition."""
    yield from _deployer(admin)


@pytest.fixture
def release_admin(release_oscar: OscarLocal) -> Iterator[httpx.Client]:
    """The admin's client of ``release_oscar``."""
    auth = (release_oscar.user, release_oscar.password)
    with httpx.Client(base_url=release_oscar.endpoint, auth=auth) as client:
        yield client


@pytest.fixture
def release_deploy(release_admin: httpx.Client) -> Iterator[Callable[..., dict]]:
    """``deploy`` on ``release_oscar``."""
    yield from _deployer(release_admin)


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
