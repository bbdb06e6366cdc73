"""A composition's DAG: every setting of the file reaches the DAG and the task that uses it."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from minio import Minio

from airflow_provider_oscar.compositions import (
    CompositionError,
    build_dag,
    load_composition,
)
from airflow_provider_oscar.local.server import OscarLocal

PLANTS = Path(__file__).resolve().parents[2] / "example_dags" / "services" / "plants"
SPECIMENS = PLANTS / "specimens"

# two clusters, every fan-out and aggregation setting away from its default
RICH = f"""\
dag_id: rich
description: Plants voted by three calls.
start_date: 2026-03-04
catchup: true
tags: [plants, yaml]
clusters:
  alpha: {{connection: conn_a}}
  beta: {{connection: conn_b}}
services:
  - name: plants-sepal
    fdl: {PLANTS / "plants.yaml"}
  - name: plants-petal-width
    clusters: [beta]
inputs:
  glob: {SPECIMENS}/specimen-01*.json
fanout: {{retries: 4, retry_delay: 12, on_error: record, max_active: 3}}
aggregate:
  method: geometric_mean
  missing: residual
  num_classes: 3
  min_models: 2
  abstain: {{min_margin: 0.1}}
  truth: truth.json
  report: reports/r.json
"""

# one cluster, nothing but what is required
PLAIN = f"""\
dag_id: plain
clusters:
  alpha: {{connection: conn_a}}
services:
  - name: plants-sepal
inputs:
  glob: {SPECIMENS}/specimen-01*.json
"""


def built(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "composition.yaml"
    path.write_text(textwrap.dedent(text))
    return build_dag(load_composition(path))


def plan(dag: Any, **params: Any) -> list[dict[str, str]]:
    return dag.get_task("plan_calls").python_callable(params=params)


@pytest.fixture
def rich(tmp_path: Path) -> Any:
    (tmp_path / "truth.json").write_text(json.dumps({"specimen-010": "setosa"}))
    return built(tmp_path, RICH)


# the DAG -------------------------------------------------------------------------------------


def test_the_dag_carries_the_description_start_date_catchup_and_tags(rich: Any) -> None:
    assert rich.description == "Plants voted by three calls."
    assert rich.start_date == pendulum.datetime(2026, 3, 4, tz="UTC")
    assert rich.catchup is True
    assert set(rich.tags) == {"plants", "yaml"}


def test_without_a_start_date_or_tags_the_dag_has_none(tmp_path: Path) -> None:
    dag = built(tmp_path, PLAIN)
    assert (dag.start_date, dag.description, dag.catchup, set(dag.tags)) == (
        None,
        None,
        False,
        set(),
    )


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installation whose default time zone is Asia/Tokyo."""
    from airflow import settings
    from airflow.sdk import timezone

    monkeypatch.setattr(settings, "TIMEZONE", pendulum.timezone("Asia/Tokyo"))
    timezone.initialize("Asia/Tokyo")
    yield
    timezone.initialize("UTC")


def test_the_start_date_is_midnight_utc_whatever_the_default_time_zone(
    tmp_path: Path, tokyo: None
) -> None:
    (tmp_path / "truth.json").write_text("{}")
    dag = built(tmp_path, RICH)
    assert dag.start_date == pendulum.datetime(2026, 3, 4, tz="UTC")
    assert dag.timezone.name == "UTC"


def test_the_doc_names_the_file_models_and_aggregation(rich: Any, tmp_path: Path) -> None:
    assert rich.doc_md == (
        "Plants voted by three calls.\n\n"
        "Built from `composition.yaml`: plants-sepal on alpha, plants-sepal on beta, "
        "plants-petal-width on beta; inputs aggregated by `geometric_mean` (top 5). "
        "The `inputs` param restricts a run to some input ids."
    )
    assert built(tmp_path, PLAIN).doc_md.startswith("A declarative OSCAR composition.\n\n")


def test_the_inputs_param_is_an_array_of_ids_described_for_the_trigger_form(rich: Any) -> None:
    param = rich.params.get_param("inputs")
    assert param.value == []
    assert param.schema == {"type": "array", "items": {"type": "string"}}
    assert param.description == "Input ids to process (none: every input of the composition)"


