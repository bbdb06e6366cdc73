"""Fitting the ensemble on labelled data, Dawid-Skene without labels, and the evaluation."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from airflow_provider_oscar.ensemble import (
    AbstainRule,
    Calibration,
    EnsembleError,
    aggregate,
    cross_validate,
    dawid_skene,
    evaluate,
    fit,
)

CLASSES = [f"class {c}" for c in range(4)]


def top_list(p: np.ndarray, k: int | None = None) -> dict[str, Any]:
    """A model's answer: its classes by descending probability (the top ``k``)."""
    order = np.argsort(-p, kind="stable")[:k]
    return {
        "status": "OK",
        "labels": [CLASSES[c] for c in order],
        "probabilities": [float(p[c]) for c in order],
    }


def sharpened(p: np.ndarray, power: float) -> np.ndarray:
    q = p**power
    return q / q.sum(axis=-1, keepdims=True)


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True class distributions (Dirichlet) and labels drawn from them: a calibrated model."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(len(CLASSES), 0.7), n)
    labels = np.array([rng.choice(len(CLASSES), p=row) for row in p])
    return p, labels


def batch(models: dict[str, np.ndarray], k: int | None = None) -> dict[str, dict[str, Any]]:
    n = len(next(iter(models.values())))
    return {f"in{i}": {m: top_list(p[i], k) for m, p in models.items()} for i in range(n)}


def truth_of(labels: np.ndarray) -> dict[str, str]:
    return {f"in{i}": CLASSES[c] for i, c in enumerate(labels)}


# --------------------------------------------------------------------------- temperatures


