"""Combine the top-k predictions of several models per input (pure numpy, no Airflow).

Each input (an image, a specimen) has at most one prediction per model: labels in the model's own
order, their probabilities and a status. :func:`aggregate` merges them over a label vocabulary built
on the fly and returns JSON-plain results, small enough for XCom. The rules, after
``reference/ensembles.md``:

* **Labels** are keyed by ``" ".join(label.split()).casefold()``; each keeps the first form seen in
  the batch (inputs in order, models in order, list order), with whitespace collapsed.
* **Answered or missing.** A prediction whose status is ``ok`` (any case; no status means ok)
  answered. Any other status (``error``), or no entry at all, is *missing*: it contributes nothing,
  and the input lists it in ``missing_models``.
* **Scores** per label ``c``; ``w_m`` are the weights of the models that answered the input (1 by
  default), renormalised over them; ``v_m(c)`` is ``p_m(c)`` if model ``m`` listed ``c``, otherwise
  the missing-label value below; ``k_m`` is the length of its list:

  ================  ===================================================================
  soft_vote         ``Σ w_m v_m(c) / Σ w_m``  (weights optional)
  weighted_mean     the same rule; weights required
  geometric_mean    ``exp(Σ w_m log max(v_m(c), floor) / Σ w_m)``, not renormalised
  max               ``max_m v_m(c)``  (no weights)
  majority_vote     ``Σ w_m [c is m's top-1] / Σ w_m``; ties broken by the soft-vote score
  borda             ``Σ w_m (k_m - rank_m(c) + 1)``; unlisted labels get 0 points
  rrf               ``Σ w_m / (rrf_k + rank_m(c))``; unlisted labels get 0
  ================  ===================================================================

* **Missing labels** (the probability methods, and the majority vote's tie-break):
  ``missing="zero"`` uses 0; ``missing="residual"`` spreads each model's residual mass
  ``r_m = 1 - Σ p_m`` evenly over the classes it did not list, ``r_m / (C - k_m)``. ``C`` is
  ``num_classes`` and has no default: the labels seen in a batch are only a lower bound on the
  model's class count (a top-5 service over ~10,000 classes would get ~25), which would inflate the
  spread by orders of magnitude and make one input's scores depend on the other inputs. Lists are
  never renormalised to sum to 1.
* **Ranking** over the labels listed for the input: score, then (majority vote) soft-vote score,
  then support, then the normalised label alphabetically. Scores equal to about 12 significant
  digits count as tied, so the order never hangs on floating-point summation order, nor on which
  other inputs share the batch.
* **Entropy** (nats) is of the ensemble vector renormalised to sum 1: the listed labels and, when
  ``num_classes`` is given, the ``C - n`` unlisted classes at the unlisted-label score (non-zero
  only with residual spreading or the geometric floor).

The work is one pass over the input mappings into flat arrays, then array operations over
(candidate label, model) matrices, where the candidates are the labels listed for each input: the
memory grows with the number of listed labels, never with inputs times vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import chain, compress
from typing import Any

import numpy as np

from airflow_provider_oscar.errors import OscarError

__all__ = ["METHODS", "MISSING", "AbstainRule", "EnsembleError", "accuracy", "aggregate"]

METHODS = ("soft_vote", "weighted_mean", "geometric_mean", "max", "majority_vote", "borda", "rrf")
MISSING = ("zero", "residual")
_RANK_METHODS = ("borda", "rrf")
_TOLERANCE = 1e-6  # slack on probabilities and their sums, for float32 rounding
_TIE_BITS = 40  # mantissa bits kept when comparing scores (about 12 significant digits)


class EnsembleError(OscarError, ValueError):
    """Arguments or predictions that cannot be aggregated; the message says which and why."""


@dataclass(frozen=True)
class AbstainRule:
    """Abstain on an input whose margin, winner's vote share or top score is below these.

    The margin and top-score thresholds are in the method's score units (probabilities for the
    probability methods, points for Borda, ``1 / (k0 + rank)`` sums for RRF).
    """

    min_margin: float = 0.0
    min_vote_share: float = 0.0
    min_top_score: float = 0.0


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
    list, its residual mass (``None`` when missing) and status (``ok``, ``error``…, ``missing``).
    Every result shares one ``method`` dict.
    """
    rule = abstain if abstain is not None else AbstainRule()
    _check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    if not predictions:
        return []
    batch = _collect(predictions, models)
    w = _model_weights(weights, batch.models)
    _check_coverage(batch, w, min_models, num_classes)
    scores = _score(batch, method, w, missing, floor, rrf_k, num_classes)
    weight_of = dict(zip(batch.models, w.tolist(), strict=True))
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
    return _results(batch, scores, top_k, num_classes, rule, description)


