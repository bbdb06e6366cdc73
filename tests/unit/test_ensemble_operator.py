"""OscarEnsembleOperator: upstream XCom results in, one consensus report out."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator, model_names


def _result(service: str, specimen: str, labels: list[str], probs: list[float], cluster: str = "a"):
    prediction = {"status": "ok", "labels": labels, "probabilities": probs}
    return {"service": service, "cluster": cluster, "input": specimen, "prediction": prediction}


def _run(results: Any, **kwargs: Any) -> dict[str, Any]:
    operator = OscarEnsembleOperator(task_id="aggregate", results=results, **kwargs)
    return operator.execute(context={})


def test_models_are_named_by_service_unless_two_clusters_share_a_service_name() -> None:
    results = [_result("m1", "s", ["x"], [1.0], "a"), _result("m1", "s", ["x"], [1.0], "b")]
    assert model_names(results) == ["a/m1", "b/m1"]
    assert model_names([_result("m1", "s", ["x"], [1.0]), _result("m2", "s", ["x"], [1.0])]) == [
        "m1",
        "m2",
    ]


def test_soft_vote_consensus_and_accuracy_per_model() -> None:
    results = [
        _result("m1", "s1", ["rose", "tulip"], [0.6, 0.4]),
        _result("m2", "s1", ["tulip", "rose"], [0.9, 0.1]),
        _result("m1", "s2", ["rose"], [0.8]),
        _result("m2", "s2", ["rose"], [0.7]),
    ]
    report = _run(results, truth={"s1": "tulip", "s2": "rose"})
    winners = {item["input"]: item["winner"] for item in report["inputs"]}
    # s1: rose (0.6 + 0.1) / 2 = 0.35, tulip (0.4 + 0.9) / 2 = 0.65
    assert winners == {"s1": "tulip", "s2": "rose"}
    assert report["accuracy"]["models"] == {"m1": 0.5, "m2": 1.0}
    assert report["accuracy"]["ensemble"] == 1.0


def test_a_model_whose_task_left_no_result_is_recorded_as_missing() -> None:
    results = [
        [_result("m1", "s1", ["rose"], [0.9]), None],
        [_result("m2", "s1", ["rose"], [0.8]), _result("m2", "s2", ["tulip"], [0.7])],
    ]
    report = _run(results)
    s2 = next(item for item in report["inputs"] if item["input"] == "s2")
    assert s2["missing_models"] == ["m1"]
    assert report["incomplete"] == 1


def test_fewer_answers_than_min_models_fail_the_task() -> None:
    results = [_result("m1", "s1", ["rose"], [0.9]), _result("m2", "s2", ["rose"], [0.9])]
    with pytest.raises(AirflowFailException, match="aggregation failed"):
        _run(results, min_models=2)


def test_weights_by_cluster_apply_to_every_model_of_that_cluster() -> None:
    results = [
        _result("m1", "s1", ["rose"], [0.9], "big"),
        _result("m1", "s1", ["tulip"], [0.9], "small"),
    ]
    report = _run(results, method="weighted_mean", weights={"big": 3.0, "small": 1.0})
    assert report["inputs"][0]["winner"] == "rose"
    assert report["method"]["weights"] == {"big/m1": 3.0, "small/m1": 1.0}


def test_weights_naming_unknown_models_fail_with_the_known_names() -> None:
    results = [_result("m1", "s1", ["rose"], [0.9])]
    with pytest.raises(AirflowFailException, match=r"unknown models or clusters \['m9'\].*m1"):
        _run(results, weights={"m9": 1.0})


def test_results_without_a_prediction_fail_clearly() -> None:
    with pytest.raises(AirflowFailException, match="has no 'prediction'"):
        _run([{"service": "m1", "input": "s1", "text": "hello"}])


def test_no_upstream_result_at_all_fails_clearly() -> None:
    with pytest.raises(AirflowFailException, match="nothing to aggregate"):
        _run([None, None])
