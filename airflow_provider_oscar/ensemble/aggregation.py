"""``aggregate`` and ``aggregate_arrays``: the arguments checked, the inputs a chunk at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from airflow_provider_oscar.ensemble.base import (
    METHODS,
    MISSING,
    RANK_METHODS,
    AbstainRule,
    EnsembleError,
    is_int,
    is_real,
)
from airflow_provider_oscar.ensemble.output import build_results
from airflow_provider_oscar.ensemble.parts import build_part, check_coverage
from airflow_provider_oscar.ensemble.reading import Read, read_arrays, read_mappings
from airflow_provider_oscar.ensemble.scoring import score_part

CHUNK_ENTRIES = 1 << 14  # listed labels aggregated together: 128 KiB per array of them


def aggregate(
    predictions: Mapping[str, Mapping[str, Any]],
    *,
    method: str = "soft_vote",
    models: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    top_k: int = 5,
    missing: str = "zero",
    floor: float = 1e-6,
    rrf_k: float = 60.0,
    num_classes: int | None = None,
    min_models: int = 1,
    abstain: AbstainRule | None = None,
    provenance: bool = True,
) -> list[dict[str, Any]]:
    """Combine, per input, the predictions of several models into a consensus top-k.

    ``predictions`` maps input id → model name → prediction: a mapping with ``status``, ``labels``,
    ``probabilities`` (optionally ``message`` and ``source``, the output it came from), an object
    with those attributes (a :class:`~airflow_provider_oscar.results.Prediction`), or ``None``.
    ``models`` names the expected models (default: every model seen, in first-seen order); a model
    without an entry for an input is missing there. Raises :class:`EnsembleError` on bad arguments,
    malformed predictions, or an input answered by fewer than ``min_models`` models.

    Returns one dict per input, in input order, JSON-plain::

        {"input": id, "winner": label,
         "top_k": {"labels": [...], "scores": [...], "support": [...]},  # consensus, best first
         "vote_share": float, "margin": float, "entropy": float,
         "abstained": bool, "abstain_reasons": ["margin" | "vote_share" | "top_score", ...],
         "missing_models": [model, ...],
         "provenance": [{"model", "status", "labels", "probabilities", "residual", "message",
                         "source"}, ...],
         "method": {"combiner", "weights", "missing", "floor", "rrf_k", "num_classes", "top_k",
                    "min_models", "abstain"}}

    ``support`` counts the models that listed the label; ``vote_share`` is the weight share of the
    models whose top-1 is the winner; ``margin`` is the first score minus the second (or minus the
    unlisted-label score when only one label was listed); ``provenance`` holds each model's own
    list, its residual mass (``None`` when missing) and status (``ok``, ``error``…, ``missing``);
    with ``provenance=False`` the key is left out (see the module notes). Every result shares one
    ``method`` dict.
    """
    rule = abstain if abstain is not None else AbstainRule()
    check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    if not predictions:
        return []
    read = read_mappings(predictions, models, bool(provenance))
    return _aggregate(
        read, method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule
    )


def aggregate_arrays(
    inputs: Sequence[str],
    models: Sequence[str],
    vocabulary: Sequence[str],
    labels: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    *,
    answered: npt.ArrayLike | None = None,
    method: str = "soft_vote",
    weights: Mapping[str, float] | None = None,
    top_k: int = 5,
    missing: str = "zero",
    floor: float = 1e-6,
    rrf_k: float = 60.0,
    num_classes: int | None = None,
    min_models: int = 1,
    abstain: AbstainRule | None = None,
    provenance: bool = True,
) -> list[dict[str, Any]]:
    """:func:`aggregate` for predictions held as arrays, e.g. the batched top-k of models.

    ``labels`` is an integer array of shape ``(inputs, models, k)``: the position in
    ``vocabulary`` of each listed label, in the model's order; ``-1`` after the last label of a
    list shorter than ``k``. ``probabilities`` has the same shape (ignored where ``labels`` is -1).
    ``answered`` is a boolean ``(inputs, models)`` array, all true by default; a model that did not
    answer an input is missing there (status ``missing``). The result is what :func:`aggregate`
    returns for the equivalent mapping ``{inputs[i]: {models[m]: {"labels": [vocabulary[j] for j in
    labels[i, m] if j >= 0], "probabilities": [...]} if answered[i, m] else None}}``, with
    ``models`` given; every vocabulary entry must be a non-empty string, used or not. Nothing is
    read per prediction, so this skips the one pass over Python objects that :func:`aggregate`
    needs.
    """
    rule = abstain if abstain is not None else AbstainRule()
    check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    if not len(inputs):
        return []
    read = read_arrays(
        inputs, models, vocabulary, labels, probabilities, answered, bool(provenance)
    )
    return _aggregate(
        read, method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule
    )


def _aggregate(
    read: Read,
    method: str,
    weights: Mapping[str, float] | None,
    top_k: int,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
    min_models: int,
    rule: AbstainRule,
) -> list[dict[str, Any]]:
    """Aggregate the inputs a chunk at a time: the arrays of a chunk stay small, so that memory
    freed by one chunk serves the next instead of fresh pages, and stay in the processor's cache.
    Inputs are independent once the labels are numbered, so the chunks change nothing else."""
    w = model_weights(weights, read.models)
    if min_models > len(read.models):
        raise EnsembleError(f"min_models={min_models} exceeds the {len(read.models)} models")
    weight_of = dict(zip(read.models, w.tolist(), strict=True))
    description = {
        "combiner": method,
        "weights": weight_of if weights is not None else None,
        "missing": missing,
        "floor": floor if method == "geometric_mean" else None,
        "rrf_k": rrf_k if method == "rrf" else None,
        "num_classes": num_classes,
        "top_k": top_k,
        "min_models": min_models,
        "abstain": asdict(rule),
    }
    shown = np.array(read.display, dtype=object)
    results: list[dict[str, Any]] = []
    step = max(1, CHUNK_ENTRIES // max(1, math.ceil(read.entries_per_input)))
    for lo in range(0, len(read.inputs), step):
        part = build_part(read, lo, min(lo + step, len(read.inputs)))
        check_coverage(part, w, min_models, num_classes)
        scores = score_part(part, method, w, missing, floor, rrf_k, num_classes)
        results += build_results(part, scores, top_k, num_classes, rule, description, shown)
    return results


# --------------------------------------------------------------------------- checks


def check_arguments(
    method: str,
    weights: Mapping[str, float] | None,
    top_k: int,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
    min_models: int,
    rule: AbstainRule,
) -> None:
    """Every argument that does not depend on the predictions."""
    if method not in METHODS:
        raise EnsembleError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if missing not in MISSING:
        raise EnsembleError(f"unknown missing option {missing!r}; expected 'zero' or 'residual'")
    if method in RANK_METHODS and missing != "zero":
        raise EnsembleError(f"method {method!r} gives unlisted labels 0; missing must be 'zero'")
    if missing == "residual" and num_classes is None:
        raise EnsembleError(
            "missing='residual' needs num_classes, the models' class count (e.g. 10000)"
        )
    if method == "weighted_mean" and weights is None:
        raise EnsembleError("method 'weighted_mean' needs weights")
    if method == "max" and weights is not None:
        raise EnsembleError("method 'max' takes no weights")
    if not is_int(top_k) or top_k < 1:
        raise EnsembleError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not is_int(min_models) or min_models < 1:
        raise EnsembleError(f"min_models must be an integer >= 1, got {min_models!r}")
    if num_classes is not None and (not is_int(num_classes) or num_classes < 1):
        raise EnsembleError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not (is_real(floor) and 0 < floor < 1):
        raise EnsembleError(f"floor must be a number with 0 < floor < 1, got {floor!r}")
    if not (is_real(rrf_k) and rrf_k >= 0):
        raise EnsembleError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    for name, value in asdict(rule).items():
        if not is_real(value):
            raise EnsembleError(f"abstain {name} must be a finite number, got {value!r}")


def model_weights(weights: Mapping[str, float] | None, models: list[str]) -> np.ndarray:
    """One weight per model, in model order (all 1 without weights)."""
    if weights is None:
        return np.ones(len(models))
    unknown = sorted(set(weights) - set(models))
    if unknown:
        raise EnsembleError(f"weights given for unknown models: {', '.join(map(str, unknown))}")
    absent = [m for m in models if m not in weights]
    if absent:
        raise EnsembleError(f"no weight given for models: {', '.join(absent)}")
    bad = [m for m in models if not (is_real(weights[m]) and weights[m] >= 0)]
    if bad:
        raise EnsembleError(f"weights must be finite and >= 0; bad for models: {', '.join(bad)}")
    w = np.array([float(weights[m]) for m in models])
    if w.sum() <= 0:
        raise EnsembleError("weights sum to zero")
    return w
