"""``aggregate`` and ``aggregate_arrays``: the arguments checked, the inputs a chunk at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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
from airflow_provider_oscar.ensemble.calibration import Calibration, scale_part, sharpen
from airflow_provider_oscar.ensemble.dawid_skene import DawidSkeneFit, dawid_skene
from airflow_provider_oscar.ensemble.output import build_results
from airflow_provider_oscar.ensemble.parts import Part, build_part, check_coverage
from airflow_provider_oscar.ensemble.reading import Read, read_arrays, read_mappings
from airflow_provider_oscar.ensemble.scoring import Scores, score_part

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
    calibration: Mapping[str, Any] | Calibration | None = None,
) -> list[dict[str, Any]]:
    """Combine, per input, the predictions of several models into a consensus top-k.

    ``predictions`` maps input id → model name → prediction: a mapping with ``status``, ``labels``,
    ``probabilities`` (optionally ``message`` and ``source``, the output it came from), an object
    with those attributes (a :class:`~airflow_provider_oscar.results.Prediction`), or ``None``.
    ``models`` names the expected models (default: every model seen, in first-seen order); a model
    without an entry for an input is missing there. Raises :class:`EnsembleError` on bad arguments,
    malformed predictions, or an input answered by fewer than ``min_models`` models.

    ``calibration`` (from :func:`~airflow_provider_oscar.ensemble.fit`, or its JSON) rescales
    each model's list by its temperature, pools them by the soft vote with the fitted weights and
    rescales the pool by the pooled temperature, over the calibration's ``num_classes`` with
    residual spreading: scores are then calibrated probabilities. ``method="dawid_skene"``
    estimates each model's confusion from the batch itself (see
    :mod:`~airflow_provider_oscar.ensemble.dawid_skene`); scores are the posteriors.

    Returns one dict per input, in input order, JSON-plain::

        {"input": id, "winner": label,
         "top_k": {"labels": [...], "scores": [...], "support": [...]},  # consensus, best first
         "vote_share": float, "margin": float, "entropy": float, "unlisted_score": float,
         "abstained": bool, "abstain_reasons": ["margin" | "vote_share" | "top_score", ...],
         "missing_models": [model, ...],
         "provenance": [{"model", "status", "labels", "probabilities", "residual", "message",
                         "source"}, ...],
         "method": {"combiner", "weights", "missing", "floor", "rrf_k", "num_classes", "top_k",
                    "min_models", "abstain", ...}}

    ``support`` counts the models that listed the label; ``vote_share`` is the weight share of the
    models whose top-1 is the winner; ``margin`` is the first score minus the second (or minus the
    unlisted-label score when only one label was listed); ``unlisted_score`` is the score of a
    label no model listed; ``provenance`` holds each model's own list, its residual mass
    (``None`` when missing) and status (``ok``, ``error``…, ``missing``); with
    ``provenance=False`` the key is left out (see the module notes). Every result shares one
    ``method`` dict, which also holds the calibration used (``calibration``) or the Dawid-Skene
    estimates (``reliabilities``, ``iterations``, ``converged``).
    """
    options = _options(
        method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, abstain, calibration
    )
    if not predictions:
        return []
    return _aggregate(read_mappings(predictions, models, bool(provenance)), options)


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
    calibration: Mapping[str, Any] | Calibration | None = None,
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
    options = _options(
        method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, abstain, calibration
    )
    if not len(inputs):
        return []
    read = read_arrays(
        inputs, models, vocabulary, labels, probabilities, answered, bool(provenance)
    )
    return _aggregate(read, options)


@dataclass(frozen=True)
class _Options:
    method: str
    weights: Mapping[str, float] | None
    top_k: int
    missing: str
    floor: float
    rrf_k: float
    num_classes: int | None
    min_models: int
    rule: AbstainRule
    calibration: Calibration | None


def _options(
    method: str,
    weights: Mapping[str, float] | None,
    top_k: int,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
    min_models: int,
    abstain: AbstainRule | None,
    calibration: Mapping[str, Any] | Calibration | None,
) -> _Options:
    """The checked options; a calibration brings its own class count and residual spreading."""
    rule = abstain if abstain is not None else AbstainRule()
    fitted = None
    if calibration is not None:
        fitted = Calibration.from_json(calibration)
        if method != "soft_vote" or weights is not None:
            raise EnsembleError(
                "a calibration pools by its own weights: use method='soft_vote' without weights"
            )
        if num_classes is not None and num_classes != fitted.num_classes:
            raise EnsembleError(
                f"num_classes={num_classes} differs from the calibration's {fitted.num_classes}"
            )
        missing, num_classes = "residual", fitted.num_classes
    check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    return _Options(
        method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule, fitted
    )


def _aggregate(read: Read, o: _Options) -> list[dict[str, Any]]:
    """Aggregate the inputs a chunk at a time: the arrays of a chunk stay small, so that memory
    freed by one chunk serves the next instead of fresh pages, and stay in the processor's cache.
    Inputs are independent once the labels are numbered, so the chunks change nothing else
    (Dawid-Skene first fits on the whole batch's top-1 answers)."""
    w = (
        o.calibration.weights(read.models)
        if o.calibration
        else model_weights(o.weights, read.models)
    )
    if o.min_models > len(read.models):
        raise EnsembleError(f"min_models={o.min_models} exceeds the {len(read.models)} models")
    description: dict[str, Any] = {
        "combiner": o.method,
        "weights": dict(zip(read.models, w.tolist(), strict=True))
        if o.weights is not None or o.calibration
        else None,
        "missing": o.missing,
        "floor": o.floor if o.method == "geometric_mean" else None,
        "rrf_k": o.rrf_k if o.method == "rrf" else None,
        "num_classes": o.num_classes,
        "top_k": o.top_k,
        "min_models": o.min_models,
        "abstain": asdict(o.rule),
    }
    if o.calibration:
        description["calibration"] = o.calibration.to_json()
    step = max(1, CHUNK_ENTRIES // max(1, math.ceil(read.entries_per_input)))
    chunks = range(0, len(read.inputs), step)
    fitted = None
    if o.method == "dawid_skene":
        fitted = dawid_skene(_top1(read, chunks, step))
        description["reliabilities"] = dict(
            zip(read.models, fitted.reliability.tolist(), strict=True)
        )
        description["iterations"] = fitted.iterations
        description["converged"] = fitted.converged
    shown = np.array(read.display, dtype=object)
    results: list[dict[str, Any]] = []
    for lo in chunks:
        part = build_part(read, lo, min(lo + step, len(read.inputs)))
        check_coverage(part, w, o.min_models, o.num_classes)
        scores = _scores(part, o, w, fitted, lo)
        results += build_results(part, scores, o.top_k, o.num_classes, o.rule, description, shown)
    return results


def _scores(
    part: Part, o: _Options, w: np.ndarray, fitted: DawidSkeneFit | None, lo: int
) -> Scores:
    """The scores of a part's candidates by the method, calibrated or Dawid-Skene's."""
    cal = o.calibration
    if cal is not None:
        assert o.num_classes is not None
        scaled = scale_part(part, cal.betas(part.models), o.num_classes)
        if cal.pool == "log_linear":
            pooled = score_part(
                scaled, "geometric_mean", w, "residual", cal.floor, 0, o.num_classes
            )
        else:
            pooled = score_part(scaled, "weighted_mean", w, "residual", 0, 0, o.num_classes)
        return sharpen(scaled, pooled, 1.0 / cal.temperature, o.num_classes)
    if fitted is not None:
        votes = score_part(part, "majority_vote", w, "zero", o.floor, o.rrf_k, o.num_classes)
        score, unlisted = _posteriors(part, fitted, lo)
        return replace(votes, score=score, unlisted=unlisted)
    return score_part(part, o.method, w, o.missing, o.floor, o.rrf_k, o.num_classes)


def _top1(read: Read, chunks: range, step: int) -> np.ndarray:
    """``(inputs, models)``: the label id each model put first, -1 where it did not answer."""
    n_models = len(read.models)
    top = np.full(len(read.inputs) * n_models, -1, np.int64)
    for lo in chunks:
        chunk = read.chunk(lo, min(lo + step, len(read.inputs)))
        heads = np.cumsum(chunk.lengths) - chunk.lengths
        top[lo * n_models + chunk.answered] = chunk.label[heads]
    return top.reshape(len(read.inputs), n_models)


def _posteriors(part: Part, fitted: DawidSkeneFit, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """The Dawid-Skene posterior of each candidate of the part, and per input the posterior
    mass of the classes it does not list, spread evenly over them (the unlisted score)."""
    n_inputs, n_labels = len(part.inputs), max(len(part.display), 1)
    known = fitted.cand_input * n_labels + fitted.cand_label
    score = np.zeros(part.cand_input.size)
    if known.size:
        wanted = (part.cand_input + lo) * n_labels + part.cand_label
        at = np.minimum(np.searchsorted(known, wanted), known.size - 1)
        hit = known[at] == wanted
        score[hit] = fitted.posterior[at[hit]]
        listed = np.bincount(part.cand_input[hit], minlength=n_inputs)
    else:
        listed = np.zeros(n_inputs, np.int64)
    classes = np.unique(fitted.cand_label).size
    left = np.maximum(1.0 - np.bincount(part.cand_input, score, n_inputs), 0.0)
    others = classes - listed
    unlisted = np.where(others > 0, left / np.maximum(others, 1), 0.0)
    return score, np.where(left > 1e-12, unlisted, 0.0)


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
    if method in ("max", "dawid_skene") and weights is not None:
        raise EnsembleError(f"method {method!r} takes no weights")
    if method == "dawid_skene" and missing != "zero":
        raise EnsembleError("method 'dawid_skene' reads top-1 answers only; missing must be 'zero'")
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