def test_every_task_retries_as_the_fanout_says(rich: Any) -> None:
    assert {
        t.task_id: (t.retries, t.retry_delay.total_seconds()) for t in rich.tasks
    } == dict.fromkeys(
        ("deploy_alpha", "deploy_beta", "plan_calls", "classify", "aggregate"), (4, 12.0)
    )


# deployments ---------------------------------------------------------------------------------


def test_each_cluster_deploys_its_fdl_through_its_connection(rich: Any) -> None:
    deploys = {t.task_id: t for t in rich.tasks if t.task_id.startswith("deploy_")}
    assert {i: (t.definition, t.oscar_conn_id) for i, t in deploys.items()} == {
        "deploy_alpha": (str(PLANTS / "plants.yaml"), "conn_a"),
        "deploy_beta": (str(PLANTS / "plants.yaml"), "conn_b"),
    }
    assert rich.get_task("classify").upstream_task_ids == {
        "deploy_alpha",
        "deploy_beta",
        "plan_calls",
    }


def test_two_fdl_files_on_one_cluster_are_two_numbered_deployments(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text((PLANTS / "plants.yaml").read_text())
    shutil.copytree(PLANTS / "scripts", tmp_path / "scripts")
    text = PLAIN.replace(
        "  - name: plants-sepal\n",
        f"  - name: plants-sepal\n    fdl: {PLANTS / 'plants.yaml'}\n"
        "  - name: plants-petal-width\n    fdl: other.yaml\n",
    )
    dag = built(tmp_path, text)
    deploys = {t.task_id: t.definition for t in dag.tasks if t.task_id.startswith("deploy_")}
    assert deploys == {
        "deploy_alpha_0": str(PLANTS / "plants.yaml"),
        "deploy_alpha_1": str(tmp_path / "other.yaml"),
    }


# the calls -----------------------------------------------------------------------------------


def test_the_calls_run_as_the_fanout_says_and_name_their_cluster(rich: Any) -> None:
    classify = rich.get_task("classify")
    assert classify.map_index_template == (
        "{{ task.oscar_conn_id }} · {{ task.service_name }} · {{ task.input_id }}"
    )
    assert classify.partial_kwargs["on_error"] == "record"
    assert classify.max_active_tis_per_dagrun == 3


def test_on_one_cluster_a_call_is_named_by_service_and_input(tmp_path: Path) -> None:
    classify = built(tmp_path, PLAIN).get_task("classify")
    assert classify.map_index_template == "{{ task.service_name }} · {{ task.input_id }}"
    assert classify.partial_kwargs["on_error"] == "fail"
    assert classify.max_active_tis_per_dagrun is None


def test_a_service_given_clusters_is_called_on_those_only(rich: Any) -> None:
    calls = plan(rich, inputs=["specimen-010"])
    assert [(c["oscar_conn_id"], c["service_name"]) for c in calls] == [
        ("conn_a", "plants-sepal"),
        ("conn_b", "plants-sepal"),
        ("conn_b", "plants-petal-width"),
    ]


def test_listed_paths_keep_their_order_and_id_name_keeps_the_suffix(tmp_path: Path) -> None:
    text = PLAIN.replace(
        f"  glob: {SPECIMENS}/specimen-01*.json\n",
        f"  paths: [{SPECIMENS}/specimen-015.json, {SPECIMENS}/specimen-010.json]\n  id: name\n",
    )
    calls = plan(built(tmp_path, text))
    assert [(c["input_id"], c["input_path"]) for c in calls] == [
        ("specimen-015.json", str(SPECIMENS / "specimen-015.json")),
        ("specimen-010.json", str(SPECIMENS / "specimen-010.json")),
    ]


def test_a_glob_keeps_the_suffixes_asked_for_and_id_path_is_the_whole_path(
    tmp_path: Path,
) -> None:
    for name in ("a.json", "b.txt", "c.json"):
        (tmp_path / name).write_text("{}")
    text = PLAIN.replace(
        f"  glob: {SPECIMENS}/specimen-01*.json\n",
        "  glob: '*'\n  suffixes: [.json]\n  id: path\n",
    ).replace("  - name: plants-sepal\n", "  - name: plants-sepal\n    cluster: alpha\n")
    ids = [c["input_id"] for c in plan(built(tmp_path, text))]
    assert ids == [str(tmp_path / "a.json"), str(tmp_path / "c.json")]


def test_listed_objects_named_by_their_name(tmp_path: Path) -> None:
    text = PLAIN.replace(
        f"  glob: {SPECIMENS}/specimen-01*.json\n",
        "  objects: [inbox/a/x.json, inbox/b/y.json]\n  id: name\n",
    )
    calls = plan(built(tmp_path, text))
    assert [(c["input_id"], c["input_object"]) for c in calls] == [
        ("x.json", "inbox/a/x.json"),
        ("y.json", "inbox/b/y.json"),
    ]


def test_a_prefix_lists_the_bucket_through_the_first_cluster_keeping_the_suffixes(
    tmp_path: Path, oscar: OscarLocal, s3: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_STORE", oscar.connection_json())
    bucket = f"inbox-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    for key in ("new/a.json", "new/b.txt", "new/deep/c.json", "old/d.json"):
        s3.put_object(bucket, key, io.BytesIO(b"{}"), 2)
    text = f"""\
    dag_id: listed
    clusters:
      store: {{connection: store}}
      other: {{connection: not_defined}}
    services:
      - name: plants-sepal
        cluster: other
    inputs:
      prefix: {bucket}/new/
      suffixes: [.json]
      id: path
    """
    calls = plan(built(tmp_path, text))
    assert [(c["input_id"], c["input_object"]) for c in calls] == [
        (f"{bucket}/new/a.json", f"{bucket}/new/a.json"),
        (f"{bucket}/new/deep/c.json", f"{bucket}/new/deep/c.json"),
    ]


# the aggregation ------------------------------------------------------------------------------


def test_the_aggregate_gets_every_setting_of_the_composition(rich: Any) -> None:
    aggregate = rich.get_task("aggregate")
    assert {
        k: getattr(aggregate, k)
        for k in ("method", "missing", "num_classes", "min_models", "abstain", "report_object")
    } == {
        "method": "geometric_mean",
        "missing": "residual",
        "num_classes": 3,
        "min_models": 2,
        "abstain": {"min_margin": 0.1},  # only the thresholds the file sets
        "report_object": "reports/r.json",
    }
    assert aggregate.truth == {"specimen-010": "setosa"}  # read from truth.json, next to the file
    assert aggregate.oscar_conn_id == "conn_a"  # the first cluster's
    assert aggregate.upstream_task_ids == {"classify"}


def test_weights_and_an_inline_truth_reach_the_aggregate(tmp_path: Path) -> None:
    text = PLAIN + (
        "aggregate:\n"
        "  method: weighted_mean\n"
        "  weights: {plants-sepal: 2.0}\n"
        "  truth: {specimen-010: setosa}\n"
    )
    aggregate = built(tmp_path, text).get_task("aggregate")
    assert (aggregate.weights, aggregate.truth) == (
        {"plants-sepal": 2.0},
        {"specimen-010": "setosa"},
    )


def test_without_aggregation_settings_the_aggregate_has_its_defaults(tmp_path: Path) -> None:
    aggregate = built(tmp_path, PLAIN).get_task("aggregate")
    assert (aggregate.method, aggregate.truth, aggregate.abstain, aggregate.report_object) == (
        "soft_vote",
        None,
        {},
        None,
    )


# errors --------------------------------------------------------------------------------------


def test_a_composition_error_has_one_line_per_problem_and_survives_pickling(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(PLAIN.replace("dag_id: plain\n", "dag_id: 'no spaces'\ncolour: red\n"))
    with pytest.raises(CompositionError) as caught:
        load_composition(path)
    error = caught.value
    assert len(error.issues) == 2
    assert str(error).splitlines() == [str(issue) for issue in error.issues]
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.issues, str(copy)) == (CompositionError, error.issues, str(error))
