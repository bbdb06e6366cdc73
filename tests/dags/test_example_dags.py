"""The example DAGs load, and run end to end on the embedded OSCAR with ``dag.test()``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from airflow_provider_oscar.hooks.storage import OscarStorageHook

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> DagBag:
    return DagBag(str(EXAMPLES))


def test_every_example_dag_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids, "no example DAG was found"
    for dag_id in dagbag.dag_ids:
        assert dagbag.get_dag(dag_id).tasks, f"{dag_id} has no tasks"


def test_plant_ensemble_cross_validates_every_specimen_with_all_four_models(
    dagbag: DagBag, airflow_db: None, oscar_default: object
) -> None:
    from scripts.demo import review_timeouts

    dag = dagbag.get_dag("oscar_plant_ensemble")
    with review_timeouts():  # nobody answers the review: it times out after a second
        run = dag.test(run_conf={"review_timeout_seconds": 1})
    assert run.state == "success"
    key = f"plants-reports/oscar_plant_ensemble/{run.run_id.replace(':', '_')}.json"
    report = json.loads(OscarStorageHook().download_bytes(key))
    truth = report["truth"]
    assert len(report["inputs"]) == len(truth) == 150
    assert report["models"] == [
        "plants-sepal",
        "plants-petal-length",
        "plants-petal-width",
        "plants-lengths",
    ]
    assert all(not item["missing_models"] for item in report["inputs"])
    right = sum(item["winner"] == truth[item["input"]] for item in report["inputs"])
    assert report["accuracy"]["ensemble"] == pytest.approx(right / 150)
    models = report["accuracy"]["models"]
    assert report["accuracy"]["ensemble"] >= sum(models.values()) / len(models)
    doubts = {item["input"] for item in report["inputs"] if item["abstained"]}
    assert report["reviews"]["timed_out"] is True
    assert report["reviews"]["reviews"] == {
        i: {"label": None, "status": "abstained", "by": None, "at": None} for i in doubts
    }


def test_service_lifecycle_runs_every_operator_and_sensor_and_cleans_up(
    dagbag: DagBag, airflow_db: None, oscar_default: object
) -> None:
    from airflow_provider_oscar.hooks.oscar import OscarHook

    run = dagbag.get_dag("oscar_service_lifecycle").test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}
    names = {service.name for service in OscarHook().list_services()}
    assert not names & {"cowsay", "sleep"}