def accuracy(results: Iterable[Mapping[str, Any]], truth: Mapping[str, str]) -> dict[str, Any]:
    """Top-1 accuracy of the ensemble and of each model on the inputs whose true label is known.

    Labels compare normalised; a model that did not answer an input is wrong there. ``coverage``
    is the share of those inputs the ensemble did not abstain on, ``selective_accuracy`` its
    accuracy on them. Shares are ``None`` when there is nothing to count.
    """
    known = {input_id: _label_key(label) for input_id, label in truth.items()}
    scored = [r for r in results if r["input"] in known]
    confident = [r for r in scored if not r["abstained"]]
    models = list(dict.fromkeys(p["model"] for r in scored for p in r["provenance"]))

    def right(result: Mapping[str, Any], label: str | None) -> bool:
        return label is not None and _label_key(label) == known[result["input"]]

    def top1(result: Mapping[str, Any], model: str) -> str | None:
        lists = (p["labels"] for p in result["provenance"] if p["model"] == model and p["labels"])
        return next((labels[0] for labels in lists), None)

    def share(hits: Iterable[bool], n: int) -> float | None:
        return sum(hits) / n if n else None

    n = len(scored)
    return {
        "inputs": n,
        "ensemble": share((right(r, r["winner"]) for r in scored), n),
        "models": {m: share((right(r, top1(r, m)) for r in scored), n) for m in models},
        "coverage": share((not r["abstained"] for r in scored), n),
        "selective_accuracy": share((right(r, r["winner"]) for r in confident), len(confident)),
    }


# --------------------------------------------------------------------------- checks


