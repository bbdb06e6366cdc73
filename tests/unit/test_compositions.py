"""YAML compositions: validated with line and field before any DAG is built, then built."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_oscar.compositions import (
    CompositionError,
    build_dag,
    load_composition,
    load_compositions,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
PLANT_ENSEMBLE = EXAMPLES / "compositions" / "plant_ensemble.yaml"
PLANTS = EXAMPLES / "services" / "plants"

VALID = f"""\
dag_id: composed
clusters:
  alpha:
    connection: oscar_default
services:
  - name: plants-sepal
    fdl: {PLANTS / "plants.yaml"}
  - name: plants-petal-width
inputs:
  glob: {PLANTS / "specimens"}/specimen-01*.json
aggregate:
  method: soft_vote
  top_k: 3
"""


def write(tmp_path: Path, text: str, name: str = "composition.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(CompositionError) as caught:
        load_composition(write(tmp_path, text))
    return [str(issue) for issue in caught.value.issues]


def edited(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


# valid compositions -------------------------------------------------------------------------


def test_the_plant_ensemble_yaml_names_four_models_and_thirty_specimens() -> None:
    composition = load_composition(PLANT_ENSEMBLE)
    assert composition.dag_id == "oscar_plant_ensemble_yaml"
    assert [s for _, s in composition.models()] == [
        "plants-sepal",
        "plants-petal-length",
        "plants-petal-width",
        "plants-lengths",
    ]
    inputs = composition.local_inputs()
    assert inputs is not None and len(inputs) == 30
    assert inputs[0][0] == "specimen-005" and Path(inputs[0][1]).is_file()


def test_a_valid_composition_builds_a_dag_with_deploy_plan_classify_and_aggregate(
    tmp_path: Path,
) -> None:
    dag = build_dag(load_composition(write(tmp_path, VALID)))
    assert dag.dag_id == "composed"
    assert {t.task_id for t in dag.tasks} == {"deploy_alpha", "plan_calls", "classify", "aggregate"}
    assert dag.get_task("classify").upstream_task_ids == {"deploy_alpha", "plan_calls"}
    aggregate = dag.get_task("aggregate")
    assert (aggregate.method, aggregate.top_k, aggregate.trigger_rule) == (
        "soft_vote",
        3,
        "all_done",
    )
    assert dag.schedule is None and "inputs" in dag.params


def _plan(dag: Any, **params: Any) -> list[dict[str, str]]:
    return dag.get_task("plan_calls").python_callable(params=params)


def test_the_plan_calls_every_service_on_every_cluster_for_each_input(tmp_path: Path) -> None:
    text = edited("  alpha:\n", "  beta:\n    connection: oscar_second\n  alpha:\n")
    dag = build_dag(load_composition(write(tmp_path, text)))
    calls = _plan(dag, inputs=[])
    ids = {c["input_id"] for c in calls}
    assert ids == {"specimen-010", "specimen-015"}
    assert len(calls) == 2 * 2 * 2  # inputs x clusters x services
    assert {(c["oscar_conn_id"], c["service_name"]) for c in calls} == {
        (conn, svc)
        for conn in ("oscar_default", "oscar_second")
        for svc in ("plants-sepal", "plants-petal-width")
    }
    assert all(Path(c["input_path"]).is_file() for c in calls)
    assert {t.task_id for t in dag.tasks if t.task_id.startswith("deploy_")} == {
        "deploy_alpha",
        "deploy_beta",
    }


def test_the_inputs_param_restricts_a_run_and_refuses_unknown_ids(tmp_path: Path) -> None:
    from airflow_provider_oscar.compat import AirflowFailException

    dag = build_dag(load_composition(write(tmp_path, VALID)))
    assert {c["input_id"] for c in _plan(dag, inputs=["specimen-015"])} == {"specimen-015"}
    with pytest.raises(AirflowFailException, match="unknown inputs \\['specimen-999'\\]"):
        _plan(dag, inputs=["specimen-999"])


def test_bucket_inputs_become_input_objects_named_by_their_stem(tmp_path: Path) -> None:
    text = edited(
        f"  glob: {PLANTS / 'specimens'}/specimen-01*.json\n",
        "  objects: [inbox/a/x.json, inbox/b/y.json]\n",
    )
    calls = _plan(build_dag(load_composition(write(tmp_path, text))))
    assert {(c["input_id"], c["input_object"]) for c in calls} == {
        ("x", "inbox/a/x.json"),
        ("y", "inbox/b/y.json"),
    }


def test_asset_uris_schedule_the_dag_and_the_aggregate_publishes_its_asset(
    tmp_path: Path,
) -> None:
    text = edited("dag_id: composed\n", "dag_id: composed\nschedule: [oscar://Alpha/inbox/new]\n")
    text += "  asset: oscar://alpha/reports/composed\n  report: reports/composed/r.json\n"
    dag = build_dag(load_composition(write(tmp_path, text)))
    (scheduled,) = dag.timetable.asset_condition.objects
    assert scheduled.uri == "oscar://alpha/inbox/new"
    assert [a.uri for a in dag.get_task("aggregate").outlets] == ["oscar://alpha/reports/composed"]


# invalid compositions ---------------------------------------------------------------------------


def test_an_unknown_aggregation_method_names_its_line_field_and_the_choices(
    tmp_path: Path,
) -> None:
    (problem,) = problems(tmp_path, edited("method: soft_vote", "method: softvote"))
    assert problem.startswith("composition.yaml line 12, field aggregate.method: ")
    assert "must be one of soft_vote, weighted_mean" in problem and "(got 'softvote')" in problem


def test_an_unknown_field_is_reported_with_the_fields_that_exist(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, edited("  top_k: 3\n", "  top_k: 3\n  topk: 4\n"))
    assert problem.startswith("composition.yaml line 14, field aggregate.topk: unknown field")
    assert "top_k" in problem and "min_models" in problem


def test_a_missing_required_field_is_reported_at_its_parent(tmp_path: Path) -> None:
    (problem,) = problems(
        tmp_path, edited("  alpha:\n    connection: oscar_default\n", "  alpha: {}\n")
    )
    assert problem == (
        "composition.yaml line 3, field clusters.alpha.connection: required, but missing"
    )


def test_a_wrongly_typed_value_is_reported_with_what_was_given(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, edited("  top_k: 3\n", "  top_k: many\n"))
    assert problem.startswith("composition.yaml line 13, field aggregate.top_k: ")
    assert "integer" in problem


def test_a_service_on_an_unknown_cluster_is_reported(tmp_path: Path) -> None:
    (problem,) = problems(
        tmp_path,
        edited(
            "  - name: plants-petal-width\n", "  - name: plants-petal-width\n    cluster: gamma\n"
        ),
    )
    assert problem == (
        "composition.yaml line 9, field services[1].cluster: unknown cluster 'gamma'; "
        "clusters: ['alpha']"
    )


def test_an_fdl_file_without_the_service_is_reported(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, edited("  - name: plants-sepal\n", "  - name: plants-sepals\n"))
    assert problem.startswith("composition.yaml line 7, field services[0].fdl: ")
    assert "defines no service 'plants-sepals'" in problem and "plants-sepal'" in problem


def test_inputs_need_exactly_one_source(tmp_path: Path) -> None:
    text = edited("inputs:\n", "inputs:\n  prefix: inbox/new/\n")
    (problem,) = problems(tmp_path, text)
    assert problem == (
        "composition.yaml line 9, field inputs: give exactly one of paths, glob, objects, "
        "prefix (got ['glob', 'prefix'])"
    )


def test_a_glob_matching_no_file_is_reported(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, edited("specimen-01*.json", "nothing-*.json"))
    assert problem.startswith("composition.yaml line 10, field inputs.glob: matches no file")


def test_aggregation_settings_that_cannot_hold_are_reported(tmp_path: Path) -> None:
    text = edited("  top_k: 3\n", "  top_k: 3\n  min_models: 3\n  weights: {plants-sepl: 2}\n")
    assert problems(tmp_path, text) == [
        "composition.yaml line 14, field aggregate.min_models: 3 models required, 2 called",
        "composition.yaml line 15, field aggregate.weights.plants-sepl: not a service of this "
        "composition: ['plants-petal-width', 'plants-sepal']",
    ]


def test_a_bad_oscar_asset_uri_is_reported_with_the_reason(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, VALID + "  asset: oscar://alpha/Bad_Bucket/x\n")
    assert problem.startswith("composition.yaml line 14, field aggregate.asset: ")
    assert "not a bucket name" in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = edited("method: soft_vote", "method: vote").replace("  top_k: 3\n", "  top_k: 0\n")
    found = problems(tmp_path, text)
    assert [p.split(":")[0] for p in found] == [
        "composition.yaml line 12, field aggregate.method",
        "composition.yaml line 13, field aggregate.top_k",
    ]


def test_yaml_syntax_errors_say_where(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "dag_id: x\nclusters: [a\nservices: []\n")
    assert problem.startswith("composition.yaml line 3: not valid YAML")


def test_a_key_given_twice_is_reported_instead_of_silently_overridden(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, VALID.replace("  top_k: 3\n", "  top_k: 3\n  top_k: 4\n"))
    assert problem == "composition.yaml line 14, field aggregate.top_k: given twice"


def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "- just\n- a list\n") == [
        "composition.yaml line 1: must be a mapping of fields"
    ]


def test_two_compositions_with_one_dag_id_are_refused(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yaml")
    with pytest.raises(
        CompositionError, match=r"b\.yaml, field dag_id: 'composed' is also a\.yaml"
    ):
        load_compositions(tmp_path)


# hostile composition files --------------------------------------------------------------------


def test_an_alias_bomb_is_refused_with_its_line(tmp_path: Path) -> None:
    lines = ["x0: &x0 [lol]"]
    for level in range(1, 7):  # a million values once expanded
        lines.append(f"x{level}: &x{level} [{', '.join([f'*x{level - 1}'] * 10)}]")
    text = VALID + "\n".join(lines) + "\n"
    (issue,) = problems(tmp_path, text)
    assert "refused: its aliases expand to over 100000 values" in issue
    assert issue.startswith("composition.yaml")


def test_a_composition_over_4_mib_is_refused_unread(tmp_path: Path) -> None:
    (issue,) = problems(tmp_path, VALID + f"# {'x' * (4 << 20)}\n")
    assert "cannot be read: over 4 MiB" in issue
