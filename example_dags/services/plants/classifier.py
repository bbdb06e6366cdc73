"""Iris classifier program that every plants service script embeds.

A service script runs this text with ``python3`` after appending the model's parameters
(``MODEL``) and a call to ``main(MODEL)``. Following OSCAR's runtime contract, it reads the
specimen JSON at ``$INPUT_FILE_PATH`` and writes the result, in the format of
``ai4oshub/plants-classification``, to ``$TMP_OUTPUT_DIR/output_<input basename>.json``.
Only the standard library is used, so any ``python3`` (3.7 or later) runs it.
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


def read_features(path: str, features: list[str]) -> list[float]:
    """Return the measurements named by ``features`` from the specimen JSON at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            specimen = json.load(handle)
    except OSError as error:
        raise SpecimenError(f"cannot read the input file: {error}") from error
    except ValueError as error:
        raise SpecimenError(f"input is not a JSON specimen: {error}") from error
    if not isinstance(specimen, dict):
        raise SpecimenError("input JSON is not an object of measurements in cm")
    return [measurement(specimen, name) for name in features]


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


def predict_proba(model: dict[str, Any], x: list[float]) -> list[float]:
    """Posterior probability of each label: the softmax of the linear discriminants."""
    scores = [
        bias + sum(weight * value for weight, value in zip(row, x))
        for row, bias in zip(model["coef"], model["intercept"])
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
        x = read_features(path, model["features"])
    except SpecimenError as error:
        return {"status": "error", "message": str(error)}
    ranked = sorted(zip(predict_proba(model, x), model["labels"]), key=lambda pair: -pair[0])
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
