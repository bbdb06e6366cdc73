"""Behaviour of the ensemble aggregation (``airflow_provider_oscar.ensemble``)."""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_oscar.ensemble import (
    METHODS,
    AbstainRule,
    EnsembleError,
    accuracy,
    aggregate,
    aggregate_arrays,
    aggregation,
)
from airflow_provider_oscar.results import Prediction
from benchmarks.ensemble_reference import (
    aggregate_arrays_reference,
    aggregate_reference,
    differences,
)

# Every method but Dawid-Skene scores each input on its own, as the plain-Python reference does.
PER_INPUT_METHODS = [m for m in METHODS if m != "dawid_skene"]


def ok(labels: Any, probabilities: Any) -> dict[str, Any]:
    return {"status": "OK", "labels": labels, "probabilities": probabilities}


# One leaf seen by three models; every hand computation below starts from it.
#   a: Rosa .5, Bellis .3, Iris .1   (sum .9, residual .1)
#   b: Bellis .6, Rosa .2            (sum .8, residual .2)
#   c: Iris .4, Bellis .35, Rosa .05 (sum .8, residual .2)
LEAF = {
    "a": ok(["Rosa", "Bellis", "Iris"], [0.5, 0.3, 0.1]),
    "b": ok(["Bellis", "Rosa"], [0.6, 0.2]),
    "c": ok(["Iris", "Bellis", "Rosa"], [0.4, 0.35, 0.05]),
}


