"""Composition files: each check names the line, the field and what is wrong, word for word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_oscar.compositions import (
    Composition,
    CompositionError,
    load_composition,
    load_compositions,
)

BASE = """\
dag_id: composed
clusters:
  alpha:
    connection: oscar_default
services:
  - name: sepal
  - name: petal
"""
OBJECTS = "inputs:\n  objects: [plants/specimen-01.json]\n"  # lines 8 and 9 after BASE


def write(folder: Path, text: str, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(CompositionError) as caught:
        load_composition(write(folder, text))
    return [str(issue) for issue in caught.value.issues]


def loads(folder: Path, text: str) -> Composition:
    return load_composition(write(folder, text))


# clusters and services ------------------------------------------------------------------------


def test_a_cluster_name_with_a_space_is_refused_at_its_line(tmp_path: Path) -> None:
    text = BASE.replace("  alpha:\n", "  my alpha:\n").replace("  - name: petal\n", "")
    assert problems(tmp_path, text.replace("sepal\n", "sepal\n" + OBJECTS)) == [
        "c.yaml line 3, field clusters.my alpha: cluster names are letters, digits, '_', '.', '-'"
    ]


def test_a_service_on_its_own_list_of_clusters_is_valid(tmp_path: Path) -> None:
    text = BASE.replace("  - name: petal\n", "  - name: petal\n    clusters: [alpha]\n")
    assert loads(tmp_path, text + OBJECTS).models() == [("alpha", "sepal"), ("alpha", "petal")]


def test_cluster_and_clusters_together_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("  - name: petal\n", "  - name: petal\n    cluster: alpha\n")
    text = text.replace("    cluster: alpha\n", "    cluster: alpha\n    clusters: [alpha]\n")
    assert problems(tmp_path, text + OBJECTS) == [
        "c.yaml line 9, field services[1].clusters: give cluster or clusters, not both"
    ]


def test_an_unknown_cluster_in_a_list_is_reported_at_its_item(tmp_path: Path) -> None:
    text = BASE.replace("  - name: petal\n", "  - name: petal\n    clusters:\n    - alpha\n")
    text = text.replace("    - alpha\n", "    - alpha\n    - gamma\n")
    assert problems(tmp_path, text + OBJECTS) == [
        "c.yaml line 10, field services[1].clusters[1]: unknown cluster 'gamma'; "
        "clusters: ['alpha']"
    ]


def test_a_service_called_twice_on_a_cluster_names_both(tmp_path: Path) -> None:
    text = BASE.replace("name: petal", "name: sepal")
    assert problems(tmp_path, text + OBJECTS) == [
        "c.yaml line 7, field services[1].name: 'sepal' is called twice on 'alpha'"
    ]


def test_a_missing_fdl_file_is_named_with_its_full_path(tmp_path: Path) -> None:
    text = BASE.replace("  - name: petal\n", "  - name: petal\n    fdl: missing.yaml\n")
    assert problems(tmp_path, text + OBJECTS) == [
        f"c.yaml line 8, field services[1].fdl: no FDL file at {tmp_path.resolve()}/missing.yaml"
    ]


# inputs -----------------------------------------------------------------------------------------


def test_inputs_without_a_source_say_none_was_given(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + "inputs:\n  suffixes: [.json]\n") == [
        "c.yaml line 8, field inputs: give exactly one of paths, glob, objects, prefix (got none)"
    ]


def test_only_the_missing_paths_are_reported(tmp_path: Path) -> None:
    (tmp_path / "here.json").write_text("{}")
    text = BASE + "inputs:\n  paths:\n  - gone.json\n  - here.json\n"
    assert problems(tmp_path, text) == [
        f"c.yaml line 10, field inputs.paths[0]: no file at {tmp_path.resolve()}/gone.json"
    ]


def test_objects_need_a_bucket_and_a_key(tmp_path: Path) -> None:
    objects = ["/plants/specimen-01.json", "plants/X", "plants", "/plants/"]
    text = BASE + "inputs:\n  objects:\n" + "".join(f"  - {o}\n" for o in objects)
    assert problems(tmp_path, text) == [
        "c.yaml line 12, field inputs.objects[2]: objects are 'bucket/key'",
        "c.yaml line 13, field inputs.objects[3]: objects are 'bucket/key'",
    ]


def test_a_prefix_must_name_a_bucket(tmp_path: Path) -> None:
    assert loads(tmp_path, BASE + "inputs:\n  prefix: plants/new/\n").inputs.prefix == (
        "plants/new/"
    )
    assert problems(tmp_path, BASE + "inputs:\n  prefix: /\n") == [
        "c.yaml line 9, field inputs.prefix: a prefix is 'bucket/folder/'"
    ]


def test_two_files_with_one_stem_are_reported_once(tmp_path: Path) -> None:
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "leaf.json").write_text("{}")
    (tmp_path / "c" / "root.json").write_text("{}")
    text = BASE + "inputs:\n  paths: [a/leaf.json, b/leaf.json, c/root.json]\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 8, field inputs.id: inputs share the ids ['leaf']; use id: path"
    ]
    three = text.replace("c/root.json", "c/leaf.json")
    assert problems(tmp_path, three) == [
        "c.yaml line 8, field inputs.id: inputs share the ids ['leaf']; use id: path"
    ]
    by_path = loads(tmp_path, text + "  id: path\n").local_inputs()
    assert by_path is not None and len(by_path) == 3


# aggregate --------------------------------------------------------------------------------------


def test_weights_are_refused_with_two_clusters(tmp_path: Path) -> None:
    text = BASE.replace("services:\n", "  beta:\n    connection: oscar_beta\nservices:\n")
    text += OBJECTS + "aggregate:\n  weights: {sepal: 2}\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 13, field aggregate.weights: weights need a composition with one cluster"
    ]


def test_weighted_mean_needs_weights_and_takes_them(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  method: weighted_mean\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 10, field aggregate.weights: method weighted_mean needs weights"
    ]
    weighted = loads(tmp_path, text + "  weights: {sepal: 2, petal: 1}\n")
    assert weighted.aggregate.weights == {"sepal": 2, "petal": 1}


def test_as_many_models_as_called_are_enough(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  min_models: 2\n"
    assert loads(tmp_path, text).aggregate.min_models == 2


def test_a_truth_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  truth: truth.json\n"
    truth = tmp_path.resolve() / "truth.json"
    assert problems(tmp_path, text) == [
        f"c.yaml line 11, field aggregate.truth: cannot read {truth}: "
        f"[Errno 2] No such file or directory: '{truth}'"
    ]
    truth.write_text(json.dumps(["setosa", "virginica"]))
    assert problems(tmp_path, text) == [
        "c.yaml line 11, field aggregate.truth: truth.json is not a mapping of labels"
    ]
    truth.write_text(json.dumps({"specimen-01": "setosa"}))
    assert loads(tmp_path, text).aggregate.truth == "truth.json"


def test_a_report_needs_a_bucket_and_a_key(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  report: '{report}'\n"
    for report in ("reports", "/reports/"):
        assert problems(tmp_path, text.format(report=report)) == [
            "c.yaml line 11, field aggregate.report: the report goes to 'bucket/key'"
        ]
    assert loads(tmp_path, text.format(report="reports/X")).aggregate.report == ("reports/X")


# schedule ---------------------------------------------------------------------------------------


def test_a_cron_schedule_needs_a_start_date(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "schedule: '@daily'\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 1, field start_date: a start_date is needed for schedule '@daily'"
    ]
    assert loads(tmp_path, text + "start_date: 2026-01-01\n").schedule == "@daily"


def test_an_empty_asset_in_a_schedule_is_reported_at_its_item(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "schedule:\n  - plants-ready\n  - ' '\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 12, field schedule[1]: an asset URI or name cannot be empty"
    ]
    named = loads(tmp_path, BASE + OBJECTS + "schedule: [plants-ready, 'oscar://alpha/inbox/x']\n")
    assert named.schedule == ["plants-ready", "oscar://alpha/inbox/x"]


# unknown fields and wrong values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("  - name: petal\n", "  - name: petal\n    nmae: x\n"),
            "c.yaml line 8, field services[1].nmae: unknown field; "
            "known fields: name, cluster, clusters, fdl",
        ),
        (
            ("    connection: oscar_default\n", "    connection: oscar_default\n    conn: x\n"),
            "c.yaml line 5, field clusters.alpha.conn: unknown field; known fields: connection",
        ),
        (
            ("dag_id: composed\n", "dag_id: composed\ndag: x\n"),
            "c.yaml line 2, field dag: unknown field; known fields: dag_id, description, "
            "schedule, start_date, catchup, tags, clusters, services, inputs, fanout, aggregate",
        ),
    ],
)
def test_an_unknown_field_lists_the_fields_of_its_place(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    assert problems(tmp_path, BASE.replace(*edit) + OBJECTS) == [expected]


def test_an_unknown_field_of_an_optional_section_lists_its_fields(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  abstain: {margin: 0.1}\n"
    assert problems(tmp_path, text) == [
        "c.yaml line 11, field aggregate.abstain.margin: unknown field; "
        "known fields: min_margin, min_vote_share, min_top_score"
    ]


def test_a_refused_value_is_explained_without_pydantic_words(tmp_path: Path) -> None:
    text = BASE + OBJECTS + "aggregate:\n  method: vote\n"
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("c.yaml line 11, field aggregate.method: must be one of soft_vote, ")
    assert problem.endswith(" (got 'vote')")


# YAML that cannot be read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "c.yaml line 1: the file is empty"),
        (
            "dag_id: x\nclusters: [a\nservices: []\n",
            "c.yaml line 3: not valid YAML: expected ',' or ']', but got ':'",
        ),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "c.yaml: nested too deeply to be read"),
        (
            "!unknown x\n",
            "c.yaml line 1, field (document): not valid YAML: "
            "could not determine a constructor for the tag '!unknown'",
        ),
        (
            "dag_id: x\nclusters:\n  !!int one: {connection: c}\n",
            "c.yaml line 3, field clusters: not valid YAML: "
            "invalid literal for int() with base 10: 'one'",
        ),
        ("[a]: 1\n", "c.yaml line 1, field (document): keys must be plain scalars"),
        ("? {[a]: 1}\n: b\n", "c.yaml line 1, field (document): keys must be plain scalars"),
        (
            "dag_id: x\naggregate:\n  top_k: 3\n  [a, b]: 1\n",
            "c.yaml line 4, field aggregate: keys must be plain scalars",
        ),
    ],
)
def test_yaml_that_cannot_be_read_says_where_and_why(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problems(tmp_path, text) == [expected]


def test_a_control_character_is_refused_with_its_position(tmp_path: Path) -> None:
    assert problems(tmp_path, "dag_id: a\x07\n") == [
        "c.yaml: not valid YAML: unacceptable character #x0007: special characters are not "
        'allowed\n  in "<unicode string>", position 9'
    ]


# a folder of compositions -----------------------------------------------------------------------


def test_a_folder_loads_every_composition_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("composed", "second") + OBJECTS, "b.yaml")
    write(tmp_path, BASE + OBJECTS, "a.yaml")
    assert [c.dag_id for c in load_compositions(tmp_path)] == ["composed", "second"]


def test_a_folder_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, BASE + OBJECTS, "a.yaml")
    write(tmp_path, BASE + OBJECTS, "b.yaml")
    write(tmp_path, "", "c.yaml")
    write(tmp_path, BASE + OBJECTS + "schedule: '@daily'\n", "d.yaml")
    write(tmp_path, BASE.replace("composed", "fifth") + OBJECTS, "e.yaml")
    with pytest.raises(CompositionError) as caught:
        load_compositions(tmp_path)
    assert [str(issue) for issue in caught.value.issues] == [
        "b.yaml, field dag_id: 'composed' is also a.yaml's",
        "c.yaml line 1: the file is empty",
        "d.yaml line 1, field start_date: a start_date is needed for schedule '@daily'",
    ]
