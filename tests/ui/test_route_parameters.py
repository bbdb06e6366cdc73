"""Route parameters of the plugin cannot reach another OSCAR route.

Each route that takes a name gets ``..`` (percent-encoded, as a browser or curl sends it past
its own normalisation), ``/``, ``?``, ``#`` and NUL in each of its parameters. The answer is a
400 naming the parameter (404 when the decoded ``/`` no longer matches the route), and the
embedded OSCAR received nothing. Before the checks, ``/api/logs/<conn>/%2e%2e/config`` answered
``/system/config`` with the MinIO secret key.
"""

from __future__ import annotations

import pytest

from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal
from tests.ui.plugin_client import plugin_client

CONN = "oscar_route_test"
# As they appear in the URL; the app sees them decoded. (Starlette's test client decodes twice,
# so double encoding is tried against the API server, in test_api.py.)
HOSTILE = {
    "dot-dot": "%2e%2e",
    "dot-dot upper": "%2E%2E",
    "slash": "a%2Fb",
    "question mark": "a%3Fpage%3D1",
    "hash": "a%23b",
    "NUL": "a%00b",
    "newline": "a%0Ab",
}
LOG_ROUTES = ["/api/logs/{conn}/{service}/{job}", "/logs/{conn}/{service}/{job}"]
RESULT_ROUTES = ["/api/results/{dag}/{run}", "/results/{dag}/{run}"]


@pytest.fixture
def connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarLocal:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", oscar.connection_json())
    return oscar


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("where", ["conn", "service", "job"])
@pytest.mark.parametrize("route", LOG_ROUTES)
def test_log_route_parameters_cannot_reach_another_oscar_route(
    airflow_db: None,
    connection: OscarLocal,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    where: str,
    kind: str,
) -> None:
    params = {"conn": CONN, "service": "svc", "job": "svc-job", where: HOSTILE[kind]}
    if where == "job":
        params["job"] = f"config{HOSTILE[kind]}"
    assert connection.cluster is not None
    counts = request_counts(connection.cluster)
    before = counts.copy()
    with plugin_client(monkeypatch) as (client, manager):
        response = client.get(route.format(**params))
    assert counts == before, f"OSCAR received {counts - before}"
    assert connection.s3.secret_key not in response.text
    if kind == "slash":  # the decoded '/' makes another path, which no route matches
        assert response.status_code == 404
    elif where == "conn" and kind in ("dot-dot", "dot-dot upper", "hash"):
        # Airflow allows '.' and '#' in connection ids (never put into an OSCAR URL)
        assert response.status_code == 404
        assert "No OSCAR connection" in response.text
    else:
        assert response.status_code == 400, response.text
        named = {"conn": "connection id", "service": "service name", "job": "job name"}[where]
        assert f"invalid {named}" in response.text or f"{named} '" in response.text
        assert manager.asked == []  # refused before any permission or cluster is asked


def test_the_clusters_config_is_not_one_dot_dot_away(
    airflow_db: None, connection: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    with plugin_client(monkeypatch) as (client, _):
        response = client.get(f"/api/logs/{CONN}/%2e%2e/config")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "service name '..' must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character"
    }


# Result routes only read the metadata DB (by bound parameters); their ids are still checked.
# Dots, '?' and '#' may be in a run id, and '..' is a valid DAG id: such runs do not exist.
RESULT_STATUS = {
    "dag": {"dot-dot": 404, "dot-dot upper": 404, "slash": 404},
    "run": {k: 404 for k in HOSTILE if k not in ("NUL", "newline")},
}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("where", ["dag", "run"])
@pytest.mark.parametrize("route", RESULT_ROUTES)
def test_result_route_parameters_are_checked(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, route: str, where: str, kind: str
) -> None:
    params = {"dag": "some_dag", "run": "manual__2026-01-01T00:00:00+00:00"}
    params[where] = HOSTILE[kind]
    with plugin_client(monkeypatch) as (client, manager):
        response = client.get(route.format(**params))
    expected = RESULT_STATUS[where].get(kind, 400)
    assert response.status_code == expected, response.text
    if expected == 400:
        assert {"dag": "invalid DAG id", "run": "invalid run id"}[where] in response.text
        assert manager.asked == []