def one(row: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The result for a single input (LEAF unless another row is given)."""
    [result] = aggregate({"leaf": LEAF if row is None else row}, **kwargs)
    return result


def ranking(result: dict[str, Any]) -> list[tuple[str, float]]:
    return list(zip(result["top_k"]["labels"], result["top_k"]["scores"], strict=True))


def assert_ranking(result: dict[str, Any], expected: list[tuple[str, float]]) -> None:
    assert [label for label, _ in ranking(result)] == [label for label, _ in expected]
    assert [s for _, s in ranking(result)] == pytest.approx([s for _, s in expected], abs=1e-12)


# --------------------------------------------------------------------------- methods


def test_soft_vote_averages_probabilities_with_unlisted_labels_as_zero() -> None:
    # Bellis (.3 + .6 + .35) / 3 = .416667; Rosa (.5 + .2 + .05) / 3 = .25;
    # Iris (.1 + 0 + .4) / 3 = .166667 (b did not list it: 0)
    assert_ranking(one(), [("Bellis", 1.25 / 3), ("Rosa", 0.75 / 3), ("Iris", 0.5 / 3)])


def test_residual_spreading_gives_unlisted_labels_the_residual_over_the_unlisted_classes() -> None:
    # C = 10. b listed 2 labels with residual .2: each other class gets .2 / (10 - 2) = .025.
    # Iris (.1 + .025 + .4) / 3 = .175; Bellis and Rosa are listed by all, unchanged.
    result = one(missing="residual", num_classes=10)
    assert_ranking(result, [("Bellis", 1.25 / 3), ("Rosa", 0.25), ("Iris", 0.175)])
    assert result["method"]["missing"] == "residual"


def test_residual_spreading_needs_the_class_count() -> None:
    with pytest.raises(EnsembleError, match="missing='residual' needs num_classes"):
        one(missing="residual")


def test_lists_are_not_renormalised_before_averaging() -> None:
    # b's list sums to .8; renormalising it would give Bellis .75 instead of .6.
    # Bellis (.3 + .6 + .35) / 3 stays .416667.
    assert ranking(one())[0][1] == pytest.approx(1.25 / 3, abs=1e-12)


def test_weighted_mean_weights_each_model_and_renormalises_the_weights() -> None:
    # weights a 5, b 1, c 1 (total 7): Rosa (5*.5 + .2 + .05) / 7 = 2.75/7 = .392857;
    # Bellis (5*.3 + .6 + .35) / 7 = 2.45/7 = .35; Iris (5*.1 + 0 + .4) / 7 = .9/7 = .128571
    result = one(method="weighted_mean", weights={"a": 5, "b": 1, "c": 1})
    assert_ranking(result, [("Rosa", 2.75 / 7), ("Bellis", 2.45 / 7), ("Iris", 0.9 / 7)])
    assert result["method"]["weights"] == {"a": 5.0, "b": 1.0, "c": 1.0}


def test_weights_renormalise_over_the_models_that_answered() -> None:
    # c failed; weights a 3, b 1 (total 4): Rosa (3*.5 + .2) / 4 = .425; Bellis (.9 + .6)/4 = .375
    row = {**LEAF, "c": {"status": "error"}}
    result = one(row, method="weighted_mean", weights={"a": 3, "b": 1, "c": 9})
    assert_ranking(result, [("Rosa", 0.425), ("Bellis", 0.375), ("Iris", 0.075)])


def test_geometric_mean_multiplies_the_floored_probabilities() -> None:
    # floor .01: Bellis (.3*.6*.35)^(1/3) = .063^(1/3); Rosa (.5*.2*.05)^(1/3) = .005^(1/3);
    # Iris (.1 * .01 * .4)^(1/3) = .0004^(1/3) (b's missing Iris is floored to .01)
    result = one(method="geometric_mean", floor=0.01)
    expected = [
        ("Bellis", 0.063 ** (1 / 3)),
        ("Rosa", 0.005 ** (1 / 3)),
        ("Iris", 0.0004 ** (1 / 3)),
    ]
    assert_ranking(result, expected)
    assert result["method"]["floor"] == 0.01


def test_geometric_floor_keeps_a_label_one_model_missed_from_being_vetoed() -> None:
    # A .9, .9 and missing from c; B .05, .05, .5. With floor .01:
    # A (.9 * .9 * .01)^(1/3) = .0081^(1/3) = .2008 beats B (.05 * .05 * .5)^(1/3) = .1077;
    # C (.01 * .01 * .4)^(1/3) = .0342.
    row = {"a": ok(["A", "B"], [0.9, 0.05]), "b": ok(["A", "B"], [0.9, 0.05])}
    row["c"] = ok(["B", "C"], [0.5, 0.4])
    result = one(row, method="geometric_mean", floor=0.01)
    expected = [("A", 0.0081 ** (1 / 3)), ("B", 0.00125 ** (1 / 3)), ("C", 0.00004 ** (1 / 3))]
    assert_ranking(result, expected)


def test_max_takes_each_labels_highest_probability() -> None:
    # Bellis max(.3, .6, .35) = .6; Rosa max(.5, .2, .05) = .5; Iris max(.1, .4) = .4
    assert_ranking(one(method="max"), [("Bellis", 0.6), ("Rosa", 0.5), ("Iris", 0.4)])


def test_majority_vote_counts_each_models_top_label() -> None:
    # top-1s: a Rosa, b Rosa, c Iris -> Rosa 2/3, Iris 1/3, Bellis 0
    row = {**LEAF, "b": ok(["Rosa", "Bellis"], [0.6, 0.2])}
    assert_ranking(
        one(row, method="majority_vote"), [("Rosa", 2 / 3), ("Iris", 1 / 3), ("Bellis", 0.0)]
    )


def test_majority_vote_breaks_ties_by_the_soft_vote_score() -> None:
    # top-1s: a Rosa, b Bellis, c Iris: one vote each (1/3). Soft vote: Bellis .4167 >
    # Rosa .25 > Iris .1667, so Bellis wins with vote share 1/3 and margin 0.
    result = one(method="majority_vote")
    assert_ranking(result, [("Bellis", 1 / 3), ("Rosa", 1 / 3), ("Iris", 1 / 3)])
    assert result["margin"] == 0.0


def test_majority_vote_weights_the_votes() -> None:
    # weights a 1, b 1, c 3 (total 5): Iris 3/5, Rosa 1/5, Bellis 1/5; Bellis before Rosa on
    # soft vote ((.3 + .6 + 3*.35) / 5 = .39 against (.5 + .2 + 3*.05) / 5 = .17)
    result = one(method="majority_vote", weights={"a": 1, "b": 1, "c": 3})
    assert_ranking(result, [("Iris", 0.6), ("Bellis", 0.2), ("Rosa", 0.2)])


def test_borda_gives_k_down_to_1_points_by_list_position() -> None:
    # a (3 long): Rosa 3, Bellis 2, Iris 1; b (2 long): Bellis 2, Rosa 1;
    # c (3 long): Iris 3, Bellis 2, Rosa 1. Bellis 6, Rosa 5, Iris 4.
    assert_ranking(one(method="borda"), [("Bellis", 6.0), ("Rosa", 5.0), ("Iris", 4.0)])


def test_rrf_sums_reciprocal_ranks_offset_by_60() -> None:
    # Bellis 1/62 + 1/61 + 1/62; Rosa 1/61 + 1/62 + 1/63; Iris 1/63 + 1/61
    result = one(method="rrf")
    expected = [
        ("Bellis", 1 / 62 + 1 / 61 + 1 / 62),
        ("Rosa", 1 / 61 + 1 / 62 + 1 / 63),
        ("Iris", 1 / 63 + 1 / 61),
    ]
    assert_ranking(result, expected)
    assert result["method"]["rrf_k"] == 60


def test_rrf_offset_is_configurable() -> None:
    # k0 = 0: Bellis 1/2 + 1 + 1/2 = 2; Rosa 1 + 1/2 + 1/3 = 1.8333; Iris 1/3 + 1 = 1.3333
    result = one(method="rrf", rrf_k=0)
    assert_ranking(result, [("Bellis", 2.0), ("Rosa", 11 / 6), ("Iris", 4 / 3)])


# --------------------------------------------------------------------------- per-input outputs


def test_support_counts_the_models_that_listed_each_label() -> None:
    # Bellis and Rosa are in all three lists, Iris in a's and c's
    assert one()["top_k"]["support"] == [3, 3, 2]


def test_vote_share_is_the_share_of_models_whose_top_label_won() -> None:
    # Bellis wins the soft vote, but only b ranks it first: 1/3
    assert one()["vote_share"] == pytest.approx(1 / 3)


def test_vote_share_uses_the_weights() -> None:
    # Rosa wins; only a (weight 5 of 7) ranks it first
    result = one(method="weighted_mean", weights={"a": 5, "b": 1, "c": 1})
    assert result["vote_share"] == pytest.approx(5 / 7)


def test_margin_is_the_first_score_minus_the_second() -> None:
    # .416667 - .25 = .166667
    assert one()["margin"] == pytest.approx(1.25 / 3 - 0.25)


def test_margin_of_a_single_label_is_measured_against_an_unlisted_label() -> None:
    # Only "A" .9 (residual .1, C = 10): an unlisted class gets .1 / 9; margin .9 - .011111
    result = one({"a": ok(["A"], [0.9])}, missing="residual", num_classes=10)
    assert result["margin"] == pytest.approx(0.9 - 0.1 / 9)


def test_entropy_is_of_the_renormalised_ensemble_vector() -> None:
    # scores .416667, .25, .166667 sum to .833333 -> .5, .3, .2;
    # H = -(.5 ln .5 + .3 ln .3 + .2 ln .2) = 1.029653 nats
    expected = -sum(p * math.log(p) for p in (0.5, 0.3, 0.2))
    assert one()["entropy"] == pytest.approx(expected)


def test_entropy_with_residual_spreading_covers_every_class() -> None:
    # "A" .9, residual .1 over 9 other classes of C = 10: H = -(.9 ln .9 + 9 * (.1/9) ln(.1/9))
    result = one({"a": ok(["A"], [0.9])}, missing="residual", num_classes=10)
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1 / 9))
    assert result["entropy"] == pytest.approx(expected)


def test_provenance_keeps_each_models_list_residual_and_status() -> None:
    row = {**LEAF, "c": {"status": "error", "message": "CUDA out of memory"}}
    provenance = one(row)["provenance"]
    assert provenance[0] == {
        "model": "a",
        "status": "ok",
        "labels": ["Rosa", "Bellis", "Iris"],
        "probabilities": [0.5, 0.3, 0.1],
        "residual": pytest.approx(0.1),
        "message": None,
        "source": None,
    }
    assert provenance[2] == {
        "model": "c",
        "status": "error",
        "labels": [],
        "probabilities": [],
        "residual": None,
        "message": "CUDA out of memory",
        "source": None,
    }


def test_method_description_names_every_choice() -> None:
    assert one(method="borda", top_k=2)["method"] == {
        "combiner": "borda",
        "weights": None,
        "missing": "zero",
        "floor": None,
        "rrf_k": None,
        "num_classes": None,
        "top_k": 2,
        "min_models": 1,
        "abstain": {"min_margin": 0.0, "min_vote_share": 0.0, "min_top_score": 0.0},
    }


def test_top_k_limits_the_consensus_list() -> None:
    assert one(top_k=2)["top_k"]["labels"] == ["Bellis", "Rosa"]


def test_top_k_longer_than_the_listed_labels_returns_them_all() -> None:
    assert one(top_k=50)["top_k"]["labels"] == ["Bellis", "Rosa", "Iris"]


def test_ties_are_broken_by_support_then_by_label() -> None:
    # X (a .4), Y (a .2, b .2) and Z (b .4) all score .2; Y has support 2, then X before Z
    row = {"a": ok(["X", "Y"], [0.4, 0.2]), "b": ok(["Z", "Y"], [0.4, 0.2])}
    assert one(row)["top_k"]["labels"] == ["Y", "X", "Z"]


def test_scores_equal_but_for_rounding_count_as_tied() -> None:
    # (.1 + .2) / 2 is 0.15000000000000002 in floating point, .3 / 2 is 0.15: a tie, so the
    # support (2 against 1) decides, not the rounding error
    row = {"a": ok(["Z", "A"], [0.1, 0.3]), "b": ok(["Z"], [0.2])}
    assert one(row)["top_k"]["labels"] == ["Z", "A"]
    row = {"a": ok(["A", "Z"], [0.3, 0.2]), "b": ok(["Z"], [0.1])}
    assert one(row)["top_k"]["labels"] == ["Z", "A"]


def test_results_come_in_input_order() -> None:
    results = aggregate({"z": LEAF, "a": LEAF, "m": LEAF})
    assert [r["input"] for r in results] == ["z", "a", "m"]


def test_results_are_json_plain() -> None:
    results = aggregate({"leaf": LEAF}, missing="residual", num_classes=10)
    assert json.loads(json.dumps(results, allow_nan=False)) == results


def test_no_predictions_give_no_results() -> None:
    assert aggregate({}) == []


# --------------------------------------------------------------------------- abstention


def test_nothing_abstains_by_default() -> None:
    assert one()["abstained"] is False
    assert one()["abstain_reasons"] == []


def test_abstains_when_the_margin_is_below_the_threshold() -> None:
    # margin .166667 < .2
    result = one(abstain=AbstainRule(min_margin=0.2))
    assert (result["abstained"], result["abstain_reasons"]) == (True, ["margin"])


def test_abstains_when_the_vote_share_is_below_the_threshold() -> None:
    # vote share 1/3 < .5
    result = one(abstain=AbstainRule(min_vote_share=0.5))
    assert (result["abstained"], result["abstain_reasons"]) == (True, ["vote_share"])


def test_abstains_when_the_top_score_is_below_the_threshold() -> None:
    # top score .416667 < .5
    result = one(abstain=AbstainRule(min_top_score=0.5))
    assert (result["abstained"], result["abstain_reasons"]) == (True, ["top_score"])


def test_does_not_abstain_when_every_threshold_is_met() -> None:
    result = one(abstain=AbstainRule(min_margin=0.1, min_vote_share=0.3, min_top_score=0.4))
    assert result["abstained"] is False


# --------------------------------------------------------------------------- missing models


def test_aggregates_the_models_that_answered_and_lists_the_missing_ones() -> None:
    # c has no entry: Bellis (.3 + .6) / 2 = .45, Rosa (.5 + .2) / 2 = .35, Iris .1 / 2 = .05
    row = {"a": LEAF["a"], "b": LEAF["b"]}
    result = one(row, models=["a", "b", "c"])
    assert_ranking(result, [("Bellis", 0.45), ("Rosa", 0.35), ("Iris", 0.05)])
    assert result["missing_models"] == ["c"]
    assert result["provenance"][2]["status"] == "missing"


def test_raises_when_fewer_than_min_models_answered() -> None:
    row = {"a": LEAF["a"], "b": LEAF["b"]}
    with pytest.raises(EnsembleError, match=r"input 'leaf': 2 of 3 models answered \(missing: c\)"):
        one(row, models=["a", "b", "c"], min_models=3)


def test_status_error_counts_as_missing() -> None:
    row = {**LEAF, "c": {"status": "error", "message": "bad image"}}
    result = one(row)
    assert_ranking(result, [("Bellis", 0.45), ("Rosa", 0.35), ("Iris", 0.05)])
    assert result["missing_models"] == ["c"]


def test_a_none_prediction_counts_as_missing() -> None:
    assert one({**LEAF, "c": None})["missing_models"] == ["c"]


def test_status_is_compared_case_insensitively() -> None:
    row = {name: {**p, "status": " ok "} for name, p in LEAF.items()}
    assert one(row)["missing_models"] == []


def test_accepts_prediction_objects_and_keeps_their_source() -> None:
    row: dict[str, Any] = {
        name: Prediction(tuple(p["labels"]), tuple(p["probabilities"]), source=f"out/{name}.json")
        for name, p in LEAF.items()
    }
    row["c"] = Prediction((), (), status="error", message="timeout", source="out/c.json")
    result = one(row)
    assert ranking(result) == ranking(one({"a": LEAF["a"], "b": LEAF["b"]}))
    assert [p["source"] for p in result["provenance"]] == ["out/a.json", "out/b.json", "out/c.json"]
    assert result["provenance"][2]["message"] == "timeout"


# --------------------------------------------------------------------------- labels


def test_accepts_any_mapping_and_label_strings_of_any_str_type() -> None:
    class Name(str):
        pass

    row = {"a": MappingProxyType(ok([Name("Rosa  canina")], [0.6])), "b": ok(["Iris"], [0.5])}
    assert one(row)["top_k"]["labels"] == ["Rosa canina", "Iris"]


def test_labels_merge_after_normalising_whitespace_and_case() -> None:
    row = {"a": ok(["Rosa  canina", "Iris"], [0.6, 0.2]), "b": ok([" rosa CANINA "], [0.4])}
    result = one(row)
    assert result["top_k"]["labels"] == ["Rosa canina", "Iris"]
    assert result["top_k"]["support"] == [2, 1]


def test_a_label_keeps_the_first_form_seen_in_the_batch() -> None:
    results = aggregate(
        {"one": {"a": ok(["rosa  canina"], [0.9])}, "two": {"a": ok(["Rosa canina"], [0.9])}}
    )
    assert [r["winner"] for r in results] == ["rosa canina", "rosa canina"]


def test_provenance_keeps_the_labels_as_each_model_gave_them() -> None:
    result = one({"a": ok([" rosa CANINA "], [0.4])})
    assert result["provenance"][0]["labels"] == [" rosa CANINA "]


# --------------------------------------------------------------------------- provenance option


def test_without_provenance_the_results_are_the_same_but_for_the_provenance() -> None:
    row = {**LEAF, "c": {"status": "error", "message": "CUDA out of memory"}}
    full = one(row, method="borda", top_k=2)
    lean = one(row, method="borda", top_k=2, provenance=False)
    assert "provenance" not in lean
    assert lean == {k: v for k, v in full.items() if k != "provenance"}
    assert lean["missing_models"] == ["c"]  # the failed model is still named


def test_accuracy_without_provenance_reports_the_ensemble_but_no_models() -> None:
    results = aggregate({"leaf": LEAF, "twig": {"a": ok(["Rosa"], [0.9])}}, provenance=False)
    report = accuracy(results, {"leaf": "bellis", "twig": "Rosa"})
    assert report["models"] == {}
    assert (report["ensemble"], report["coverage"]) == (1.0, 1.0)


# --------------------------------------------------------------------------- arrays


def leaf_arrays() -> tuple[Any, ...]:
    """LEAF as arrays: vocabulary positions, -1 past b's two labels."""
    vocabulary = ["Iris", "Bellis", "Rosa", "Tulipa"]
    labels = [[[2, 1, 0], [1, 2, -1], [0, 1, 2]]]
    probabilities = [[[0.5, 0.3, 0.1], [0.6, 0.2, 0.0], [0.4, 0.35, 0.05]]]
    return ["leaf"], ["a", "b", "c"], vocabulary, labels, probabilities


def test_arrays_give_the_results_of_the_mappings() -> None:
    [result] = aggregate_arrays(*leaf_arrays())
    assert result == one()
    assert_ranking(result, [("Bellis", 1.25 / 3), ("Rosa", 0.75 / 3), ("Iris", 0.5 / 3)])


def test_arrays_mark_the_models_that_did_not_answer_as_missing() -> None:
    answered = np.array([[True, True, False]])
    [result] = aggregate_arrays(*leaf_arrays(), answered=answered, provenance=False)
    assert_ranking(result, [("Bellis", 0.45), ("Rosa", 0.35), ("Iris", 0.05)])
    assert result["missing_models"] == ["c"]
    [full] = aggregate_arrays(*leaf_arrays(), answered=answered)
    assert full["provenance"][2] == {
        "model": "c",
        "status": "missing",
        "labels": [],
        "probabilities": [],
        "residual": None,
        "message": None,
        "source": None,
    }


def test_arrays_show_the_form_of_a_label_the_batch_lists_first() -> None:
    # "rosa" and "Rosa " are one label; the batch lists "rosa" first although the vocabulary
    # has "Rosa " first
    vocabulary = ["Rosa ", "rosa", "Iris"]
    labels = [[[1, 2]], [[0, 2]]]
    results = aggregate_arrays(["x", "y"], ["a"], vocabulary, labels, [[[0.6, 0.2]], [[0.7, 0.1]]])
    assert [r["winner"] for r in results] == ["rosa", "rosa"]


def test_an_empty_batch_of_arrays_gives_no_results() -> None:
    assert (
        aggregate_arrays([], ["a"], ["Rosa"], np.zeros((0, 1, 5), int), np.zeros((0, 1, 5))) == []
    )


BAD_ARRAYS = [
    ({"inputs": ["leaf", "leaf"]}, "inputs contains duplicate ids"),
    ({"models": [], "labels": np.zeros((1, 0, 3), int)}, "no models to aggregate"),
    ({"models": ["a", "a", "c"]}, "models contains duplicate names"),
    ({"labels": [[[2, 1, 0]]]}, "labels must have shape (inputs, models, k) = (1, 3, k >= 1)"),
    ({"labels": np.zeros((1, 3, 3))}, "labels must be integer positions in the vocabulary"),
    ({"probabilities": [[[0.5, 0.3]] * 3]}, "probabilities have shape (1, 3, 2), labels (1, 3, 3)"),
    ({"probabilities": [[["x"] * 3] * 3]}, "probabilities must be numbers"),
    ({"answered": [[1, 1, 1]]}, "answered must be a boolean array of shape (1, 3)"),
    ({"labels": [[[2, 1, 0], [1, 2, -1], [0, 4, 2]]]}, "input 'leaf', model 'c': label 4 outside"),
    ({"labels": [[[2, 1, 0], [1, -1, 2], [0, 1, 2]]]}, "input 'leaf', model 'b': a label after -1"),
    ({"labels": [[[2, 1, 0], [-1, -1, -1], [0, 1, 2]]]}, "model 'b': answered but no labels"),
    ({"labels": [[[2, 1, 2], [1, 2, -1], [0, 1, 2]]]}, "model 'a': label 'Rosa' listed twice"),
    ({"vocabulary": ["Iris", "Bellis", "Rosa", " "]}, "labels must be non-empty strings, got ' '"),
    (
        {"probabilities": [[[0.5, 0.3, 0.1], [0.6, 0.2, 0.0], [0.4, 0.35, 0.5]]]},
        "input 'leaf', model 'c': probabilities sum to 1.25 > 1",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_ARRAYS, ids=[m for _, m in BAD_ARRAYS])
def test_rejects_bad_arrays_naming_what_is_wrong(change: dict[str, Any], message: str) -> None:
    names = ("inputs", "models", "vocabulary", "labels", "probabilities")
    arguments = {**dict(zip(names, leaf_arrays(), strict=True)), **change}
    with pytest.raises(EnsembleError, match=re.escape(message)):
        aggregate_arrays(**arguments)


def test_labels_of_models_that_did_not_answer_are_not_checked() -> None:
    inputs, models, vocabulary, _, probabilities = leaf_arrays()
    labels = [[[2, 1, 0], [1, 2, -1], [99, -1, 7]]]
    answered = [[True, True, False]]
    [result] = aggregate_arrays(
        inputs, models, vocabulary, labels, probabilities, answered=answered
    )
    assert result["missing_models"] == ["c"]


# --------------------------------------------------------------------------- accuracy


def test_accuracy_reports_each_model_and_the_ensemble_on_inputs_with_known_truth() -> None:
    # leaf: ensemble Bellis, a Rosa, b Bellis, c Iris. twig: a alone answers, Rosa.
    # Truth leaf Bellis, twig Rosa; "stone" has no result and is ignored.
    results = aggregate({"leaf": LEAF, "twig": {"a": ok(["Rosa"], [0.9])}}, models=["a", "b", "c"])
    report = accuracy(results, {"leaf": "bellis", "twig": "Rosa", "stone": "Iris"})
    assert report == {
        "inputs": 2,
        "ensemble": 1.0,
        "models": {"a": 0.5, "b": 0.5, "c": 0.0},
        "coverage": 1.0,
        "selective_accuracy": 1.0,
    }


def test_accuracy_reports_coverage_and_accuracy_without_the_abstentions() -> None:
    # leaf (margin .1667) abstains under min_margin .5; twig (margin .9) does not
    results = aggregate(
        {"leaf": LEAF, "twig": {"a": ok(["Rosa"], [0.9])}}, abstain=AbstainRule(min_margin=0.5)
    )
    report = accuracy(results, {"leaf": "Iris", "twig": "Rosa"})
    assert (report["ensemble"], report["coverage"], report["selective_accuracy"]) == (0.5, 0.5, 1.0)


# --------------------------------------------------------------------------- bad arguments


BAD_ARGUMENTS = [
    ({"method": "median"}, "unknown method 'median'"),
    ({"missing": "upper"}, "unknown missing option 'upper'"),
    ({"method": "borda", "missing": "residual", "num_classes": 9}, "missing must be 'zero'"),
    ({"method": "weighted_mean"}, "method 'weighted_mean' needs weights"),
    ({"method": "max", "weights": {"a": 1, "b": 1, "c": 1}}, "method 'max' takes no weights"),
    ({"weights": {"a": -1, "b": 1, "c": 1}}, "weights must be finite and >= 0; bad for models: a"),
    ({"weights": {"a": 0, "b": 0, "c": 0}}, "weights sum to zero"),
    ({"weights": {"a": 1, "b": 1, "c": 1, "d": 1}}, "weights given for unknown models: d"),
    ({"weights": {"a": 1, "b": 1}}, "no weight given for models: c"),
    ({"top_k": 0}, "top_k must be an integer >= 1, got 0"),
    ({"top_k": 2.5}, "top_k must be an integer >= 1, got 2.5"),
    ({"floor": 0.0}, "floor must be a number with 0 < floor < 1, got 0.0"),
    ({"floor": -1e-6}, "floor must be a number with 0 < floor < 1"),
    ({"rrf_k": -1}, "rrf_k must be a number >= 0, got -1"),
    ({"min_models": 0}, "min_models must be an integer >= 1, got 0"),
    ({"min_models": 4}, "min_models=4 exceeds the 3 models"),
    ({"num_classes": 0}, "num_classes must be an integer >= 1, got 0"),
    ({"num_classes": 2}, "num_classes=2 is less than the 3 labels listed for input 'leaf'"),
    ({"abstain": AbstainRule(min_margin=math.nan)}, "abstain min_margin must be a finite number"),
    ({"models": ["a", "b"]}, "predictions from models not in models: c"),
    ({"models": ["a", "a", "b", "c"]}, "models contains duplicate names"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS])
def test_rejects_bad_arguments_naming_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EnsembleError, match=re.escape(message)):
        one(**kwargs)


BAD_PREDICTIONS = [
    (ok(["A", "B"], [0.5]), "input 'leaf', model 'c': 2 labels but 1 probabilities"),
    (ok(["A"], [1.5]), "input 'leaf', model 'c': probability 1.5 outside [0, 1]"),
    (ok(["A"], [-0.1]), "input 'leaf', model 'c': probability -0.1 outside"),
    (ok(["A", "B"], [0.7, 0.4]), "input 'leaf', model 'c': probabilities sum to 1.1"),
    (ok(["A", " a"], [0.5, 0.1]), "input 'leaf', model 'c': label 'A' listed twice"),
    (ok([], []), "input 'leaf', model 'c': status ok but no labels"),
    (ok("AB", [0.5, 0.1]), "input 'leaf', model 'c': labels and probabilities must be lists"),
    ({"status": "ok"}, "input 'leaf', model 'c': labels and probabilities must be lists"),
    (ok(["A"], ["high"]), "probabilities must be numbers"),
    (ok([7], [0.5]), "labels must be non-empty strings, got 7"),
    (ok(["  "], [0.5]), "labels must be non-empty strings, got '  '"),
    (ok([["A"]], [0.5]), "labels must be strings"),
    ({**ok(["A"], [0.5]), "status": ["ok"]}, "statuses must be strings"),
]


@pytest.mark.parametrize(
    ("prediction", "message"), BAD_PREDICTIONS, ids=[m for _, m in BAD_PREDICTIONS]
)
def test_rejects_malformed_predictions_naming_input_and_model(
    prediction: dict[str, Any], message: str
) -> None:
    with pytest.raises(EnsembleError, match=re.escape(message)):
        one({**LEAF, "c": prediction})


def test_probabilities_within_rounding_of_one_are_accepted() -> None:
    # float32 outputs: a list summing to 1 + 1e-7, a single probability of 1 + 1e-7
    assert one({"a": ok(["A", "B"], [0.7, 0.3 + 1e-7])})["winner"] == "A"
    assert one({"a": ok(["A"], [1 + 1e-7])})["winner"] == "A"


@pytest.mark.parametrize(
    ("probabilities", "problem"),
    [
        ([0.7, 0.3 + 0.9e-6], None),  # a sum just inside the 1e-6 tolerance
        ([0.7, 0.3 + 1.1e-6], "probabilities sum to 1.0000011 > 1"),  # just outside it
        ([1 + 0.9e-6], None),
        ([1 + 1.1e-6], "probability 1.0000011 outside [0, 1]"),
    ],
)
def test_the_tolerance_on_probabilities_ends_at_one_millionth(
    probabilities: list[float], problem: str | None
) -> None:
    labels = ["A", "B"][: len(probabilities)]
    if problem is None:
        assert one({"a": ok(labels, probabilities)})["winner"] == "A"
    else:
        with pytest.raises(EnsembleError, match=re.escape(f"model 'a': {problem}")):
            one({"a": ok(labels, probabilities)})


def test_rejects_an_input_whose_answering_models_all_weigh_zero() -> None:
    row = {"a": LEAF["a"], "b": {"status": "error"}}
    with pytest.raises(EnsembleError, match="input 'leaf': every model that answered has weight 0"):
        one(row, weights={"a": 0, "b": 1})


def test_rejects_an_input_that_is_not_a_mapping() -> None:
    with pytest.raises(EnsembleError, match="input 'leaf': expected a mapping"):
        aggregate({"leaf": ["a", "b"]})  # type: ignore[dict-item]


def test_ensemble_error_is_a_value_error() -> None:
    assert issubclass(EnsembleError, ValueError)


# --------------------------------------------------------------------------- scale


def test_memory_grows_with_the_listed_labels_not_with_the_vocabulary() -> None:
    # 2,000 inputs x 5 models x top-5 over 10,000 labels: a dense inputs x models x vocabulary
    # array would take 800 MB; the candidate matrices take a few MB.
    predictions = {
        f"img{i}": {
            f"m{m}": ok(
                [f"Species {(i * 7 + m * 13 + j * 101) % 10_000}" for j in range(5)], [0.15] * 5
            )
            for m in range(5)
        }
        for i in range(2_000)
    }
    tracemalloc.start()
    try:
        aggregate(predictions, missing="residual", num_classes=10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_chunks_of_inputs_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # inputs are aggregated a few listed labels at a time; here 7 labels, about 2 inputs
    rows = {f"in{i}": {**LEAF, "c": {"status": "error", "message": f"m{i}"}} for i in range(5)}
    rows["in3"] = {"a": ok(["Tulipa", "rosa"], [0.6, 0.3]), "b": LEAF["b"]}
    kwargs: dict[str, Any] = {"method": "geometric_mean", "missing": "residual", "num_classes": 20}
    whole = aggregate(rows, models=["a", "b", "c"], **kwargs)
    monkeypatch.setattr(aggregation, "CHUNK_ENTRIES", 7)
    chunked = aggregate(rows, models=["a", "b", "c"], **kwargs)
    assert chunked == whole
    assert differences(chunked, aggregate_reference(rows, models=["a", "b", "c"], **kwargs)) == []


def test_a_bad_prediction_in_a_later_chunk_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregation, "CHUNK_ENTRIES", 3)
    rows = {f"in{i}": {"a": ok(["Rosa"], [0.5])} for i in range(10)}
    rows["in8"] = {"a": ok(["Rosa", "rosa"], [0.5, 0.1])}
    with pytest.raises(EnsembleError, match="input 'in8', model 'a': label 'Rosa' listed twice"):
        aggregate(rows)


def reference_check(predictions: dict[str, Any], **kwargs: Any) -> None:
    got = aggregate(predictions, **kwargs)
    assert differences(got, aggregate_reference(predictions, **kwargs)) == []


def test_inputs_with_very_different_numbers_of_labels_rank_as_the_reference() -> None:
    # one input lists 300 labels, the others one each: their rankings are sorted in groups
    wide = {f"m{m}": ok([f"S{m * 60 + j}" for j in range(60)], [0.01] * 60) for m in range(5)}
    rows = {"wide": wide, **{f"n{i}": {"m0": ok([f"S{i}"], [0.5])} for i in range(20)}}
    reference_check(rows, top_k=7)


def test_many_models_rank_as_the_reference() -> None:
    # 40 models: the support no longer fits beside the column in one integer key
    rows = {
        f"in{i}": {
            f"m{m}": ok([f"S{(i + m * 7 + j) % 300}" for j in range(5)], [0.1] * 5)
            for m in range(40)
        }
        for i in range(3)
    }
    reference_check(rows, top_k=10)


def test_more_than_65536_labels_rank_as_the_reference() -> None:
    words = [f"S{n:06d}" for n in range(70_000)]
    labels = np.array([[[69_999, 5, 66_000]], [[66_000, 69_999, 1]]])
    probabilities = np.array([[[0.5, 0.3, 0.1]], [[0.4, 0.4, 0.2]]])
    got = aggregate_arrays(["x", "y"], ["a"], words, labels, probabilities)
    expected = aggregate_arrays_reference(
        ["x", "y"], ["a"], words, labels.tolist(), probabilities.tolist()
    )
    assert differences(got, expected) == []
    assert got[1]["top_k"]["labels"] == ["S066000", "S069999", "S000001"]


def test_scores_too_small_for_normal_floats_rank_as_the_reference() -> None:
    # subnormal soft-vote scores: ranked by their rounded values, not their bits
    row = {"a": ok(["A", "B", "C"], [3e-310, 2e-310, 3e-310]), "b": ok(["B"], [1e-310])}
    reference_check({"leaf": row})


# --------------------------------------------------------------------------- reference


_NAMES = ["Rosa", "rosa ", "Bellis", "Iris  sibirica", "iris sibirica", "Tulipa", "A", "B"]


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """A few inputs and models; outputs ok, error or absent; probabilities in twentieths so that
    exact ties are common; every input answered by at least one model."""
    models = [f"m{j}" for j in range(draw(st.integers(1, 4)))]
    predictions: dict[str, dict[str, Any]] = {}
    for i in range(draw(st.integers(1, 5))):
        row: dict[str, Any] = {}
        for m in models:
            kind = draw(st.sampled_from(["ok", "ok", "ok", "error", "absent"]))
            if kind == "error":
                row[m] = {"status": "error", "message": "failed"}
            elif kind == "ok":
                labels = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4))
                labels = list({" ".join(x.split()).casefold(): x for x in labels}.values())
                twentieths = draw(
                    st.lists(st.integers(0, 8), min_size=len(labels), max_size=len(labels)).filter(
                        lambda n: sum(n) <= 20
                    )
                )
                row[m] = ok(labels, [n / 20 for n in twentieths])
        if not any(p.get("status") == "OK" for p in row.values()):
            row[models[0]] = ok(["Rosa"], [0.5])
        predictions[f"input{i}"] = row
    return predictions, models


