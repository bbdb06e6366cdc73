"""Each of the plugin's permission checks, tried by a user who lacks exactly that permission.

The connection check hides a cluster (list, page and job logs); the DAG-run and XCom checks each
hide a DAG's ensemble results (list, run page and its JSON). A second DAG, connection or job the
user may read shows the page works for them: only the withheld one is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until
from tests.ui.plugin_client import Withheld, plugin_client

ALLOWED, FORBIDDEN = "oscar_perm_allowed", "oscar_perm_forbidden"
DAGS = ("oscar_perm_alpha", "oscar_perm_beta")
SCRIPT = 'echo "log line of the permission test"\n'


# One ensemble task with fixed results per DAG: no cluster needed to have a report.
DAG_FILE = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator

def prediction(labels, probabilities):
    return {"status": "ok", "labels": labels, "probabilities": probabilities}

for dag_id in %r:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        OscarEnsembleOperator(
            task_id="aggregate",
            results=[
                {"service": "a", "input": "x1", "prediction": prediction(["cat"], [0.9])},
                {"service": "b", "input": "x1", "prediction": prediction(["cat"], [0.7])},
            ],
        )
    globals()[dag_id] = dag
"""


@pytest.fixture(scope="module")
def ensemble_runs(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One finished run of a one-task ensemble DAG each, by DAG id: ``{dag_id: run_id}``.

    ``dag.test()`` runs DAGs of the configured DAG bundle: the folder holding them is the
    DAGs folder meanwhile.
    """
    folder = tmp_path_factory.mktemp("permission-dags")
    (folder / "ensembles.py").write_text(DAG_FILE % (DAGS,))
    runs = {}
    from airflow import settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "DAGS_FOLDER", str(folder))
        bag = DagBag(str(folder))
        assert not bag.import_errors, bag.import_errors
        for dag_id in DAGS:
            run = bag.get_dag(dag_id).test()
            assert run.state == "success"
            runs[dag_id] = run.run_id
    return runs


@pytest.fixture
def clusters(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarLocal:
    """Two ``oscar`` connections to the session's embedded OSCAR."""
    for conn_id in (ALLOWED, FORBIDDEN):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", oscar.connection_json())
    return oscar


@pytest.fixture
def finished_job(
    admin: httpx.Client, deploy: Callable[..., dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    """``(service, job)`` of a job that ran and logged a line."""
    service = deploy(SCRIPT)
    name, job = service["name"], f"{service['name']}-perm-1"
    response = httpx.post(
        f"{admin.base_url}/job/{name}",
        content=b"eA==",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text
    wait_until(
        lambda: (
            admin.get(f"/system/logs/{name}").json()["jobs"].get(job, {}).get("status")
            in ("Succeeded", "Failed")
        )
    )
    yield name, job


def _cluster_ids(client: Any) -> set[str]:
    response = client.get("/api/clusters")
    assert response.status_code == 200, response.text
    return {c["conn_id"] for c in response.json()["clusters"]} & {ALLOWED, FORBIDDEN}


# connections ------------------------------------------------------------------------------


def test_a_cluster_whose_connection_the_user_may_not_read_is_not_listed(
    airflow_db: None, clusters: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    with plugin_client(monkeypatch, Withheld(connections={FORBIDDEN})) as (client, _):
        assert _cluster_ids(client) == {ALLOWED}
        page = client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert ALLOWED in page.text and FORBIDDEN not in page.text
    with plugin_client(monkeypatch) as (client, _):
        assert _cluster_ids(client) == {ALLOWED, FORBIDDEN}


@pytest.mark.parametrize("route", ["/api/logs", "/logs"])
def test_job_logs_need_the_right_to_read_the_connection(
    airflow_db: None,
    clusters: OscarLocal,
    finished_job: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    service, job = finished_job
    assert clusters.cluster is not None
    counts = request_counts(clusters.cluster)
    with plugin_client(monkeypatch, Withheld(connections={FORBIDDEN})) as (client, _):
        before = counts.copy()
        refused = client.get(f"{route}/{FORBIDDEN}/{service}/{job}")
        assert refused.status_code == 403
        assert FORBIDDEN in refused.text and "log line" not in refused.text
        assert counts == before  # the cluster was not asked
        allowed = client.get(f"{route}/{ALLOWED}/{service}/{job}")
        assert allowed.status_code == 200
        assert "log line of the permission test" in allowed.text


# DAG runs and XComs -----------------------------------------------------------------------


@pytest.mark.parametrize("entity", [DagAccessEntity.RUN, DagAccessEntity.XCOM])
def test_ensemble_results_need_the_right_to_read_the_dags_runs_and_xcoms(
    ensemble_runs: dict[str, str], monkeypatch: pytest.MonkeyPatch, entity: DagAccessEntity
) -> None:
    hidden, shown = DAGS
    with plugin_client(monkeypatch, Withheld(dags={(entity, hidden)})) as (client, manager):
        listed = client.get("/api/results").json()["dags"]
        assert {d["dag_id"] for d in listed} & set(DAGS) == {shown}
        page = client.get("/results", headers={"Accept": "text/html"})
        assert shown in page.text and hidden not in page.text
        for prefix in ("/api/results", "/results"):
            refused = client.get(f"{prefix}/{hidden}/{ensemble_runs[hidden]}")
            assert refused.status_code == 403, refused.text
            assert "cat" not in refused.text
            allowed = client.get(f"{prefix}/{shown}/{ensemble_runs[shown]}")
            assert allowed.status_code == 200, allowed.text
            assert "cat" in allowed.text
        assert (str(entity), hidden) in manager.asked
    run = client.get(f"/api/results/{shown}/{ensemble_runs[shown]}").json()
    assert json.dumps(run).count("cat") >= 1