def test_a_perfectly_calibrated_model_keeps_temperature_one() -> None:
    p, y = synthetic(6000)
    calibration = fit(batch({"calibrated": p}), truth_of(y))
    assert calibration.models["calibrated"]["temperature"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("power", [3.0, 0.5])
def test_an_over_or_under_confident_model_gets_the_temperature_that_undoes_it(power: float) -> None:
    p, y = synthetic(6000, seed=1)
    calibration = fit(batch({"skewed": sharpened(p, power)}), truth_of(y))
    assert calibration.models["skewed"]["temperature"] == pytest.approx(power, rel=0.06)


def test_temperatures_on_top_k_lists_spread_the_residual_over_the_other_classes() -> None:
    # top-2 of 4 classes: the residual covers two unlisted classes; the fit still finds T = 3
    p, y = synthetic(6000, seed=2)
    calibration = fit(batch({"top2": sharpened(p, 3.0)}, k=2), truth_of(y), num_classes=4)
    assert calibration.num_classes == 4
    assert calibration.models["top2"]["temperature"] == pytest.approx(3.0, rel=0.08)


def test_the_pooled_temperature_undoes_what_pooling_does() -> None:
    # two calibrated but independent-noise copies: their mean is under-confident by design
    p, y = synthetic(4000, seed=3)
    rng = np.random.default_rng(4)
    noisy = [sharpened(p * rng.uniform(0.3, 1.7, p.shape), 1.0) for _ in range(2)]
    calibration = fit(batch({"a": noisy[0], "b": noisy[1]}), truth_of(y), weights="equal")
    loss = calibration.log_loss or {}
    assert loss["calibrated"] < loss["equal_weights"]
    off = fit(
        batch({"a": noisy[0], "b": noisy[1]}),
        truth_of(y),
        weights="equal",
        temperatures=False,
        pooled_temperature=False,
    )
    assert off.temperature == 1.0
    assert (off.log_loss or {})["calibrated"] == pytest.approx(loss["equal_weights"])


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("how", ["caruana", "stacking"])
def test_learned_weights_favour_the_informative_model(how: str) -> None:
    p, y = synthetic(3000, seed=5)
    uniform = np.full_like(p, 1 / len(CLASSES))
    noise = sharpened(np.random.default_rng(6).dirichlet(np.ones(len(CLASSES)), len(p)), 1.0)
    calibration = fit(batch({"good": p, "flat": uniform, "noise": noise}), truth_of(y), weights=how)
    w = {m: v["weight"] for m, v in calibration.models.items()}
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["good"] > 0.8
    assert w["good"] > w["flat"] and w["good"] > w["noise"]


def test_caruana_weights_are_counts_of_greedy_picks() -> None:
    p, y = synthetic(500, seed=7)
    calibration = fit(batch({"a": p, "b": sharpened(p, 2.0)}), truth_of(y), rounds=8)
    for entry in calibration.models.values():
        assert (entry["weight"] * 8) == pytest.approx(round(entry["weight"] * 8))


def test_equal_weights_are_equal() -> None:
    p, y = synthetic(200, seed=8)
    calibration = fit(batch({"a": p, "b": p, "c": p}), truth_of(y), weights="equal")
    assert [v["weight"] for v in calibration.models.values()] == pytest.approx([1 / 3] * 3)


# --------------------------------------------------------------------------- applying


def test_a_calibrated_aggregate_gives_probabilities_over_every_class() -> None:
    p, y = synthetic(800, seed=9)
    predictions = batch({"a": sharpened(p, 2.0), "b": p}, k=2)
    calibration = fit(predictions, truth_of(y), num_classes=4)
    results = aggregate(predictions, calibration=calibration.to_json(), top_k=4)
    for result in results:
        listed = len(result["top_k"]["labels"])
        total = sum(result["top_k"]["scores"]) + (4 - listed) * result["unlisted_score"]
        assert total == pytest.approx(1.0)
    method = results[0]["method"]
    assert method["calibration"]["kind"] == "oscar-ensemble-calibration"
    assert method["missing"] == "residual" and method["num_classes"] == 4
    assert method["weights"] == {m: v["weight"] for m, v in calibration.models.items()}


def test_a_calibration_survives_json_and_rejects_what_it_cannot_use() -> None:
    p, y = synthetic(300, seed=10)
    predictions = batch({"a": p, "b": p})
    calibration = fit(predictions, truth_of(y))
    again = Calibration.from_json(json.loads(json.dumps(calibration.to_json())))
    assert again == calibration
    with pytest.raises(EnsembleError, match="no fit for models: c"):
        aggregate({"x": {"c": top_list(p[0])}}, calibration=calibration)
    with pytest.raises(EnsembleError, match="use method='soft_vote' without weights"):
        aggregate(predictions, method="borda", calibration=calibration)
    with pytest.raises(EnsembleError, match="not an ensemble calibration"):
        aggregate(predictions, calibration={"models": {}})
    broken = calibration.to_json()
    broken["models"]["a"]["temperature"] = -1
    with pytest.raises(EnsembleError, match="model 'a' needs a temperature > 0"):
        aggregate(predictions, calibration=broken)


def test_fit_names_what_it_cannot_fit_on() -> None:
    p, _ = synthetic(3)
    predictions = batch({"a": p})
    with pytest.raises(EnsembleError, match="truth names inputs without predictions: nope"):
        fit(predictions, {"nope": "class 0"})
    with pytest.raises(EnsembleError, match="no input has a known label"):
        fit(predictions, {})
    with pytest.raises(EnsembleError, match="unknown weights fit 'best'"):
        fit(predictions, {"in0": "class 0"}, weights="best")


# --------------------------------------------------------------------------- cross-validation


def test_cross_validation_never_fits_on_the_fold_it_scores() -> None:
    p, y = synthetic(600, seed=11)
    predictions = batch({"a": sharpened(p, 2.0), "b": p})
    truth = truth_of(y)
    folds = {f"in{i}": i % 3 for i in range(len(p))}
    first = cross_validate(predictions, truth, folds, top_k=4)
    # relabel fold 0 at random: fold 0's own results cannot change, the others' can
    rng = np.random.default_rng(12)
    scrambled = {i: CLASSES[rng.integers(4)] if folds[i] == 0 else t for i, t in truth.items()}
    second = cross_validate(predictions, scrambled, folds, top_k=4)
    for a, b in zip(first["results"], second["results"], strict=True):
        if folds[a["input"]] == 0:
            assert a["top_k"] == b["top_k"]
    others = [
        (a["top_k"]["scores"], b["top_k"]["scores"])
        for a, b in zip(first["results"], second["results"], strict=True)
        if folds[a["input"]] != 0
    ]
    assert any(x != y for x, y in others)
    assert set(first["calibrations"]) == {"0", "1", "2"}
    assert [r["input"] for r in first["results"]] == list(predictions)
    assert first["results"][0]["method"]["fold"] == 0


def test_cross_validation_needs_a_fold_for_every_input() -> None:
    p, y = synthetic(4)
    with pytest.raises(EnsembleError, match="inputs without a fold: in3"):
        cross_validate(batch({"a": p}), truth_of(y), {"in0": 0, "in1": 0, "in2": 1})


# --------------------------------------------------------------------------- Dawid-Skene


def planted(n: int, seed: int = 13) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Three models answering with known confusion matrices (rows: truth, columns: answer)."""
    rng = np.random.default_rng(seed)
    k = 3
    confusions = [
        np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]]),
        np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]),
        np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]]),
    ]
    truth = rng.choice(k, n, p=[0.5, 0.3, 0.2])
    answers = np.stack([[rng.choice(k, p=c[t]) for t in truth] for c in confusions], axis=1)
    return truth, answers, confusions


def test_dawid_skene_recovers_planted_confusion_matrices() -> None:
    truth, answers, confusions = planted(6000)
    fitted = dawid_skene(answers, iterations=1000)
    assert fitted.converged and fitted.iterations > 1
    k = 3
    post = np.zeros((len(truth), k))
    post[fitted.cand_input, fitted.cand_label] = fitted.posterior
    assert np.allclose(post.sum(axis=1), 1.0)
    for m, planted_confusion in enumerate(confusions):
        estimate = np.zeros((k, k))
        for c in range(k):
            np.add.at(estimate[c], answers[:, m], post[:, c])
        estimate /= estimate.sum(axis=1, keepdims=True)
        assert np.abs(estimate - planted_confusion).max() < 0.05
    prior = post.mean(axis=0)
    assert prior == pytest.approx(np.bincount(truth) / len(truth), abs=0.04)
    assert (post.argmax(axis=1) == truth).mean() > 0.85
    accuracies = [(answers[:, m] == truth).mean() for m in range(3)]
    assert fitted.reliability == pytest.approx(accuracies, abs=0.03)


def test_dawid_skene_outvotes_two_unreliable_models() -> None:
    # the majority (models b and c) is wrong where they agree by chance; a knows better
    truth, answers, _ = planted(4000, seed=14)
    fitted = dawid_skene(answers)
    post = np.zeros((len(truth), 3))
    post[fitted.cand_input, fitted.cand_label] = fitted.posterior
    b_and_c = (answers[:, 1] == answers[:, 2]) & (answers[:, 0] != answers[:, 1])
    majority_right = (answers[b_and_c, 1] == truth[b_and_c]).mean()
    ours_right = (post[b_and_c].argmax(axis=1) == truth[b_and_c]).mean()
    assert ours_right > majority_right


def test_dawid_skene_as_a_method_reports_each_models_reliability() -> None:
    truth, answers, _ = planted(1500, seed=15)
    names = ["a", "b", "c"]
    predictions = {
        f"in{i}": {
            m: {"labels": [CLASSES[answers[i, j]]], "probabilities": [1.0]}
            for j, m in enumerate(names)
        }
        for i in range(len(truth))
    }
    predictions["in0"]["c"] = {"status": "error", "message": "out of memory"}
    results = aggregate(predictions, method="dawid_skene", top_k=3)
    method = results[0]["method"]
    assert list(method["reliabilities"]) == names
    assert method["reliabilities"]["a"] > method["reliabilities"]["b"]
    assert method["iterations"] >= 1 and isinstance(method["converged"], bool)
    assert results[0]["missing_models"] == ["c"]
    for result in results[:50]:  # the mass of classes an input does not list is spread on them
        unlisted = (3 - len(result["top_k"]["labels"])) * result["unlisted_score"]
        assert sum(result["top_k"]["scores"]) + unlisted == pytest.approx(1.0)
    with pytest.raises(EnsembleError, match="'dawid_skene' takes no weights"):
        aggregate(predictions, method="dawid_skene", weights={"a": 1, "b": 1, "c": 1})


# --------------------------------------------------------------------------- evaluation


def test_evaluation_computes_each_metric_by_hand() -> None:
    predictions = {
        "x": {"m": {"labels": ["A", "B"], "probabilities": [0.8, 0.2]}},
        "y": {"m": {"labels": ["A", "B"], "probabilities": [0.6, 0.4]}},
    }
    truth = {"x": "A", "y": "B"}
    results = aggregate(predictions, top_k=2, abstain=AbstainRule(min_margin=0.3))
    report = evaluate(results, truth, bins=2, bootstrap=200)
    for part in (report["ensemble"], report["models"]["m"]):
        assert part["accuracy"]["value"] == 0.5
        assert part["log_loss"]["value"] == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2)
        brier_x = (0.8 - 1) ** 2 + 0.2**2
        brier_y = 0.6**2 + (0.4 - 1) ** 2
        assert part["brier"]["value"] == pytest.approx((brier_x + brier_y) / 2)
        # both tops fall in the upper bin: mean confidence 0.7, accuracy 0.5
        assert part["ece"]["value"] == pytest.approx(0.2)
        assert part["reliability"][1] == {
            "bin": [0.5, 1.0],
            "count": 2,
            "confidence": pytest.approx(0.7),
            "accuracy": 0.5,
        }
        # y's margin 0.2 is below 0.3: abstained there, right where it answered
        assert part["coverage"]["value"] == 0.5
        assert part["selective_accuracy"]["value"] == 1.0
        low, high = part["accuracy"]["low"], part["accuracy"]["high"]
        assert low is not None and high is not None and low <= 0.5 <= high


def test_evaluation_has_no_probabilities_for_rank_methods_and_needs_every_candidate() -> None:
    p, y = synthetic(30, seed=16)
    predictions = batch({"a": p, "b": sharpened(p, 2.0)})
    report = evaluate(aggregate(predictions, method="borda", top_k=4), truth_of(y), bootstrap=10)
    assert report["ensemble"]["log_loss"] is None and report["ensemble"]["ece"] is None
    assert report["ensemble"]["accuracy"]["value"] is not None
    assert report["models"]["a"]["log_loss"]["value"] is not None
    with pytest.raises(EnsembleError, match="aggregate with a larger top_k"):
        evaluate(aggregate(predictions, top_k=2), truth_of(y))


def test_bootstrap_intervals_are_reproducible_and_narrow_with_more_inputs() -> None:
    def width(n: int) -> float:
        p, y = synthetic(n, seed=17)
        report = evaluate(aggregate(batch({"a": p}), top_k=4), truth_of(y), bootstrap=300)
        interval = report["ensemble"]["log_loss"]
        assert interval["low"] <= interval["value"] <= interval["high"]
        return float(interval["high"] - interval["low"])

    assert width(1000) < width(60)
    p, y = synthetic(50, seed=18)
    results = aggregate(batch({"a": p}), top_k=4)
    assert evaluate(results, truth_of(y)) == evaluate(results, truth_of(y))


# --------------------------------------------------------------------------- log-linear pool


def test_the_log_linear_pool_of_one_over_confident_model_is_its_temperature() -> None:
    p, y = synthetic(6000, seed=19)
    calibration = fit(batch({"skewed": sharpened(p, 3.0)}), truth_of(y), pool="log_linear")
    assert calibration.pool == "log_linear"
    assert calibration.models["skewed"] == {"temperature": 1.0, "weight": 1.0}
    assert calibration.temperature == pytest.approx(3.0, rel=0.06)


def test_the_log_linear_pool_adds_up_independent_evidence() -> None:
    # two models each see half of the evidence for the class: their product sees all of it
    rng = np.random.default_rng(20)
    n = 4000
    y = rng.integers(0, len(CLASSES), n)
    evidence = np.eye(len(CLASSES))[y] * 1.5
    views = {
        name: sharpened(np.exp(evidence + rng.normal(0, 1, evidence.shape)), 1.0)
        for name in ("left", "right")
    }
    predictions, truth = batch(views), truth_of(y)
    product = fit(predictions, truth, pool="log_linear")
    mean = fit(predictions, truth)
    assert (product.log_loss or {})["calibrated"] < (mean.log_loss or {})["calibrated"]
    # applied by aggregate, the pool gives the fit's own log loss back
    results = aggregate(predictions, calibration=product, top_k=4)
    report = evaluate(results, truth, bootstrap=0)
    assert report["ensemble"]["log_loss"]["value"] == pytest.approx(
        (product.log_loss or {})["calibrated"]
    )


def test_an_unknown_pool_is_refused() -> None:
    p, y = synthetic(5)
    with pytest.raises(EnsembleError, match="unknown pool 'median'"):
        fit(batch({"a": p}), truth_of(y), pool="median")
