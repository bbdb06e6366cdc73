"""A model's normalised answer (:class:`Prediction`), and how the DEEPaaS plant-classification
shapes (flat, nested dict of lists, nested list of dicts, ``status: error``) map onto it.

Malformed input raises :class:`~airflow_provider_oscar.errors.OscarResultError`, and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from airflow_provider_oscar.errors import OscarModelError, OscarResultError

__all__ = ["EXCERPT_CHARS", "Prediction", "PredictionStatus", "excerpt", "kind_of", "normalise"]

PredictionStatus = Literal["ok", "error"]

_TOLERANCE = 1e-6  # slack on probabilities for float32 rounding
EXCERPT_CHARS = 200
_PREDICTION_KEYS = frozenset({"status", "labels", "probabilities", "message", "source"})


@dataclass(frozen=True)
class Prediction:
    """One model's normalised answer for one input, small and JSON-plain for XCom.

    ``labels`` are whitespace-normalised and unique, ``probabilities`` lie in [0, 1], sort in
    descending order and sum to at most 1 (the rest is the mass of unlisted classes). A failed
    inference has ``status == "error"``, no labels, and the model's ``message``. ``source`` says
    where the prediction came from (output file name or object key), when known. The constructor
    checks all of this and raises :class:`OscarResultError` when it does not hold.
    """

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    status: PredictionStatus = "ok"
    message: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        _check_prediction(self)

    @property
    def ok(self) -> bool:
        """Whether the model answered successfully."""
        return self.status == "ok"

    def raise_for_status(self) -> Prediction:
        """Return ``self``, or raise :class:`OscarModelError` with the model's message."""
        if not self.ok:
            raise OscarModelError(self.message, self.source)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the prediction as JSON-plain data (the inverse of :meth:`from_dict`)."""
        return {
            "status": self.status,
            "labels": list(self.labels),
            "probabilities": list(self.probabilities),
            "message": self.message,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """Rebuild a prediction from :meth:`to_dict` output (e.g. pulled from XCom)."""
        if not isinstance(data, Mapping):
            raise OscarResultError(f"prediction data must be a mapping, not {kind_of(data)}")
        missing = {"status", "labels", "probabilities"} - set(data)
        unknown = set(data) - _PREDICTION_KEYS
        if missing or unknown:
            raise OscarResultError(
                f"prediction data has missing keys {sorted(missing)} or unknown keys "
                f"{sorted(map(str, unknown))}: {excerpt(data)}"
            )
        labels = _sequence(data["labels"], "'labels'")
        probabilities = [
            _probability(value, index)
            for index, value in enumerate(_sequence(data["probabilities"], "'probabilities'"))
        ]
        return cls(
            labels=tuple(labels),
            probabilities=tuple(probabilities),
            status=data["status"],
            message=data.get("message"),
            source=data.get("source"),
        )


def normalise(document: Mapping[str, Any], source: str | None) -> Prediction:
    if not isinstance(document, Mapping):
        raise OscarResultError(f"a document must be a dict, not {kind_of(document)}")
    status = document.get("status")
    if not isinstance(status, str):
        raise OscarResultError("document has no string 'status'")
    message = document.get("message")
    message = None if message is None else _text(message)
    match status.strip().lower():
        case "error":
            return Prediction((), (), "error", message, source)
        case "ok":
            labels, probabilities = _label_probability_lists(document)
        case _:
            raise OscarResultError(f"unknown status {status!r}, expected 'OK' or 'error'")
    pairs = sorted(
        zip(
            (_probability(value, index) for index, value in enumerate(probabilities)),
            (_label(value, index) for index, value in enumerate(labels)),
            strict=True,
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    return Prediction(
        labels=tuple(label for _, label in pairs),
        probabilities=tuple(probability for probability, _ in pairs),
        message=message,
        source=source,
    )


def _label_probability_lists(document: Mapping[str, Any]) -> tuple[Sequence[Any], Sequence[Any]]:
    """Find the raw label and probability lists in any of the DEEPaaS shapes."""
    if "labels" in document or "probabilities" in document:
        return _paired_lists(document, "")
    predictions = document.get("predictions")
    if isinstance(predictions, Mapping):
        return _paired_lists(predictions, "'predictions' ")
    if isinstance(predictions, (list, tuple)):
        labels, probabilities = [], []
        for index, item in enumerate(predictions):
            if not isinstance(item, Mapping) or "label" not in item:
                raise OscarResultError(f"'predictions' item {index} is not a dict with a 'label'")
            probability = item.get("probability", item.get("probabilities"))
            if probability is None:
                raise OscarResultError(f"'predictions' item {index} has no 'probability'")
            labels.append(item["label"])
            probabilities.append(probability)
        return labels, probabilities
    raise OscarResultError(
        "document has neither 'labels' and 'probabilities' nor a 'predictions' dict or list"
    )


def _paired_lists(mapping: Mapping[str, Any], where: str) -> tuple[Sequence[Any], Sequence[Any]]:
    if "labels" not in mapping or "probabilities" not in mapping:
        raise OscarResultError(f"{where}document needs both 'labels' and 'probabilities'")
    labels = _sequence(mapping["labels"], f"{where}'labels'")
    probabilities = _sequence(mapping["probabilities"], f"{where}'probabilities'")
    if len(labels) != len(probabilities):
        raise OscarResultError(
            f"{len(labels)} labels but {len(probabilities)} probabilities in {where}document"
        )
    return labels, probabilities


def _sequence(value: Any, what: str) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)):
        raise OscarResultError(f"{what} must be a list, not {kind_of(value)}")
    return value


def _label(value: Any, index: int) -> str:
    if not isinstance(value, str):
        raise OscarResultError(f"label {index} must be a string, not {kind_of(value)}")
    return " ".join(value.split())


def _probability(value: Any, index: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OscarResultError(f"probability {index} must be a number, not {kind_of(value)}")
    try:
        return float(value)
    except OverflowError:
        raise OscarResultError(f"probability {index} is outside [0, 1]") from None


def _check_prediction(prediction: Prediction) -> None:
    """Raise OscarResultError unless ``prediction`` holds the invariants of its docstring."""
    labels, probabilities = prediction.labels, prediction.probabilities
    if prediction.status not in ("ok", "error"):
        raise OscarResultError(f"status must be 'ok' or 'error', not {prediction.status!r}")
    for name in ("message", "source"):
        if not isinstance(getattr(prediction, name), (str, type(None))):
            raise OscarResultError(f"{name} must be a string or None")
    if not isinstance(labels, tuple) or not all(isinstance(label, str) for label in labels):
        raise OscarResultError("labels must be a tuple of strings")
    if not isinstance(probabilities, tuple) or not all(
        isinstance(probability, float) for probability in probabilities
    ):
        raise OscarResultError("probabilities must be a tuple of floats")
    if len(labels) != len(probabilities):
        raise OscarResultError(f"{len(labels)} labels but {len(probabilities)} probabilities")
    if prediction.status == "error":
        if labels:
            raise OscarResultError("a prediction with status 'error' has no labels")
        return
    if not labels:
        raise OscarResultError("no labels in a prediction with status 'ok'")
    for label in labels:
        if not label or label != " ".join(label.split()):
            raise OscarResultError(f"label {label!r} is empty or not whitespace-normalised")
    if len(set(labels)) != len(labels):
        raise OscarResultError(f"duplicate labels in {list(labels)!r}")
    for label, probability in zip(labels, probabilities, strict=True):
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0 + _TOLERANCE):
            raise OscarResultError(f"probability {probability!r} of {label!r} is outside [0, 1]")
    if any(higher < lower for higher, lower in pairwise(probabilities)):
        raise OscarResultError(f"probabilities {list(probabilities)} are not in descending order")
    total = math.fsum(probabilities)
    if total > 1.0 + _TOLERANCE:
        raise OscarResultError(f"probabilities sum to {total!r}, more than 1")


def kind_of(value: Any) -> str:
    return type(value).__name__


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """Show ``value`` in at most about ``limit`` characters: the head and tail of its text."""
    text = _text(value)
    if len(text) > limit:
        text = f"{text[: limit * 3 // 5]} … {text[-(limit * 2 // 5 - 3) :]}"
    return repr(text) if isinstance(value, str) else text


def _text(value: Any) -> str:
    """``value`` itself if it is a string, else its ``repr`` (even when deeply nested)."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except RecursionError:
        return f"<{kind_of(value)} nested too deeply to show>"
