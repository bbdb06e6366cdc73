"""Every example DAG runs to success on the production stack, through the real scheduler."""

from __future__ import annotations

import json

import pytest

from tests.stack.drills import ENSEMBLE, LIFECYCLE, Drills
from tests.stack.examples import (
    DIGEST,
    IMAGES,
    MANUAL,
    ON_UPLOAD,
    SUBSET,
    Examples,
    report_of,
)
from tests.stack.session import StackSession

BUNDLE = "oscar-examples"


def test_the_examples_parse_without_errors(stack: StackSession) -> None:
    assert stack.airflow.import_errors() == {}


def test_every_example_dag_has_a_run_here(
    stack: StackSession, drills: Drills, examples: Examples
) -> None:
    dags = stack.airflow.get("/dags", limit=100)["dags"]
    shipped = {d["dag_id"] for d in dags if d.get("bundle_name") == BUNDLE}
    covered = set(examples.runs) | {LIFECYCLE, ENSEMBLE}
    assert shipped == covered, f"examples without a stack run: {sorted(shipped - covered)}"


@pytest.mark.parametrize("dag_id", [*MANUAL, ON_UPLOAD, DIGEST])
def test_the_example_run_succeeds(examples: Examples, dag_id: str) -> None:
    assert examples.states.get(dag_id) == "success", examples


def test_the_yaml_ensemble_agrees_on_its_inputs(stack: StackSession, examples: Examples) -> None:
    report = report_of(
        stack, "oscar_plant_ensemble_yaml", examples.runs["oscar_plant_ensemble_yaml"]
    )
    assert sorted(item["input"] for item in report["inputs"]) == SUBSET
    assert all(not item["missing_models"] for item in report["inputs"])


def test_two_clusters_name_their_models_by_each_connections_cluster_id(
    stack: StackSession, examples: Examples
) -> None:
    dag_id = "oscar_plant_ensemble_two_clusters"
    report = report_of(stack, dag_id, examples.runs[dag_id])
    assert {model.split("/")[0] for model in report["models"]} == {"alpha", "beta"}
    assert len(report["models"]) == 6
    assert sorted(item["input"] for item in report["inputs"]) == SUBSET


def test_the_daily_run_writes_a_result_next_to_each_input(
    stack: StackSession, examples: Examples
) -> None:
    s3 = stack.s3()
    for name in SUBSET:
        result = json.loads(
            s3.get_object("plants-inbox", f"specimens/{name}.json.prediction.json").read()
        )
        assert result, name


def test_the_real_cluster_dag_reaches_a_consensus_per_image(
    stack: StackSession, examples: Examples
) -> None:
    dag_id = "oscar_plant_ensemble_real"
    report = report_of(stack, dag_id, examples.runs[dag_id])
    assert sorted(item["input"] for item in report["inputs"]) == sorted(IMAGES)
    assert {item["winner"] for item in report["inputs"]} == {"Hedera helix"}


def test_an_upload_gets_its_consensus_and_the_digest_reads_it(
    stack: StackSession, examples: Examples
) -> None:
    bucket, key = examples.upload.split("/", 1)
    consensus = json.loads(stack.s3().get_object(bucket, f"{key}.consensus.json").read())
    assert consensus["input"] == examples.upload
    winners = stack.airflow.xcom(DIGEST, examples.runs[DIGEST], "consensus_digest")
    assert winners == {f"{examples.upload}.consensus.json": consensus["winner"]}
    assert stack.airflow.runs(ON_UPLOAD)[0]["run_type"] == "asset_triggered"