def _check_arguments(
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
    if method in _RANK_METHODS and missing != "zero":
        raise EnsembleError(f"method {method!r} gives unlisted labels 0; missing must be 'zero'")
    if missing == "residual" and num_classes is None:
        raise EnsembleError(
            "missing='residual' needs num_classes, the models' class count (e.g. 10000)"
        )
    if method == "weighted_mean" and weights is None:
        raise EnsembleError("method 'weighted_mean' needs weights")
    if method == "max" and weights is not None:
        raise EnsembleError("method 'max' takes no weights")
    if not _is_int(top_k) or top_k < 1:
        raise EnsembleError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not _is_int(min_models) or min_models < 1:
        raise EnsembleError(f"min_models must be an integer >= 1, got {min_models!r}")
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
        raise EnsembleError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not (_is_real(floor) and 0 < floor < 1):
        raise EnsembleError(f"floor must be a number with 0 < floor < 1, got {floor!r}")
    if not (_is_real(rrf_k) and rrf_k >= 0):
        raise EnsembleError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    for name, value in asdict(rule).items():
        if not _is_real(value):
            raise EnsembleError(f"abstain {name} must be a finite number, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _model_weights(weights: Mapping[str, float] | None, models: list[str]) -> np.ndarray:
    """One weight per model, in model order (all 1 without weights)."""
    if weights is None:
        return np.ones(len(models))
    unknown = sorted(set(weights) - set(models))
    if unknown:
        raise EnsembleError(f"weights given for unknown models: {', '.join(map(str, unknown))}")
    absent = [m for m in models if m not in weights]
    if absent:
        raise EnsembleError(f"no weight given for models: {', '.join(absent)}")
    bad = [m for m in models if not (_is_real(weights[m]) and weights[m] >= 0)]
    if bad:
        raise EnsembleError(f"weights must be finite and >= 0; bad for models: {', '.join(bad)}")
    w = np.array([float(weights[m]) for m in models])
    if w.sum() <= 0:
        raise EnsembleError("weights sum to zero")
    return w


# --------------------------------------------------------------------------- collection

_ABSENT = object()  # stands for the status of a prediction that is not there at all
_SEQUENCES = {list, tuple}
_NOT_FAILED = frozenset(("ok", "missing"))


@dataclass(frozen=True)
class _Batch:
    """The predictions as flat arrays: slots are (input, model) pairs, entries listed labels."""

    inputs: list[str]
    models: list[str]
    display: list[str]  # per label id; ids follow the normalised labels' alphabetical order
    status: list[str]  # per slot
    message: dict[int, str]  # slot -> message, for failed predictions that gave one
    source: list[Any]  # per slot: where the prediction came from (object key, file), if known
    raw_labels: list[Any]  # per entry, as the models gave them
    present: np.ndarray  # (inputs, models) bool: the model answered the input
    length: np.ndarray  # (inputs, models) int: k_m, 0 when missing
    residual: np.ndarray  # (inputs, models) float: r_m, 0 when missing
    start: np.ndarray  # (slots + 1,) entry offsets of each slot
    slot: np.ndarray  # (entries,) slot of each entry
    prob: np.ndarray  # (entries,)
    rank: np.ndarray  # (entries,) 1-based position in the model's list
    cand: np.ndarray  # (entries,) candidate of each entry; candidates are (input, label) pairs
    cand_input: np.ndarray  # (candidates,) sorted by input, then label id
    cand_label: np.ndarray  # (candidates,)


def _collect(predictions: Mapping[str, Mapping[str, Any]], models: Sequence[str] | None) -> _Batch:
    """One pass over the mappings into flat lists, then arrays; checks every prediction."""
    inputs = list(predictions)
    rows = list(predictions.values())
    names = _model_names(inputs, rows, models)
    n_inputs, n_models = len(inputs), len(names)

    def where(s: int) -> str:
        return f"input {inputs[s // n_models]!r}, model {names[s % n_models]!r}"

    got = [row.get(m) for row in rows for m in names]
    views: list[Any] = [p if p is None or type(p) is dict else _view(p) for p in got]
    status, message = _statuses(views)
    answered = list(compress(range(len(status)), map("ok".__eq__, status)))
    labels = [views[s].get("labels") for s in answered]
    probs = [views[s].get("probabilities") for s in answered]
    lengths = _list_lengths(labels, probs, answered, where)

    slot_of_pred = np.array(answered, np.int64)
    length = np.zeros(n_inputs * n_models, np.int64)
    length[slot_of_pred] = lengths
    start = np.concatenate(([0], np.cumsum(length)))
    n_entries = int(start[-1])
    raw_labels = list(chain.from_iterable(labels))
    try:
        prob = np.fromiter(chain.from_iterable(probs), np.float64, n_entries)
    except (TypeError, ValueError):
        raise EnsembleError("probabilities must be numbers") from None
    slot = np.repeat(slot_of_pred, lengths)
    total = np.bincount(slot, prob, n_inputs * n_models)
    _check_probabilities(prob, slot, total, where)

    display, label = _label_ids(raw_labels)
    n_labels = max(len(display), 1)
    keys, cand = _distinct(slot // n_models * n_labels + label)
    twice = np.flatnonzero(np.bincount(cand * n_models + slot % n_models) > 1)
    if twice.size:
        c, m = divmod(int(twice[0]), n_models)
        s = int(keys[c]) // n_labels * n_models + m
        raise EnsembleError(f"{where(s)}: label {display[int(keys[c]) % n_labels]!r} listed twice")

    present = np.zeros(n_inputs * n_models, bool)
    present[slot_of_pred] = True
    shape = (n_inputs, n_models)
    return _Batch(
        inputs=inputs,
        models=names,
        display=display,
        status=status,
        message=message,
        source=[None if v is None else v.get("source") for v in views],
        raw_labels=raw_labels,
        present=present.reshape(shape),
        length=length.reshape(shape),
        residual=np.where(present, np.maximum(1.0 - total, 0.0), 0.0).reshape(shape),
        start=start,
        slot=slot,
        prob=prob,
        rank=np.arange(n_entries) - start[slot] + 1,
        cand=cand,
        cand_input=keys // n_labels,
        cand_label=keys % n_labels,
    )


def _model_names(
    inputs: list[str], rows: list[Mapping[str, Any]], models: Sequence[str] | None
) -> list[str]:
    """``models``, or every model seen in first-seen order; checks the rows name only those."""
    for input_id, row in zip(inputs, rows, strict=True):
        if not isinstance(row, Mapping):
            raise EnsembleError(f"input {input_id!r}: expected a mapping of model name to output")
    seen = list(dict.fromkeys(chain.from_iterable(rows)))
    names = seen if models is None else list(models)
    if len(set(names)) != len(names):
        raise EnsembleError("models contains duplicate names")
    unknown = [str(m) for m in seen if m not in set(names)]
    if unknown:
        raise EnsembleError(f"predictions from models not in models: {', '.join(unknown)}")
    if not names:
        raise EnsembleError("no models to aggregate")
    return names


def _statuses(views: list[Any]) -> tuple[list[str], dict[int, str]]:
    """Each slot's status name, and the messages of the failed ones that gave one."""
    raw = [_ABSENT if v is None else v.get("status") for v in views]
    try:
        name_of = {s: _status_name(s) for s in set(raw)}
    except TypeError:
        raise EnsembleError("statuses must be strings") from None
    status = list(map(name_of.__getitem__, raw))
    message: dict[int, str] = {}
    if set(name_of.values()) - _NOT_FAILED:  # some model failed: keep what it said
        failed = [s for s, name in enumerate(status) if name not in _NOT_FAILED]
        message = {
            s: str(views[s]["message"]) for s in failed if views[s].get("message") is not None
        }
    return status, message


def _list_lengths(
    labels: list[Any], probs: list[Any], answered: list[int], where: Callable[[int], str]
) -> np.ndarray:
    """The length of each answered list; checks they are non-empty lists of equal lengths."""
    if not {*map(type, labels), *map(type, probs)} <= _SEQUENCES:
        pairs = zip(answered, labels, probs, strict=True)
        s = next(s for s, a, b in pairs if {type(a), type(b)} - _SEQUENCES)
        raise EnsembleError(f"{where(s)}: labels and probabilities must be lists")
    lengths = np.fromiter(map(len, labels), np.int64, len(labels))
    n_probs = np.fromiter(map(len, probs), np.int64, len(probs))
    mismatch = np.flatnonzero(lengths != n_probs)
    if mismatch.size:
        k = int(mismatch[0])
        detail = f"{lengths[k]} labels but {n_probs[k]} probabilities"
        raise EnsembleError(f"{where(answered[k])}: {detail}")
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise EnsembleError(f"{where(answered[int(empty[0])])}: status ok but no labels")
    return lengths


def _check_probabilities(
    prob: np.ndarray, slot: np.ndarray, total: np.ndarray, where: Callable[[int], str]
) -> None:
    """Each probability in [0, 1] and each list's sum at most 1, up to float32 rounding."""
    bad = np.flatnonzero(~((prob >= 0) & (prob <= 1 + _TOLERANCE)))  # NaN is bad too
    if bad.size:
        e = int(bad[0])
        raise EnsembleError(f"{where(int(slot[e]))}: probability {float(prob[e])!r} outside [0, 1]")
    over = np.flatnonzero(total > 1 + _TOLERANCE)
    if over.size:
        s = int(over[0])
        raise EnsembleError(f"{where(s)}: probabilities sum to {total[s]:.7g} > 1")


def _view(prediction: Any) -> Mapping[str, Any]:
    """A prediction as a mapping: mappings as they are, objects by their attributes."""
    if isinstance(prediction, Mapping):
        return prediction
    fields = ("status", "labels", "probabilities", "message", "source")
    return {name: getattr(prediction, name, None) for name in fields}


def _status_name(status: Any) -> str:
    if status is _ABSENT:
        return "missing"
    return "ok" if status is None else str(status).strip().casefold()


def _label_key(label: str) -> str:
    return " ".join(label.split()).casefold()


def _label_ids(raw_labels: list[Any]) -> tuple[list[str], np.ndarray]:
    """Display form per label id (ids in alphabetical order of the keys) and each entry's id."""
    first_seen = _Numbering()
    try:
        seen_ids = np.fromiter(map(first_seen.__getitem__, raw_labels), np.int64, len(raw_labels))
    except TypeError:
        raise EnsembleError("labels must be strings") from None
    shown: dict[str, str] = {}
    keys = []
    for raw in first_seen:
        if not isinstance(raw, str) or not raw.strip():
            raise EnsembleError(f"labels must be non-empty strings, got {raw!r}")
        keys.append(_label_key(raw))
        shown.setdefault(keys[-1], " ".join(raw.split()))
    ordered = sorted(shown)
    number = {key: n for n, key in enumerate(ordered)}
    renumber = np.array([number[key] for key in keys], np.int64)
    return [shown[key] for key in ordered], renumber[seen_ids]


class _Numbering(dict[Any, int]):
    """Numbers keys 0, 1, 2, … in the order they are first looked up."""

    def __missing__(self, key: Any) -> int:
        self[key] = len(self)
        return self[key]


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, quicker on the nearly sorted keys given here."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.empty(ordered.size, bool)
    new[:1] = True
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty_like(order)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _check_coverage(batch: _Batch, w: np.ndarray, min_models: int, num_classes: int | None) -> None:
    """Enough models (and weight) answered every input; ``num_classes`` covers its labels."""
    n_models = len(batch.models)
    if min_models > n_models:
        raise EnsembleError(f"min_models={min_models} exceeds the {n_models} models")
    answered = batch.present.sum(axis=1)
    short = np.flatnonzero(answered < min_models)
    if short.size:
        i = int(short[0])
        gone = [m for m, ok in zip(batch.models, batch.present[i], strict=True) if not ok]
        raise EnsembleError(
            f"input {batch.inputs[i]!r}: {answered[i]} of {n_models} models answered "
            f"(missing: {', '.join(gone)}); min_models={min_models}"
        )
    weightless = np.flatnonzero((batch.present * w).sum(axis=1) <= 0)
    if weightless.size:
        i = int(weightless[0])
        raise EnsembleError(f"input {batch.inputs[i]!r}: every model that answered has weight 0")
    if num_classes is not None:
        labels = np.bincount(batch.cand_input, minlength=len(batch.inputs))
        wide = np.flatnonzero(labels > num_classes)
        if wide.size:
            i = int(wide[0])
            raise EnsembleError(
                f"num_classes={num_classes} is less than the {labels[i]} labels listed for "
                f"input {batch.inputs[i]!r}"
            )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Scores:
    score: np.ndarray  # (candidates,)
    tie: np.ndarray | None  # (candidates,) second ranking key (majority vote: soft-vote score)
    votes: np.ndarray  # (candidates,) weighted share of the models whose top-1 it is
    support: np.ndarray  # (candidates,) how many models listed it
    unlisted: np.ndarray  # (inputs,) the score of a label no model listed


def _score(
    batch: _Batch,
    method: str,
    w: np.ndarray,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
) -> _Scores:
    """Score every candidate from (model, candidate) matrices of values and ranks.

    Matrices are model-major, so that the reductions over models run along whole rows.
    """
    present = batch.present.T  # (models, inputs)
    weight = np.where(present, w[:, None], 0.0)
    total = weight.sum(axis=0)
    fill = np.zeros(present.shape)
    if missing == "residual":
        assert num_classes is not None
        room = num_classes - batch.length.T
        fill = np.where(present & (room > 0), batch.residual.T / np.maximum(room, 1), 0.0)

    ci = batch.cand_input
    model = batch.slot % len(batch.models)
    cw = weight[:, ci]  # (models, candidates)
    value = fill[:, ci]
    value[model, batch.cand] = batch.prob
    rank = np.zeros(cw.shape, np.int64)
    rank[model, batch.cand] = batch.rank
    listed = rank > 0
    votes = ((rank == 1) * cw).sum(axis=0) / total[ci]

    def mean(v: np.ndarray, v_unlisted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (v * cw).sum(axis=0) / total[ci], (v_unlisted * weight).sum(axis=0) / total

    tie = None
    unlisted = np.zeros(len(batch.inputs))
    if method in ("soft_vote", "weighted_mean"):
        score, unlisted = mean(value, fill)
    elif method == "geometric_mean":
        logs, unlisted_logs = mean(
            np.log(np.maximum(value, floor)), np.log(np.maximum(fill, floor))
        )
        score, unlisted = np.exp(logs), np.exp(unlisted_logs)
    elif method == "max":
        score = np.where(present[:, ci], value, -np.inf).max(axis=0)
        unlisted = np.where(present, fill, -np.inf).max(axis=0)
    elif method == "majority_vote":
        score, tie = votes, mean(value, fill)[0]
    elif method == "borda":
        points = np.where(listed, batch.length.T[:, ci] - rank + 1, 0)
        score = (points * cw).sum(axis=0)
    else:  # rrf
        score = (np.where(listed, 1.0 / (rrf_k + np.maximum(rank, 1)), 0.0) * cw).sum(axis=0)
    return _Scores(score, tie, votes, listed.sum(axis=0), unlisted)


def _tie_key(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to ``_TIE_BITS`` mantissa bits: equal up to rounding noise means tied."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(np.ldexp(mantissa, _TIE_BITS)), exponent - _TIE_BITS)


def _places(ci: np.ndarray, counts: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """Each candidate's 0-based place in its input's ranking, by ``keys`` as ``np.lexsort`` takes
    them (ascending, the last key first).

    The sort is stable and candidates arrive in label order, which breaks the remaining ties.
    Inputs are sorted as the rows of dense matrices, one per power-of-two row width, so that the
    padding at most doubles the memory whatever the spread of candidates per input.
    """
    column = np.arange(ci.size) - (np.cumsum(counts) - counts)[ci]
    width = 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    place = np.empty(ci.size, np.int64)
    row_of = np.empty(counts.size, np.int64)
    for w in np.unique(width).tolist():
        rows = np.flatnonzero(width == w)
        row_of[rows] = np.arange(rows.size)
        mine = np.flatnonzero(width[ci] == w)
        r, c = row_of[ci[mine]], column[mine]
        dense = []
        for key in keys:
            d = np.full((rows.size, w), np.inf)
            d[r, c] = key[mine]
            dense.append(d)
        by_place = np.lexsort(dense, axis=-1)  # padding (inf) sorts last
        place_of = np.empty_like(by_place)
        np.put_along_axis(place_of, by_place, np.arange(w)[None, :], axis=-1)
        place[mine] = place_of[r, c]
    return place


# --------------------------------------------------------------------------- results


def _results(
    batch: _Batch,
    scores: _Scores,
    top_k: int,
    num_classes: int | None,
    rule: AbstainRule,
    description: dict[str, Any],
) -> list[dict[str, Any]]:
    """Rank each input's candidates, derive margin, entropy and abstention, build the dicts."""
    ci, score = batch.cand_input, scores.score
    n_inputs, n_models = len(batch.inputs), len(batch.models)
    counts = np.bincount(ci, minlength=n_inputs)
    first = np.cumsum(counts) - counts  # where each input's candidates begin
    keys = [-scores.support.astype(np.float64), -_tie_key(score)]
    if scores.tie is not None:
        keys.insert(1, -_tie_key(scores.tie))
    place = _places(ci, counts, keys)
    order = np.empty_like(place)
    order[first[ci] + place] = np.arange(ci.size)  # candidates by input, then by place
    top = order[place[order] < top_k]
    best = order[first]
    second = np.where(counts > 1, score[order[np.minimum(first + 1, ci.size - 1)]], scores.unlisted)
    margin = score[best] - second
    vote_share = scores.votes[best]
    entropy = _entropy(score, ci, counts, scores.unlisted, num_classes)
    below = (
        (margin < rule.min_margin) * 1
        + (vote_share < rule.min_vote_share) * 2
        + (score[best] < rule.min_top_score) * 4
    )
    reasons = [
        [name for bit, name in ((1, "margin"), (2, "vote_share"), (4, "top_score")) if code & bit]
        for code in range(8)
    ]

    display = batch.display
    top_labels = [display[n] for n in batch.cand_label[top].tolist()]
    top_scores, top_support = score[top].tolist(), scores.support[top].tolist()
    top_start = np.concatenate(([0], np.cumsum(np.minimum(counts, top_k)))).tolist()

    provenance = _provenance(batch)
    missing: list[list[str]] = [[] for _ in range(n_inputs)]
    for s in np.flatnonzero(~batch.present.ravel()).tolist():
        missing[s // n_models].append(batch.models[s % n_models])

    return [
        {
            "input": input_id,
            "winner": top_labels[a],
            "top_k": {
                "labels": top_labels[a:b],
                "scores": top_scores[a:b],
                "support": top_support[a:b],
            },
            "vote_share": share,
            "margin": gap,
            "entropy": h,
            "abstained": code > 0,
            "abstain_reasons": list(reasons[code]),
            "missing_models": gone,
            "provenance": provenance[i * n_models : (i + 1) * n_models],
            "method": description,
        }
        for i, (input_id, a, b, share, gap, h, code, gone) in enumerate(
            zip(
                batch.inputs,
                top_start[:-1],
                top_start[1:],
                vote_share.tolist(),
                margin.tolist(),
                entropy.tolist(),
                below.tolist(),
                missing,
                strict=True,
            )
        )
    ]


def _provenance(batch: _Batch) -> list[dict[str, Any]]:
    """Per slot (input-major): the model, its status, own list, residual, message and source."""
    start, raw, probs = batch.start.tolist(), batch.raw_labels, batch.prob.tolist()
    present = batch.present.ravel().tolist()
    residual = [
        r if ok else None for r, ok in zip(batch.residual.ravel().tolist(), present, strict=True)
    ]
    message = batch.message
    return [
        {
            "model": m,
            "status": status,
            "labels": raw[a:b],
            "probabilities": probs[a:b],
            "residual": r,
            "message": message.get(s),
            "source": source,
        }
        for s, (m, status, a, b, r, source) in enumerate(
            zip(
                batch.models * len(batch.inputs),
                batch.status,
                start[:-1],
                start[1:],
                residual,
                batch.source,
                strict=True,
            )
        )
    ]


def _entropy(
    score: np.ndarray,
    ci: np.ndarray,
    counts: np.ndarray,
    unlisted: np.ndarray,
    num_classes: int | None,
) -> np.ndarray:
    """Entropy (nats) of each input's renormalised vector; uniform when every score is 0."""
    rest = (num_classes - counts) if num_classes is not None else np.zeros_like(counts)
    z = np.bincount(ci, score, counts.size) + rest * unlisted
    safe = np.where(z > 0, z, 1.0)

    def plogp(p: np.ndarray) -> np.ndarray:
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)

    h = -np.bincount(ci, plogp(score / safe[ci]), counts.size) - rest * plogp(unlisted / safe)
    return np.where(z > 0, h, np.log(counts + rest))
