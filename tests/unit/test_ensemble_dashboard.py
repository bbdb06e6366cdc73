"""The results dashboard shows what the ensemble learned: weights, reliability, reviewed inputs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.plugins import results
from airflow_provider_oscar.plugins.app import templates
from tests.unit.test_ensemble_operator import _labelled

REVIEW = {
    "asked": 2,
    "reviewed": 1,
    "timed_out": False,
    "responded_by": "ada",
    "report_object": None,
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """A calibrated, evaluated report with two abstentions, one labelled by a person."""
    rows, truth = _labelled(60)
    report = OscarEnsembleOperator(
        task_id="aggregate",
        results=rows,
        top_k=3,
        truth=truth,
        fit_on=truth,
        abstain={"min_margin": 0.99},
    ).execute(context={})
    doubts = [i["input"] for i in report["inputs"] if i["abstained"]][:2]
    assert len(doubts) == 2
    reviews = {
        doubts[0]: {"label": "setosa", "status": "reviewed", "by": "ada", "at": "2026-01-01"},
        doubts[1]: {"label": None, "status": "abstained", "by": None, "at": None},
    }
    return results.with_reviews(report, [{**REVIEW, "reviews": reviews}])


def test_the_view_carries_learned_weights_and_a_reliability_diagram_per_model(
    report: dict[str, Any],
) -> None:
    view = results.report_view(report)
    accuracy = view["accuracy"]
    fitted = report["calibration"]["fit"]["models"]
    assert accuracy["weights"] == {m: v["weight"] for m, v in fitted.items()}
    assert accuracy["pool"] == "linear"
    names = [d["name"] for d in accuracy["reliability"]]
    assert names == ["sharp", "soft", "noise", "ensemble"]
    sharp = accuracy["reliability"][0]
    assert sum(b["count"] for b in sharp["bins"]) == 60
    assert sharp["ece"] == report["evaluation"]["models"]["sharp"]["ece"]["value"]


def test_reviews_mark_the_reviewed_input_and_only_it(report: dict[str, Any]) -> None:
    view = results.report_view(report, show="abstained")
    reviewed = [i for i in view["inputs"] if i["review"] and i["review"]["status"] == "reviewed"]
    (item,) = reviewed
    marked = [b["label"] for b in item["top_k"] if b["is_reviewed"]]
    assert marked == ["setosa"]
    assert results.run_summary(report)["reviewed"] == 1
    others = [i for i in view["inputs"] if i is not item]
    assert not any(b["is_reviewed"] for i in others for b in i["top_k"])


def test_reviews_of_another_report_are_not_attached(report: dict[str, Any]) -> None:
    elsewhere = {**REVIEW, "report_object": "b/other.json", "reviews": report["reviews"]["reviews"]}
    plain = {k: v for k, v in report.items() if k != "reviews"}
    plain["inputs"] = [{k: v for k, v in i.items() if k != "review"} for i in report["inputs"]]
    assert "reviews" not in results.with_reviews(plain, [elsewhere])


def test_the_run_page_draws_weights_reliability_and_the_reviewed_mark(
    report: dict[str, Any],
) -> None:
    run = {
        "dag_id": "d",
        "run_id": "r",
        "state": "success",
        "run_after": None,
        "start_date": None,
        "end_date": None,
        "tasks": [
            {
                "task_id": "aggregate",
                "map_index": -1,
                "state": "success",
                "view": results.report_view(report),
                "error": None,
            }
        ],
    }
    html = (
        templates()
        .get_template("run.html")
        .render(base="/oscar", airflow_base="", tab="results", run=run, show="all")
    )
    weights = re.findall(r'class="weight" data-model="(\w+)"', html)
    assert weights == ["sharp", "soft", "noise"]
    diagrams = re.findall(r'<figure style="margin: 0" data-model="(\w+)">', html)
    assert diagrams == ["sharp", "soft", "noise", "ensemble"]
    assert html.count("✎ reviewed") == 1
    assert "learned weight" in html and "Reliability of sharp" in html
