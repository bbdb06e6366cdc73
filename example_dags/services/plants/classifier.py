"""Iris classifier program that every plants service script embeds.

A service script runs this text with ``python3`` after appending the model's parameters
(``MODEL``) and a call to ``main(MODEL)``. Following OSCAR's runtime contract, it reads the
specimen JSON at ``$INPUT_FILE_PATH`` and writes the result, in the format of
``ai4oshub/plants-classification``, to ``$TMP_OUTPUT_DIR/output_<input basename>.json``.
Only the standard library is used, so any ``python3`` (3.7 or later) runs it.

Every model family here (linear and Gaussian discriminants, naive Bayes, nearest centroid,
logistic regression) scores a species by a quadratic in the features,
``Σ_j quadratic_j x_j² + coef_j x_j + intercept``, and the probabilities are the softmax of the
scores. ``MODEL["weights"]`` holds one such set per cross-validation fold, trained without that
fold's specimens, and ``"all"``, trained on every specimen: a specimen with ``"fold": f`` is
classified by the set that never saw it, any other specimen by ``"all"``.
"""

# ruff: noqa: B905 (zip's strict= needs Python 3.10; this program runs on any python3)

from __future__ import annotations

import json
import math
import os
from typing import Any

PYTHON_LITERAL = "python-literal"


class SpecimenError(ValueError):
    """The input is not a specimen that the model can classify."""


def read_specimen(path: str) -> dict[str, Any]:
    """The specimen JSON object at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            specimen = json.load(handle)
    except OSError as error:
        raise SpecimenError(f"cannot read the input file: {error}") from error
    except ValueError as error:
        raise SpecimenError(f"input is not a JSON specimen: {error}") from error
    if not isinstance(specimen, dict):
        raise SpecimenError("input JSON is not an object of measurements in cm")
    return specimen


def measurement(specimen: dict[str, Any], name: str) -> float:
    """The value of ``name`` in ``specimen`` if it is a finite, non-negative number."""
    if name not in specimen:
        raise SpecimenError(f"invalid specimen: {name} is missing")
    value = specimen[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecimenError(f"invalid specimen: {name} is not a number: {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise SpecimenError(f"invalid specimen: {name} is not finite: {value!r}")
    if number < 0:
        raise SpecimenError(f"invalid specimen: {name} is negative: {value!r}")
    return number


def fold_of(specimen: dict[str, Any], folds: list[str]) -> str:
    """The weights to use: the specimen's ``fold`` (one of ``folds``) or ``"all"`` without one."""
    if "fold" not in specimen:
        return "all"
    fold = specimen["fold"]
    if isinstance(fold, bool) or not isinstance(fold, int) or str(fold) not in folds:
        raise SpecimenError(
            f"invalid specimen: fold must be one of {', '.join(folds)} (the cross-validation "
            f"fold it belongs to), got {fold!r}"
        )
    return str(fold)


def predict_proba(weights: dict[str, Any], x: list[float]) -> list[float]:
    """Posterior probability of each label: the softmax of the quadratic scores."""
    scores = [
        bias + sum(q * value * value + c * value for q, c, value in zip(quad, coef, x))
        for quad, coef, bias in zip(weights["quadratic"], weights["coef"], weights["intercept"])
    ]
    top = max(scores)
    exps = [math.exp(score - top) for score in scores]
    total = sum(exps)
    return [e / total for e in exps]


def parse_top_k(text: str | None, n_labels: int) -> int:
    """``TOP_K`` clamped to 1..n_labels; all labels when unset or not an integer."""
    try:
        k = int(text) if text else n_labels
    except ValueError:
        k = n_labels
    return min(max(k, 1), n_labels)


def classify(model: dict[str, Any], path: str, top_k: int) -> dict[str, Any]:
    """The service's result for the specimen at ``path``: top-k labels, or an error."""
    try:
        specimen = read_specimen(path)
        x = [measurement(specimen, name) for name in model["features"]]
        fold = fold_of(specimen, sorted(f for f in model["weights"] if f != "all"))
    except SpecimenError as error:
        return {"status": "error", "message": str(error)}
    probabilities = predict_proba(model["weights"][fold], x)
    ranked = sorted(zip(probabilities, model["labels"]), key=lambda pair: -pair[0])
    return {
        "status": "OK",
        "labels": [label for _, label in ranked[:top_k]],
        "probabilities": [probability for probability, _ in ranked[:top_k]],
    }


def render(result: dict[str, Any], output_format: str) -> str:
    """Strict JSON, or the Python literal that the real hub service writes into its .json."""
    return repr(result) if output_format == PYTHON_LITERAL else json.dumps(result)


def main(model: dict[str, Any]) -> None:
    """Classify ``$INPUT_FILE_PATH``; write and print ``output_<basename>.json``."""
    input_path = os.environ.get("INPUT_FILE_PATH", "")
    top_k = parse_top_k(os.environ.get("TOP_K"), len(model["labels"]))
    text = render(classify(model, input_path, top_k), model["output_format"])
    output_name = "output_" + os.path.basename(input_path) + ".json"
    output_path = os.path.join(os.environ.get("TMP_OUTPUT_DIR", "."), output_name)
    with open(output_path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)