def options(data: st.DataObject, method: str, models: list[str]) -> dict[str, Any]:
    """Arguments for ``method``: top-k, thresholds, and weights, missing-label option, class
    count, floor or RRF offset as the method allows."""
    kwargs: dict[str, Any] = {
        "method": method,
        "top_k": data.draw(st.integers(1, 6)),
        "abstain": AbstainRule(min_margin=0.0371, min_vote_share=0.4123, min_top_score=0.1234),
    }
    if method == "weighted_mean" or (method != "max" and data.draw(st.booleans())):
        kwargs["weights"] = {m: data.draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])) for m in models}
    if method not in ("borda", "rrf") and data.draw(st.booleans()):
        kwargs["missing"] = "residual"
    if kwargs.get("missing") == "residual" or data.draw(st.booleans()):
        kwargs["num_classes"] = data.draw(st.integers(6, 12))
    if method == "geometric_mean":
        kwargs["floor"] = data.draw(st.sampled_from([1e-6, 0.01]))
    if method == "rrf":
        kwargs["rrf_k"] = data.draw(st.sampled_from([0, 1, 60]))
    return kwargs


def without_provenance(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "provenance"} for r in results]


@pytest.mark.parametrize("method", PER_INPUT_METHODS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_vectorised_results_equal_the_plain_python_reference(
    method: str, data: st.DataObject
) -> None:
    predictions, models = data.draw(batches())
    kwargs = {"models": models, **options(data, method, models)}
    got = aggregate(predictions, **kwargs)
    assert differences(got, aggregate_reference(predictions, **kwargs)) == []
    lean = aggregate(predictions, provenance=False, **kwargs)
    assert lean == without_provenance(got)
    assert differences(lean, aggregate_reference(predictions, provenance=False, **kwargs)) == []


class Arrays:
    """A batch of mappings as ``aggregate_arrays`` takes it, and the mapping it stands for."""

    def __init__(self, predictions: dict[str, dict[str, Any]], models: list[str]) -> None:
        answers = {
            (i, m): p
            for i, row in enumerate(predictions.values())
            for m, p in enumerate(row.get(name) for name in models)
            if p is not None and str(p.get("status") or "ok").strip().casefold() == "ok"
        }
        words = {label: None for p in answers.values() for label in p["labels"]}
        self.vocabulary = ["Unused  word", *words]  # an entry no model lists
        k = max((len(p["labels"]) for p in answers.values()), default=1)
        self.inputs, self.models = list(predictions), models
        self.labels = np.full((len(self.inputs), len(models), k), -1)
        self.probabilities = np.full(self.labels.shape, 0.5)  # ignored past the lists
        self.answered = np.zeros(self.labels.shape[:2], bool)
        for (i, m), p in answers.items():
            n = len(p["labels"])
            self.labels[i, m, :n] = [self.vocabulary.index(label) for label in p["labels"]]
            self.probabilities[i, m, :n] = p["probabilities"]
            self.answered[i, m] = True
        self.mapping = {
            input_id: {name: answers.get((i, m)) for m, name in enumerate(models)}
            for i, input_id in enumerate(self.inputs)
        }

    def aggregate(self, **kwargs: Any) -> list[dict[str, Any]]:
        return aggregate_arrays(*self.args(), answered=self.answered, **kwargs)

    def reference(self, **kwargs: Any) -> list[dict[str, Any]]:
        labels, probabilities = self.labels.tolist(), self.probabilities.tolist()
        return aggregate_arrays_reference(
            self.inputs,
            self.models,
            self.vocabulary,
            labels,
            probabilities,
            answered=self.answered.tolist(),
            **kwargs,
        )

    def args(self) -> tuple[Any, ...]:
        return self.inputs, self.models, self.vocabulary, self.labels, self.probabilities


@pytest.mark.parametrize("method", PER_INPUT_METHODS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_arrays_give_what_the_equivalent_mappings_give(method: str, data: st.DataObject) -> None:
    predictions, models = data.draw(batches())
    kwargs = options(data, method, models)
    batch = Arrays(predictions, models)
    got = batch.aggregate(**kwargs)
    assert got == aggregate(batch.mapping, models=models, **kwargs)
    assert differences(got, batch.reference(**kwargs)) == []
    chunk_entries, aggregation.CHUNK_ENTRIES = aggregation.CHUNK_ENTRIES, 3  # an input a chunk
    try:
        assert batch.aggregate(**kwargs) == got
        assert aggregate(batch.mapping, models=models, **kwargs) == got
    finally:
        aggregation.CHUNK_ENTRIES = chunk_entries
    lean = batch.aggregate(provenance=False, **kwargs)
    assert differences(lean, batch.reference(provenance=False, **kwargs)) == []
