"""The cluster page's access, federation and metrics columns: collected from the embedded OSCAR
over HTTP (4.1 reports metrics, 3.7 does not), rendered escaped, and hidden from viewers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.fdl import parse_service
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.plugins.clusters import (
    ConnectionRef,
    _access,
    collect_cluster,
    service_view,
)
from tests.integration.system_hooks import counted

SCRIPT = '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n'


@pytest.fixture
def page_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[OscarLocal], ConnectionRef]:
    def conn(server: OscarLocal) -> ConnectionRef:
        conn_id = f"oscar_page_{uuid.uuid4().hex[:8]}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", server.connection_json())
        return ConnectionRef(conn_id, "environment")

    return conn


@pytest.fixture
def service_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    made: list[tuple[OscarHook, str]] = []

    def make(server: OscarLocal, **fields: Any) -> str:
        monkeypatch.setenv("AIRFLOW_CONN_OSCAR_PAGE_ADMIN", server.connection_json())
        hook = OscarHook("oscar_page_admin")
        name = f"page-{uuid.uuid4().hex[:8]}"
        hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT, **fields})
        hook.run_service(name, "counted")
        made.append((hook, name))
        return name

    yield make
    for hook, name in made:
        hook.delete_service(name)


def _row(view: dict[str, Any], name: str) -> dict[str, Any]:
    assert view["error"] is None and view["services_error"] is None, view
    return next(s for s in view["services"] if s["name"] == name)


def test_a_service_shows_its_visibility_mount_and_metrics(
    oscar: OscarLocal,
    page_conn: Callable[[OscarLocal], ConnectionRef],
    service_on: Callable[..., str],
) -> None:
    bucket = f"page-mnt-{uuid.uuid4().hex[:6]}"
    name = service_on(
        oscar,
        visibility="public",
        isolation_level="SERVICE",
        mount={"storage_provider": "minio.default", "path": f"{bucket}/models"},
    )
    row = _row(collect_cluster(page_conn(oscar)), name)
    assert (row["visibility"], row["allowed_users"]) == ("public", [])
    assert row["mount"] == f"minio.default:{bucket}/models"
    assert (row["federation_topology"], row["federation_members"]) == (None, [])
    assert row["metrics_note"] is None
    assert row["metrics"]["requests-sync-per-service"].split()[0] == "1"  # the one run


def test_a_release_without_metrics_says_not_reported_without_asking(
    oscar_at: Callable[[str], OscarLocal],
    page_conn: Callable[[OscarLocal], ConnectionRef],
    service_on: Callable[..., str],
) -> None:
    server = oscar_at("3.7")
    name = service_on(server, visibility="restricted", allowed_users=["alice"])
    seen = counted(server)
    row = _row(collect_cluster(page_conn(server)), name)
    assert (row["visibility"], row["allowed_users"]) == ("restricted", ["alice"])
    assert row["metrics"] is None
    assert row["metrics_note"] == "not reported (OSCAR v3.7.1 has no metrics)"
    assert not [k for k in seen() if "/system/metrics" in k]


def test_federation_members_are_shown_without_credentials() -> None:
    service = parse_service(
        {
            "name": "fed",
            "federation": {
                "topology": "star",
                "members": [
                    {"type": "oscar", "cluster_id": "egi", "service_name": "fed-r", "priority": 2},
                    {"type": "endpoint", "url": "https://u:secret@h.example/job", "priority": 9},
                ],
            },
        }
    )
    shown = _access(service)
    assert shown["federation_topology"] == "star"
    assert [
        (m["service_name"], m["cluster_id"], m["priority"]) for m in shown["federation_members"]
    ] == [
        ("fed-r", "egi", 2),
        ("", "", 9),
    ]
    assert "secret" not in json.dumps(shown)


def test_the_columns_render_escaped() -> None:
    from airflow_provider_oscar.plugins.app import templates

    definition = {"name": "s", "visibility": "restricted", "allowed_users": ["<b>x</b>"]}
    service = service_view(parse_service(definition), "not reported (OSCAR v3.7.1 has no metrics)")
    cluster = {
        "conn_id": "c",
        "source": "environment",
        "description": "",
        "endpoint": "http://h",
        "cluster_id": None,
        "auth": "basic",
        "healthy": True,
        "version": "v3.7.1",
        "info": {"kubernetes_version": "v1.30", "serverless_backend": None},
        "capacity": None,
        "status_error": None,
        "services": [service],
        "services_error": None,
        "error": None,
        "elapsed_ms": 1,
    }
    html = (
        templates()
        .get_template("clusters.html")
        .render(base="/oscar", airflow_base="", tab="clusters", clusters=[cluster])
    )
    assert "<b>x</b>" not in html and "restricted: &lt;b&gt;x&lt;/b&gt;" in html
    assert "not reported (OSCAR v3.7.1 has no metrics)" in html


def test_a_viewer_gets_no_cluster_and_so_no_service_access_or_metrics(ui: Any) -> None:
    from tests.ui.conftest import ECHO_SERVICE, VIEWER

    admin = {"Authorization": f"Bearer {ui.airflow.token()}"}
    clusters = httpx.get(f"{ui.url}/oscar/api/clusters", headers=admin, timeout=60).json()
    default = next(c for c in clusters["clusters"] if c["conn_id"] == "oscar_default")
    echo = next(s for s in default["services"] if s["name"] == ECHO_SERVICE)
    assert echo["visibility"] and "metrics" in echo
    viewer = {"Authorization": f"Bearer {ui.token(VIEWER)}"}
    response = httpx.get(f"{ui.url}/oscar/api/clusters", headers=viewer, timeout=60)
    assert response.json() == {"clusters": []}
