"""The plugin's routes in the running API server: refused without a login, secret-free with one."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.ui.conftest import DAG_ID, ECHO_SERVICE, VIEWER, UiSession

# The session's Airflow starts in the first test that needs it (set-up budget: 3 minutes),
# and the results tests wait for the ensemble run.
pytestmark = pytest.mark.timeout(480)

ROUTES = ["/oscar/", "/oscar/results", "/oscar/api/clusters", "/oscar/api/results"]


@pytest.mark.parametrize("route", ROUTES)
def test_plugin_routes_refuse_requests_without_a_login(ui: UiSession, route: str) -> None:
    response = httpx.get(f"{ui.url}{route}", timeout=30)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


def test_plugin_routes_refuse_a_forged_token(ui: UiSession) -> None:
    forged = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    for headers, cookies in (({"Authorization": f"Bearer {forged}"}, {}), ({}, {"_token": forged})):
        response = httpx.get(
            f"{ui.url}/oscar/api/clusters", headers=headers, cookies=cookies, timeout=30
        )
        assert response.status_code in (401, 403), response.text
        assert "clusters" not in response.text


def test_a_browser_without_a_login_gets_a_page_that_says_so(ui: UiSession) -> None:
    html = {"Accept": "text/html"}
    response = httpx.get(f"{ui.url}/oscar/", headers=html, timeout=30)
    assert response.status_code == 401
    assert "Please log in" in response.text
    response = httpx.get(f"{ui.url}/oscar/api/clusters", headers=html, timeout=30)
    assert response.json() == {"detail": "Not authenticated"}


def test_the_job_logs_route_also_requires_a_login(ui: UiSession) -> None:
    path = f"/oscar/api/logs/oscar_default/{ECHO_SERVICE}/{quote(ui.echo_job)}"
    assert httpx.get(f"{ui.url}{path}", timeout=30).status_code == 401


def test_a_logged_in_user_sees_clusters_without_any_secret(ui: UiSession) -> None:
    headers = {"Authorization": f"Bearer {ui.airflow.token()}"}
    response = httpx.get(f"{ui.url}/oscar/api/clusters", headers=headers, timeout=60)
    assert response.status_code == 200
    clusters = {c["conn_id"]: c for c in response.json()["clusters"]}
    assert clusters["oscar_default"]["healthy"] is True
    assert clusters["oscar_default"]["version"] == "v4.1.2"
    assert clusters["oscar_unreachable"]["error"]
    services = {s["name"] for s in clusters["oscar_default"]["services"]}
    assert ECHO_SERVICE in services
    token = httpx.get(
        f"{ui.oscar.endpoint}/system/services/{ECHO_SERVICE}",
        auth=(ui.oscar.user, ui.oscar.password),
        timeout=30,
    ).json()["token"]
    for secret in (ui.oscar.password, "never-shown-secret", token, ui.oscar.s3.secret_key):
        assert secret not in response.text


def test_a_logged_in_user_reads_a_jobs_logs(ui: UiSession) -> None:
    headers = {"Authorization": f"Bearer {ui.airflow.token()}"}
    path = f"/oscar/api/logs/oscar_default/{ECHO_SERVICE}/{quote(ui.echo_job)}"
    response = httpx.get(f"{ui.url}{path}", headers=headers, timeout=60)
    assert response.status_code == 200
    assert "hello from the OSCAR page test" in response.text


def test_a_connection_that_is_not_oscar_has_no_logs(ui: UiSession) -> None:
    headers = {"Authorization": f"Bearer {ui.airflow.token()}"}
    response = httpx.get(
        f"{ui.url}/oscar/api/logs/no_such_connection/svc/job", headers=headers, timeout=30
    )
    assert response.status_code == 404


# the attack of the security review, through the API server ------------------------------------

# As sent on the wire (httpx leaves percent-encoded dots alone; uvicorn decodes them once).
ECHO_SCRIPT_LINE = "hello from the OSCAR page test"  # in the service's script
TRAVERSALS = ["%2e%2e/config", "%2E%2E/services", "%252e%252e/config", "svc/%2e%2e%3F", "svc/a%00"]


@pytest.mark.parametrize("route", ["/oscar/api/logs", "/oscar/logs"])
@pytest.mark.parametrize("tail", TRAVERSALS)
def test_the_log_routes_cannot_be_walked_to_another_oscar_route(
    ui: UiSession, route: str, tail: str
) -> None:
    headers = {"Authorization": f"Bearer {ui.airflow.token()}"}
    response = httpx.get(f"{ui.url}{route}/oscar_default/{tail}", headers=headers, timeout=60)
    assert response.status_code == 400, response.text
    assert "invalid" in response.text or "must consist of" in response.text
    token = httpx.get(
        f"{ui.oscar.endpoint}/system/services/{ECHO_SERVICE}",
        auth=(ui.oscar.user, ui.oscar.password),
        timeout=30,
    ).json()["token"]
    for secret in (ui.oscar.s3.secret_key, ui.oscar.password, token, ECHO_SCRIPT_LINE):
        assert secret not in response.text


# a viewer: every DAG, no connection ------------------------------------------------------------


def test_a_viewer_sees_no_cluster_and_no_job_logs(ui: UiSession) -> None:
    headers = {"Authorization": f"Bearer {ui.token(VIEWER)}"}
    response = httpx.get(f"{ui.url}/oscar/api/clusters", headers=headers, timeout=60)
    assert response.status_code == 200
    assert response.json() == {"clusters": []}
    path = f"/oscar/api/logs/oscar_default/{ECHO_SERVICE}/{quote(ui.echo_job)}"
    response = httpx.get(f"{ui.url}{path}", headers=headers, timeout=60)
    assert response.status_code == 403
    assert "hello" not in response.text


def test_a_viewer_sees_the_ensemble_results_of_the_dags(ui: UiSession) -> None:
    ui.finished_run()
    headers = {"Authorization": f"Bearer {ui.token(VIEWER)}"}
    response = httpx.get(f"{ui.url}/oscar/api/results", headers=headers, timeout=60)
    assert response.status_code == 200
    assert DAG_ID in {d["dag_id"] for d in response.json()["dags"]}
    run = httpx.get(
        f"{ui.url}/oscar/api/results/{DAG_ID}/{quote(ui.run_id, safe='')}",
        headers=headers,
        timeout=60,
    )
    assert run.status_code == 200
    assert run.json()["tasks"]
