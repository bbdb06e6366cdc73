"""The plugin's pieces without a running Airflow: registration, auth on every route, shaping."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_oscar.get_provider_info import get_provider_info
from airflow_provider_oscar.hooks.api import JobInfo
from airflow_provider_oscar.plugins import clusters, results
from airflow_provider_oscar.plugins.app import create_app
from airflow_provider_oscar.plugins.oscar import OscarPlugin

PLUGIN = "airflow_provider_oscar.plugins.oscar.OscarPlugin"


def test_the_plugin_is_registered_in_the_provider_info_and_as_an_entry_point() -> None:
    assert get_provider_info()["plugins"] == [{"name": "oscar", "plugin-class": PLUGIN}]
    found = [e for e in entry_points(group="airflow.plugins") if e.name == "oscar"]
    assert [e.value for e in found] == [PLUGIN.rpartition(".")[0] + ":OscarPlugin"]


def test_the_plugin_mounts_its_app_and_a_navigation_entry_from_the_class_itself() -> None:
    # Provider-info plugins are registered as classes, not instances.
    (app,) = OscarPlugin.fastapi_apps
    assert app["url_prefix"] == "/oscar" and app["app"] is OscarPlugin().fastapi_apps[0]["app"]
    (view,) = OscarPlugin.external_views
    assert view["href"] == "/oscar/" and view["destination"] == "nav"
    assert view["url_route"] == "oscar" and view["icon"].startswith("data:image/svg+xml")


def test_every_route_of_the_app_requires_a_login() -> None:
    app = create_app()
    client = TestClient(app)
    paths = [r.path for r in app.routes if "GET" in getattr(r, "methods", set())]
    assert len(paths) >= 8
    for path in paths:
        url = path.format(dag_id="d", run_id="r", conn_id="c", service="s", job="j")
        response = client.get(url)
        assert response.status_code == 401, url
    assert client.get("/openapi.json").status_code == 404  # FastAPI's docs skip dependencies
    assert client.get("/docs").status_code == 404


def _report(**changes: Any) -> dict[str, Any]:
    def prediction(model: str, labels: list[str], probabilities: list[float]) -> dict[str, Any]:
        return {"model": model, "status": "ok", "labels": labels, "probabilities": probabilities}

    report: dict[str, Any] = {
        "method": {"combiner": "soft_vote", "top_k": 2},
        "models": ["a", "b"],
        "inputs": [
            {
                "input": "x1",
                "winner": "Iris setosa",
                "top_k": {"labels": ["Iris setosa", "Iris virginica"], "scores": [0.9, 0.1]},
                "vote_share": 1.0,
                "margin": 0.8,
                "entropy": 0.3,
                "abstained": False,
                "missing_models": [],
                "provenance": [
                    prediction("a", ["Iris setosa", "Iris virginica"], [0.8, 0.2]),
                    prediction("b", ["Iris setosa", "Iris virginica"], [1.0, 0.0]),
                ],
            },
            {
                "input": "x2",
                "winner": "Iris virginica",
                "top_k": {"labels": ["Iris virginica", "Iris setosa"], "scores": [0.55, 0.45]},
                "vote_share": 0.5,
                "margin": 0.1,
                "entropy": 0.99,
                "abstained": True,
                "abstain_reasons": ["margin"],
                "missing_models": [],
                "provenance": [
                    prediction("a", ["Iris setosa", "Iris virginica"], [0.6, 0.4]),
                    prediction("b", ["Iris virginica", "Iris setosa"], [0.7, 0.3]),
                ],
            },
            {
                "input": "x3",
                "winner": "Iris setosa",
                "top_k": {"labels": ["Iris setosa"], "scores": [1.0]},
                "abstained": False,
                "missing_models": ["b"],
                "provenance": [
                    prediction("a", ["Iris setosa"], [1.0]),
                    {"model": "b", "status": "missing", "labels": [], "probabilities": []},
                ],
            },
        ],
        "truth": {"x1": "Iris setosa", "x2": "Iris setosa", "x3": "Iris setosa"},
        "accuracy": {
            "inputs": 3,
            "ensemble": 2 / 3,
            "models": {"a": 1.0, "b": 0.5},
            "coverage": 2 / 3,
            "selective_accuracy": 1.0,
        },
    }
    report.update(changes)
    return report


def test_report_view_marks_agreement_truth_and_abstentions() -> None:
    view = results.report_view(_report())
    x1, x2, x3 = view["inputs"]
    assert (x1["unanimous"], x1["correct"], x1["score"]) == (True, True, 0.9)
    assert (x2["unanimous"], x2["correct"], x2["abstained"]) == (False, False, True)
    assert [c["agrees"] for c in x2["models"]] == [False, True]
    assert x3["missing_models"] == ["b"] and x3["models"][1]["top1"] is None
    assert view["counts"] == {"all": 3, "disagreements": 2, "abstained": 1, "wrong": 1}
    assert view["agreement"] == {"a": 2 / 3, "b": 1.0}
    assert view["short"] == {"Iris setosa": "setosa", "Iris virginica": "virginica"}
    assert view["accuracy"]["best_model"] == 1.0 and view["accuracy"]["ensemble"] == 2 / 3


def test_inputs_with_a_picture_are_marked_and_their_source_found() -> None:
    pictures = {"x1": {"conn_id": "oscar_default", "object": "plants-images/x1.jpg"}}
    report = _report(pictures={**pictures, "x2": {"conn_id": 7}})

    view = results.report_view(report)

    assert [i["picture"] for i in view["inputs"]] == [True, True, False]
    assert results.picture_source(report, "x1") == ("oscar_default", "plants-images/x1.jpg")
    assert results.picture_source(report, "x2") is None  # malformed: no picture is read
    assert results.picture_source(_report(), "x1") is None


def test_the_run_page_shows_a_picture_only_beside_inputs_that_have_one() -> None:
    report = _report(pictures={"x1": {"conn_id": "c", "object": "b/x1.png"}})
    task = {"task_id": "agg", "map_index": -1, "state": "success", "error": None}
    run = {"dag_id": "d", "run_id": "manual__1", "state": "success", "run_after": None}
    run |= {"start_date": None, "end_date": None}

    html = _render(
        "run.html",
        tab="results",
        run={**run, "tasks": [{**task, "view": results.report_view(report)}]},
        show="all",
    )

    url = "/oscar/results/d/manual__1/picture?task_id=agg&amp;map_index=-1&amp;input=x1"
    assert html.count(f'src="{url}"') == 2  # in the matrix and in the input's card
    assert 'alt="picture of x1"' in html and "input=x2" not in html


@pytest.mark.parametrize(
    ("show", "inputs"),
    [
        ("all", ["x1", "x2", "x3"]),
        ("disagreements", ["x2", "x3"]),
        ("abstained", ["x2"]),
        ("wrong", ["x2"]),
    ],
)
def test_report_view_filters_inputs(show: str, inputs: list[str]) -> None:
    assert [i["input"] for i in results.report_view(_report(), show=show)["inputs"]] == inputs


def test_report_view_copes_with_reports_without_truth_or_method_details() -> None:
    report = _report(method="majority_vote")
    del report["truth"], report["accuracy"]
    view = results.report_view(report)
    assert view["method"] == "majority_vote" and view["accuracy"] is None
    assert all(i["correct"] is None for i in view["inputs"])
    summary = results.run_summary(report)
    assert summary is not None
    assert (summary["inputs"], summary["abstained"], summary["accuracy"]) == (3, 1, None)


def test_labels_get_stable_colours_and_keep_their_names_when_they_share_nothing() -> None:
    colours = results.colours(["cat", "dog", "cat", "bird"])
    assert list(colours) == ["cat", "dog", "bird"] and len(set(colours.values())) == 3
    assert results.short_labels(["cat", "dog"]) == {"cat": "cat", "dog": "dog"}


def test_capacity_reads_oscar_status() -> None:
    status = {
        "cluster": {
            "nodes_count": 2,
            "metrics": {
                "cpu": {"total_free_cores": 1.0, "total_schedulable_cores": 4.0},
                "memory": {"total_free_bytes": 512, "total_schedulable_bytes": 1024},
                "gpu": {"total_gpu": 1},
            },
            "nodes": [{"status": "Ready"}, {"conditions": [{"type": "Ready", "status": False}]}],
        },
        "oscar": {"ready": True, "jobs_count": 7, "pods": {"states": {"Running": 2}}},
        "minio": {"buckets_count": 3, "total_objects": 9},
    }
    capacity = clusters.capacity(status)
    assert capacity["cpu"] == {"free": 1.0, "total": 4.0, "used": 3.0, "used_share": 0.75}
    assert capacity["memory"]["used_share"] == 0.5
    assert (capacity["nodes"], capacity["nodes_ready"], capacity["gpus"]) == (2, 1, 1)
    assert (capacity["jobs"], capacity["buckets"], capacity["objects"]) == (7, 3, 9)
    assert clusters.capacity({})["cpu"] is None


def test_environment_connections_of_type_oscar_are_listed_by_id() -> None:
    items = [
        ("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps({"conn_type": "oscar", "description": "d"})),
        ("AIRFLOW_CONN_EGI", "oscar://u:p@oscar.example.org/https"),
        ("AIRFLOW_CONN_HTTP", "http://example.org"),
        ("AIRFLOW_CONN_BROKEN", "{not json"),
        ("HOME", "/root"),
    ]
    assert list(clusters._environment_connections(items)) == [
        ("egi", ""),
        ("oscar_default", "d"),
    ]


def test_errors_are_one_line_and_never_carry_the_connections_secrets() -> None:
    error = OSError("refused for user oscar with s3cr3t-pass\nat https://u:s3cr3t-pass@h")
    text = clusters.describe_error(error, ["s3cr3t-pass", None, ""])
    assert "s3cr3t-pass" not in text and "\n" not in text
    assert clusters.public_url("https://u:p@oscar.example.org:8443/x") == (
        "https://oscar.example.org:8443/x"
    )


def test_jobs_are_listed_newest_first_with_undated_ones_last() -> None:
    jobs = [
        JobInfo("old", "Succeeded", "2026-01-01T00:00:00Z"),
        JobInfo("undated", "Pending"),
        JobInfo("new", "Running", "2026-02-01T00:00:00Z"),
    ]
    assert [j.name for j in clusters.newest(jobs)] == ["new", "old", "undated"]


def _render(template: str, **context: Any) -> str:
    from airflow_provider_oscar.plugins.app import templates

    return templates().get_template(template).render(base="/oscar", airflow_base="", **context)


def test_the_pages_render_reports_clusters_and_errors_escaping_what_they_show() -> None:
    report = _report()
    report["inputs"][0]["input"] = "<script>x</script>"
    run = {
        "dag_id": "d",
        "run_id": "manual__1",
        "state": "success",
        "run_after": "2026-01-01T00:00:00+00:00",
        "start_date": None,
        "end_date": None,
        "tasks": [
            {
                "task_id": "agg",
                "map_index": -1,
                "state": "success",
                "error": None,
                "view": results.report_view(report),
            },
            {"task_id": "agg2", "map_index": 0, "state": "failed", "error": None, "view": None},
        ],
    }
    html = _render("run.html", tab="results", run=run, show="all")
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="input-row"') == 3 and "No report" in html
    listing = {
        "dag_id": "d",
        "runs": [
            {
                **run,
                "tasks": [
                    {
                        "task_id": "agg",
                        "map_index": -1,
                        "state": "success",
                        "error": None,
                        "summary": results.run_summary(report),
                    }
                ],
            }
        ],
    }
    assert "3 inputs" in _render("results.html", tab="results", dags=[listing])
    down = {
        "conn_id": "down",
        "source": "database",
        "description": "",
        "endpoint": "http://h",
        "cluster_id": None,
        "auth": "basic",
        "healthy": None,
        "version": None,
        "info": {},
        "capacity": None,
        "status_error": None,
        "services": [],
        "services_error": None,
        "error": "ConnectError: refused",
        "elapsed_ms": 3,
    }
    assert "Cannot reach this cluster" in _render("clusters.html", tab="clusters", clusters=[down])
    assert "No connection of type" in _render("clusters.html", tab="clusters", clusters=[])
    assert "Please log in" in _render("error.html", tab=None, status=401, detail="x")
