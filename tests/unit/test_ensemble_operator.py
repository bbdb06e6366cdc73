"""OscarEnsembleOperator: upstream XCom results in, one consensus report out."""

from __future__ import annotations

import json
import uuid
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


# --------------------------------------------------------------------------- batch results, fits

SPECIES = ["setosa", "versicolor", "virginica"]


def _labelled(n: int = 60) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per-call results of three models on ``n`` inputs: ``sharp`` is right and over-confident,
    ``soft`` right and timid, ``noise`` a coin; and the truth."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth, results = {}, []
    for i in range(n):
        t = int(rng.integers(3))
        truth[f"s{i}"] = SPECIES[t]
        right = rng.random() < 0.8
        top = t if right else int((t + 1 + rng.integers(2)) % 3)
        others = [c for c in range(3) if c != top]
        for name, probs in (("sharp", [0.98, 0.015, 0.005]), ("soft", [0.5, 0.3, 0.2])):
            results.append(_result(name, f"s{i}", [SPECIES[c] for c in [top, *others]], probs))
        noise = [int(c) for c in rng.permutation(3)]
        results.append(_result("noise", f"s{i}", [SPECIES[c] for c in noise], [0.4, 0.35, 0.25]))
    return results, truth


def test_batch_results_are_read_record_by_record_and_failed_inputs_are_missing() -> None:
    batch = {
        "service": "m1",
        "total": 2,
        "results": [
            {
                "index": 0,
                "input": "s1",
                "status": "ok",
                "prediction": {"labels": ["rose"], "probabilities": [0.9]},
            },
            {"index": 1, "input": "s2", "status": "error", "error": "timed out"},
        ],
    }
    calls = [_result("m2", "s1", ["rose"], [0.8]), _result("m2", "s2", ["tulip"], [0.7])]
    report = _run([batch, calls])
    assert report["models"] == ["m1", "m2"]
    s2 = next(item for item in report["inputs"] if item["input"] == "s2")
    assert s2["missing_models"] == ["m1"] and s2["winner"] == "tulip"


def test_a_large_batch_is_read_from_its_results_object(oscar_default: object) -> None:
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

    key = f"ensemble-tests/{uuid.uuid4().hex}/results.jsonl"
    lines = [
        {
            "index": i,
            "input": f"s{i}",
            "status": "ok",
            "prediction": {"labels": ["rose"], "probabilities": [0.6]},
        }
        for i in range(3)
    ]
    OscarStorageHook().upload_bytes(
        key, "".join(json.dumps(x) + "\n" for x in lines).encode(), create_bucket=True
    )
    report = _run([{"service": "m1", "results_object": key}])
    assert [item["input"] for item in report["inputs"]] == ["s0", "s1", "s2"]


def test_a_fit_on_labelled_inputs_is_applied_saved_and_reported(oscar_default: object) -> None:
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

    results, truth = _labelled()
    folder = f"ensemble-tests/{uuid.uuid4().hex}"
    report = _run(
        results,
        top_k=3,
        truth=truth,
        fit_on=truth,
        fit_options={"weights": "caruana"},
        calibration_object=f"{folder}/calibration.json",
        report_object=f"{folder}/report.json",
    )
    calibration = report["calibration"]
    assert calibration["source"] == "fitted" and calibration["in_sample"] is True
    weights = {m: v["weight"] for m, v in calibration["fit"]["models"].items()}
    assert weights["noise"] < weights["sharp"]
    assert calibration["fit"]["models"]["sharp"]["temperature"] > 1  # over-confident: softened
    assert report["method"]["weights"] == weights
    evaluation, baseline = report["evaluation"]["ensemble"], report["baseline"]
    assert evaluation["log_loss"]["value"] < baseline["log_loss"]["value"]
    assert set(report["evaluation"]["models"]) == {"sharp", "soft", "noise"}
    storage = OscarStorageHook()
    saved = json.loads(storage.download_bytes(f"{folder}/calibration.json"))
    assert saved == calibration["fit"]
    objects = sorted(o.key for o in storage.list_objects(folder + "/"))
    assert objects == [
        f"{folder.split('/', 1)[1]}/calibration.json",
        f"{folder.split('/', 1)[1]}/report.json",
    ]
    # a later run loads the saved calibration instead of fitting
    later = _run(results, top_k=3, calibration=f"{folder}/calibration.json")
    assert later["calibration"]["source"] == "loaded"
    assert later["calibration"]["object"] == f"{folder}/calibration.json"
    assert [i["top_k"] for i in later["inputs"]] == [i["top_k"] for i in report["inputs"]]


def test_folds_cross_validate_the_fit_and_mark_each_input(oscar_default: object) -> None:
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

    results, truth = _labelled(45)
    folds = {i: int(i[1:]) % 3 for i in truth}
    folder = f"ensemble-tests/{uuid.uuid4().hex}"
    storage = OscarStorageHook()
    for name, data in (("truth", truth), ("folds", folds)):  # both read from bucket objects
        storage.upload_bytes(f"{folder}/{name}.json", json.dumps(data).encode(), create_bucket=True)
    report = _run(
        results, top_k=3, truth=truth, fit_on=f"{folder}/truth.json", folds=f"{folder}/folds.json"
    )
    assert report["calibration"]["in_sample"] is False
    assert set(report["calibration"]["folds"]) == {"0", "1", "2"}
    assert all(item["fold"] == folds[item["input"]] for item in report["inputs"])
    assert "fold" not in report["method"]


def test_a_missing_calibration_object_fails_naming_it(oscar_default: object) -> None:
    results, _ = _labelled(3)
    with pytest.raises(
        AirflowFailException, match=r"'ensemble-tests/nothing-here/calibration.json' does not exist"
    ):
        _run(results, calibration="ensemble-tests/nothing-here/calibration.json")


def test_fit_on_inputs_without_answers_fails_clearly() -> None:
    results, truth = _labelled(3)
    with pytest.raises(AirflowFailException, match="fit_on names inputs no model answered: s9"):
        _run(results, fit_on={**truth, "s9": "setosa"})
    with pytest.raises(ValueError, match="not both"):
        OscarEnsembleOperator(task_id="x", results=[], fit_on=truth, calibration={})
    with pytest.raises(ValueError, match="give fit_on too"):
        OscarEnsembleOperator(task_id="x", results=[], folds={"s0": 0})


def test_dawid_skene_reports_how_reliable_each_model_looked() -> None:
    results, _ = _labelled(90)
    report = _run(results, method="dawid_skene", top_k=3)
    reliability = report["method"]["reliabilities"]
    assert reliability["sharp"] > reliability["noise"]
