"""Combine the top-k predictions of several models per input (pure numpy, no Airflow).

Each input (an image, a specimen) has at most one prediction per model: labels in the model's own
order, their probabilities and a status. :func:`aggregate` merges them over a label vocabulary built
on the fly and returns JSON-plain results, small enough for XCom; :func:`aggregate_arrays` does the
same for predictions already held as arrays (label indices into a vocabulary, probabilities). The
rules, after ``reference/ensembles.md``:

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
* **Provenance** (each model's own list, residual, status, message and source, per input) is on by
  default. ``provenance=False`` leaves it out: for large batches it is most of the output (five
  copies of the input for five models) and most of the time spent building it, and the caller
  already holds it. ``missing_models`` still names the models that failed or gave nothing.

The work is one pass over the input mappings into flat arrays (none for :func:`aggregate_arrays`),
then array operations over the listed entries and their candidates, where the candidates are the
labels listed for each input: the memory grows with the number of listed labels, never with inputs
times vocabulary. The array work goes a chunk of inputs at a time (about 16,000 listed labels), so
that its arrays stay small and their memory is reused. Only the results are Python objects, built
from whole columns at once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import chain, compress, count, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from airflow_provider_oscar.errors import OscarError

__all__ = [
    "METHODS",
    "MISSING",
    "AbstainRule",
    "EnsembleError",
    "accuracy",
    "aggregate",
    "aggregate_arrays",
]

METHODS = ("soft_vote", "weighted_mean", "geometric_mean", "max", "majority_vote", "borda", "rrf")
MISSING = ("zero", "residual")
_RANK_METHODS = ("borda", "rrf")
_SUM_METHODS = ("soft_vote", "weighted_mean", "majority_vote", "borda", "rrf")
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
    _check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    if not predictions:
        return []
    read = _read_mappings(predictions, models, bool(provenance))
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
    _check_arguments(method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule)
    if not len(inputs):
        return []
    read = _read_arrays(
        inputs, models, vocabulary, labels, probabilities, answered, bool(provenance)
    )
    return _aggregate(
        read, method, weights, top_k, missing, floor, rrf_k, num_classes, min_models, rule
    )


def _aggregate(
    read: _Read,
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
    w = _model_weights(weights, read.models)
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
    step = max(1, _CHUNK_ENTRIES // max(1, math.ceil(read.entries_per_input)))
    for lo in range(0, len(read.inputs), step):
        part = _part(read, lo, min(lo + step, len(read.inputs)))
        _check_coverage(part, w, min_models, num_classes)
        scores = _score(part, method, w, missing, floor, rrf_k, num_classes)
        results += _results(part, scores, top_k, num_classes, rule, description, shown)
    return results


def accuracy(results: Iterable[Mapping[str, Any]], truth: Mapping[str, str]) -> dict[str, Any]:
    """Top-1 accuracy of the ensemble and of each model on the inputs whose true label is known.

    Labels compare normalised; a model that did not answer an input is wrong there. ``coverage``
    is the share of those inputs the ensemble did not abstain on, ``selective_accuracy`` its
    accuracy on them. Shares are ``None`` when there is nothing to count. The models' accuracy
    comes from the provenance: results aggregated with ``provenance=False`` give no ``models``.
    """
    known = {input_id: _label_key(label) for input_id, label in truth.items()}
    scored = [r for r in results if r["input"] in known]
    confident = [r for r in scored if not r["abstained"]]
    models = list(dict.fromkeys(p["model"] for r in scored for p in r.get("provenance", ())))

    def right(result: Mapping[str, Any], label: str | None) -> bool:
        return label is not None and _label_key(label) == known[result["input"]]

    def top1(result: Mapping[str, Any], model: str) -> str | None:
        lists = (
            p["labels"] for p in result.get("provenance", ()) if p["model"] == model and p["labels"]
        )
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
_NO_PREDICTION: dict[str, Any] = {"status": _ABSENT}  # the view of an absent prediction
_FIELDS = ("status", "labels", "probabilities", "message", "source")
_SEQUENCES = {list, tuple}
_NOT_FAILED = frozenset(("ok", "missing"))
_CHUNK_ENTRIES = 1 << 14  # listed labels aggregated together: 128 KiB per array of them


@dataclass(frozen=True)
class _Chunk:
    """The listed entries of a run of inputs, in slot then list order. Slots (input, model pairs,
    input-major) count from the run's first input; the provenance fields are empty without it."""

    answered: np.ndarray  # (answered slots,) ascending
    lengths: np.ndarray  # (answered slots,) the length of each answered list
    prob: np.ndarray  # (entries,)
    label: np.ndarray  # (entries,) label id
    status: list[str] = field(default_factory=list)  # per slot
    message: dict[int, str] = field(default_factory=dict)  # slot -> message of a failed model
    source: list[Any] = field(default_factory=list)  # per slot: the output it came from, if known
    raw_labels: list[Any] = field(default_factory=list)  # per entry, as the model gave it


class _Read(ABC):
    """A batch as read and checked: inputs, models, the labels' display forms (by label id, in
    the alphabetical order of their keys), and each run of inputs' entries on demand."""

    inputs: list[str]
    models: list[str]
    display: list[str]
    provenance: bool
    entries_per_input: float  # on average, or at most

    @abstractmethod
    def chunk(self, lo: int, hi: int) -> _Chunk:
        """The entries of inputs ``lo`` to ``hi``."""


class _Mappings(_Read):
    """Predictions read from mappings, into flat arrays for the whole batch."""

    def __init__(
        self,
        inputs: list[str],
        models: list[str],
        display: list[str],
        answered: np.ndarray,
        lengths: np.ndarray,
        prob: np.ndarray,
        label: np.ndarray,
        provenance: dict[str, Any] | None,
    ) -> None:
        self.inputs, self.models, self.display = inputs, models, display
        self.answered, self.lengths, self.prob, self.label = answered, lengths, prob, label
        self.offset = np.concatenate(([0], np.cumsum(lengths)))
        self.entries_per_input = label.size / max(len(inputs), 1)
        self.provenance = provenance is not None
        self.trail = provenance or {}
        self.failed = sorted(self.trail.get("message", ()))  # the slots with a message

    def chunk(self, lo: int, hi: int) -> _Chunk:
        m = len(self.models)
        a, b = np.searchsorted(self.answered, [lo * m, hi * m]).tolist()
        e, f = int(self.offset[a]), int(self.offset[b])
        chunk = _Chunk(
            self.answered[a:b] - lo * m, self.lengths[a:b], self.prob[e:f], self.label[e:f]
        )
        if not self.provenance:
            return chunk
        trail = self.trail
        here = self.failed[bisect_left(self.failed, lo * m) : bisect_left(self.failed, hi * m)]
        message = {s - lo * m: trail["message"][s] for s in here}
        return replace(
            chunk,
            status=trail["status"][lo * m : hi * m],
            message=message,
            source=trail["source"][lo * m : hi * m],
            raw_labels=trail["raw_labels"][e:f],
        )


def _read_mappings(
    predictions: Mapping[str, Mapping[str, Any]], models: Sequence[str] | None, provenance: bool
) -> _Read:
    """One pass over the mappings into flat lists, then arrays; checks every prediction.

    Each step is one C-level pass (``map``, ``chain``, ``np.fromiter``) over all the predictions,
    their labels or their probabilities, with the type checks done on the set of types seen.
    """
    inputs = list(predictions)
    rows = list(predictions.values())
    names = _model_names(inputs, rows, models)
    n_models = len(names)

    def where(s: int) -> str:
        return f"input {inputs[s // n_models]!r}, model {names[s % n_models]!r}"

    views = _views(_slots(rows, names))
    raw_status = list(map(dict.get, views, repeat("status")))
    try:
        name_of = {s: _status_name(s) for s in set(raw_status)}
    except TypeError:
        raise EnsembleError("statuses must be strings") from None
    if set(name_of.values()) == {"ok"}:
        answered, answers = np.arange(len(views)), views
    else:
        is_ok = {s: name == "ok" for s, name in name_of.items()}
        flags = list(map(is_ok.__getitem__, raw_status))
        answered, answers = np.flatnonzero(flags), list(compress(views, flags))
    labels: list[Any] = list(map(dict.get, answers, repeat("labels")))
    probs: list[Any] = list(map(dict.get, answers, repeat("probabilities")))
    lengths = _list_lengths(labels, probs, answered, where)
    n_entries = int(lengths.sum())
    try:
        prob = np.fromiter(chain.from_iterable(probs), np.float64, n_entries)
    except (TypeError, ValueError):
        raise EnsembleError("probabilities must be numbers") from None
    # Number each label by the entry where it first appears: one dict lookup per entry.
    first_at: dict[Any, int] = {}
    try:
        first = np.fromiter(
            map(first_at.setdefault, chain.from_iterable(labels), count()), np.int64, n_entries
        )
    except TypeError:
        raise EnsembleError("labels must be strings") from None
    display, ids = _label_ids(list(first_at))
    label_at = np.empty(n_entries, np.int64)
    label_at[np.fromiter(first_at.values(), np.int64, len(first_at))] = ids
    trail = None
    if provenance:
        status = list(map(name_of.__getitem__, raw_status))
        trail = {
            "status": status,
            "message": _messages(views, status),
            "source": list(map(dict.get, views, repeat("source"))),
            "raw_labels": list(chain.from_iterable(labels)),
        }
    return _Mappings(inputs, names, display, answered, lengths, prob, label_at[first], trail)


def _slots(rows: list[Mapping[str, Any]], names: list[str]) -> list[Any]:
    """Each (input, model) slot's prediction, input-major; ``None`` where there is none."""
    if set(map(type, rows)) == {dict}:
        try:  # every input has every model, the usual case
            if len(names) == 1:
                return list(map(itemgetter(names[0]), rows))
            return list(chain.from_iterable(map(itemgetter(*names), rows)))
        except KeyError:
            pass
    return [row.get(m) for row in rows for m in names]


def _views(predictions: list[Any]) -> list[dict[str, Any]]:
    """Each prediction as a plain dict: dicts as they are, other mappings and objects by field."""
    if set(map(type, predictions)) == {dict}:
        return predictions
    return [p if type(p) is dict else _view(p) for p in predictions]


def _view(prediction: Any) -> dict[str, Any]:
    if prediction is None:
        return _NO_PREDICTION
    if isinstance(prediction, Mapping):
        return {name: prediction.get(name) for name in _FIELDS}
    return {name: getattr(prediction, name, None) for name in _FIELDS}


def _messages(views: list[dict[str, Any]], status: list[str]) -> dict[int, str]:
    """The messages of the failed predictions that gave one, by slot."""
    if set(status) <= _NOT_FAILED:
        return {}
    failed = [s for s, name in enumerate(status) if name not in _NOT_FAILED]
    return {s: str(views[s]["message"]) for s in failed if views[s].get("message") is not None}


class _Arrays(_Read):
    """Predictions given as arrays: checked whole, flattened a run of inputs at a time."""

    def __init__(
        self,
        inputs: list[str],
        models: list[str],
        words: list[str],
        ids: np.ndarray,
        probs: np.ndarray,
        present: np.ndarray,
        provenance: bool,
    ) -> None:
        self.inputs, self.models, self.words = inputs, models, words
        self.ids, self.probs, self.present = ids, probs, present  # (slots, k), (slots, k), (slots,)
        self.provenance = provenance
        self.entries_per_input = ids.size / max(len(inputs), 1)
        self.full = bool((ids[:, -1] >= 0)[present].all())  # every answered list has k labels
        self.display, key_of = _label_ids(words)
        if len(self.display) < len(words):  # forms of one label: show the first the batch lists
            listed = np.flatnonzero((ids >= 0) & present[:, None])
            word = ids.ravel()[listed]
            seen = np.full(len(words), listed.size)
            np.minimum.at(seen, word, np.arange(listed.size))
            by_seen = np.argsort(seen, kind="stable")
            self.display, key_by_seen = _label_ids([words[j] for j in by_seen.tolist()])
            key_of = np.empty_like(key_by_seen)
            key_of[by_seen] = key_by_seen
        self.key_of = key_of

    def chunk(self, lo: int, hi: int) -> _Chunk:
        m = len(self.models)
        ids, probs, present = (
            self.ids[lo * m : hi * m],
            self.probs[lo * m : hi * m],
            self.present[lo * m : hi * m],
        )
        answered = np.flatnonzero(present)
        if self.full:  # the answered rows are the entries
            lengths = np.full(answered.size, ids.shape[1])
            if answered.size < present.size:
                ids, probs = ids[answered], probs[answered]
            word, prob = ids.ravel(), probs.ravel()
        else:
            listed = ids >= 0
            listed &= present[:, None]
            lengths = listed.sum(axis=1)[answered]
            entry = np.flatnonzero(listed)
            word, prob = ids.ravel()[entry], probs.ravel()[entry]
        chunk = _Chunk(answered, lengths, prob, self.key_of[word])
        if not self.provenance:
            return chunk
        return replace(
            chunk,
            status=["ok" if ok else "missing" for ok in present.tolist()],
            source=[None] * present.size,
            raw_labels=np.array(self.words, dtype=object)[word].tolist(),
        )


def _read_arrays(
    inputs: Sequence[str],
    models: Sequence[str],
    vocabulary: Sequence[str],
    labels: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    answered: npt.ArrayLike | None,
    provenance: bool,
) -> _Read:
    """The arrays checked whole (a few reductions over them); only the vocabulary is read in
    Python."""
    inputs, names, words = list(inputs), list(models), list(vocabulary)
    n_inputs, n_models, n_words = len(inputs), len(names), len(words)
    if len(set(inputs)) != n_inputs:
        raise EnsembleError("inputs contains duplicate ids")
    if len(set(names)) != n_models:
        raise EnsembleError("models contains duplicate names")
    if not names:
        raise EnsembleError("no models to aggregate")

    def where(s: int) -> str:
        return f"input {inputs[s // n_models]!r}, model {names[s % n_models]!r}"

    ids = np.asarray(labels)
    if ids.ndim != 3 or ids.shape[:2] != (n_inputs, n_models) or ids.shape[2] < 1:
        raise EnsembleError(
            f"labels must have shape (inputs, models, k) = ({n_inputs}, {n_models}, k >= 1), "
            f"got {ids.shape}"
        )
    if ids.dtype.kind not in "iu":
        raise EnsembleError(f"labels must be integer positions in the vocabulary, got {ids.dtype}")
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise EnsembleError("probabilities must be numbers") from None
    if probs.shape != ids.shape:
        raise EnsembleError(f"probabilities have shape {probs.shape}, labels {ids.shape}")
    shape = (n_inputs, n_models)
    present = np.ones(shape, bool) if answered is None else np.asarray(answered)
    if present.dtype != bool or present.shape != shape:
        raise EnsembleError(f"answered must be a boolean array of shape {shape}")
    n_slots = n_inputs * n_models
    ids, probs, present = ids.reshape(n_slots, -1), probs.reshape(n_slots, -1), present.ravel()
    if ids.size and (ids.min() < -1 or ids.max() >= n_words):
        outside = ((ids < -1) | (ids >= n_words)) & present[:, None]
        if outside.any():
            s = int(np.flatnonzero(outside.any(axis=1))[0])
            bad = int(ids[s][outside[s]][0])
            raise EnsembleError(
                f"{where(s)}: label {bad} outside the vocabulary of {n_words} labels"
            )
    listed = (ids >= 0).view(np.int8)
    if not listed.all():
        resumed = np.diff(listed, axis=1) > 0  # a label after a -1
        if resumed.any():
            gap = np.flatnonzero(resumed.any(axis=1) & present)
            if gap.size:
                raise EnsembleError(f"{where(int(gap[0]))}: a label after -1; -1 only ends a list")
        empty = np.flatnonzero(present & (listed[:, 0] == 0))
        if empty.size:
            raise EnsembleError(f"{where(int(empty[0]))}: answered but no labels")
    return _Arrays(inputs, names, words, ids, probs, present, provenance)


@dataclass(frozen=True)
class _Part:
    """A run of inputs as flat arrays: slots are (input, model) pairs, entries listed labels;
    ``trail`` is the chunk it was built from, with the provenance fields when they are wanted."""

    inputs: list[str]
    models: list[str]
    display: list[str]  # per label id; ids follow the normalised labels' alphabetical order
    present: np.ndarray  # (inputs, models) bool: the model answered the input
    length: np.ndarray  # (inputs, models) int: k_m, 0 when missing
    residual: np.ndarray  # (inputs, models) float: r_m, 0 when missing
    start: np.ndarray  # (slots + 1,) entry offsets of each slot
    answered: np.ndarray  # (answered slots,)
    slot: np.ndarray  # (entries,) slot of each entry
    prob: np.ndarray  # (entries,)
    cand: np.ndarray  # (entries,) candidate of each entry; candidates are (input, label) pairs
    cand_input: np.ndarray  # (candidates,) sorted by input, then label id
    cand_label: np.ndarray  # (candidates,)
    provenance: bool
    trail: _Chunk

    @property
    def rank(self) -> np.ndarray:
        """(entries,) each entry's 1-based position in its model's list."""
        return np.arange(self.slot.size) - self.start[self.slot] + 1


def _part(read: _Read, lo: int, hi: int) -> _Part:
    """Inputs ``lo`` to ``hi``: checks the probabilities and that no list names a label twice,
    and finds the candidates."""
    chunk = read.chunk(lo, hi)
    inputs, names, display = read.inputs[lo:hi], read.models, read.display
    n_inputs, n_models = len(inputs), len(names)

    def where(s: int) -> str:
        return f"input {inputs[s // n_models]!r}, model {names[s % n_models]!r}"

    n_slots = n_inputs * n_models
    answered, prob, label = chunk.answered, chunk.prob, chunk.label
    length = np.zeros(n_slots, np.int64)
    length[answered] = chunk.lengths
    start = np.zeros(n_slots + 1, np.int64)
    np.cumsum(length, out=start[1:])
    slot = np.repeat(answered, chunk.lengths)
    total = np.bincount(slot, prob, n_slots)
    _check_probabilities(prob, slot, total, where)

    cand_input, cand_label, cand, twice = _candidates(label, slot, n_models, max(len(display), 1))
    if twice >= 0:
        s = int(slot[twice])
        raise EnsembleError(f"{where(s)}: label {display[int(label[twice])]!r} listed twice")

    present = np.zeros(n_slots, bool)
    present[answered] = True
    shape = (n_inputs, n_models)
    return _Part(
        inputs=inputs,
        models=names,
        display=display,
        present=present.reshape(shape),
        length=length.reshape(shape),
        residual=np.where(present, np.maximum(1.0 - total, 0.0), 0.0).reshape(shape),
        start=start,
        answered=answered,
        slot=slot,
        prob=prob,
        cand=cand,
        cand_input=cand_input,
        cand_label=cand_label,
        provenance=read.provenance,
        trail=chunk,
    )


def _model_names(
    inputs: list[str], rows: list[Mapping[str, Any]], models: Sequence[str] | None
) -> list[str]:
    """``models``, or every model seen in first-seen order; checks the rows name only those."""
    if not set(map(type, rows)) <= {dict}:
        for input_id, row in zip(inputs, rows, strict=True):
            if not isinstance(row, Mapping):
                raise EnsembleError(
                    f"input {input_id!r}: expected a mapping of model name to output"
                )
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


def _list_lengths(
    labels: list[Any], probs: list[Any], answered: np.ndarray, where: Callable[[int], str]
) -> np.ndarray:
    """The length of each answered list; checks they are non-empty lists of equal lengths."""
    if not {*map(type, labels), *map(type, probs)} <= _SEQUENCES:
        pairs = zip(answered.tolist(), labels, probs, strict=True)
        s = next(s for s, a, b in pairs if {type(a), type(b)} - _SEQUENCES)
        raise EnsembleError(f"{where(s)}: labels and probabilities must be lists")
    lengths = np.fromiter(map(len, labels), np.int64, len(labels))
    n_probs = np.fromiter(map(len, probs), np.int64, len(probs))
    mismatch = np.flatnonzero(lengths != n_probs)
    if mismatch.size:
        k = int(mismatch[0])
        detail = f"{lengths[k]} labels but {n_probs[k]} probabilities"
        raise EnsembleError(f"{where(int(answered[k]))}: {detail}")
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise EnsembleError(f"{where(int(answered[empty[0]]))}: status ok but no labels")
    return lengths


def _check_probabilities(
    prob: np.ndarray, slot: np.ndarray, total: np.ndarray, where: Callable[[int], str]
) -> None:
    """Each probability in [0, 1] and each list's sum at most 1, up to float32 rounding."""
    in_range = prob.min(initial=0.0) >= 0 and prob.max(initial=0.0) <= 1 + _TOLERANCE  # no NaN
    if in_range and total.max(initial=0.0) <= 1 + _TOLERANCE:
        return
    bad = np.flatnonzero(~((prob >= 0) & (prob <= 1 + _TOLERANCE)))  # NaN is bad too
    if bad.size:
        e = int(bad[0])
        raise EnsembleError(f"{where(int(slot[e]))}: probability {float(prob[e])!r} outside [0, 1]")
    over = np.flatnonzero(total > 1 + _TOLERANCE)
    if over.size:
        s = int(over[0])
        raise EnsembleError(f"{where(s)}: probabilities sum to {total[s]:.7g} > 1")


def _status_name(status: Any) -> str:
    if status is _ABSENT:
        return "missing"
    return "ok" if status is None else str(status).strip().casefold()


def _label_key(label: str) -> str:
    return " ".join(label.split()).casefold()


def _label_ids(raw_labels: list[Any]) -> tuple[list[str], np.ndarray]:
    """Display form per label id (ids in alphabetical order of the keys) and each raw label's id.

    ``raw_labels`` are distinct, in the order the batch first lists them: a label keeps its first
    form.
    """
    shown: list[str] = []
    if set(map(type, raw_labels)) <= {str}:
        shown = [" ".join(raw.split()) for raw in raw_labels]
    if len(shown) != len(raw_labels) or "" in shown:
        for raw in raw_labels:
            if not isinstance(raw, str) or not raw.strip():
                raise EnsembleError(f"labels must be non-empty strings, got {raw!r}")
        shown = [" ".join(raw.split()) for raw in raw_labels]
    # Collapsed, no form holds a newline: case-fold them all in one string.
    keys = "\n".join(shown).casefold().split("\n")
    if len(set(keys)) == len(keys):  # one form per label, the usual case
        order = sorted(range(len(keys)), key=keys.__getitem__)
        ids = np.empty(len(keys), np.int64)
        ids[order] = np.arange(len(keys))
        return list(map(shown.__getitem__, order)), ids
    first_form = dict(zip(reversed(keys), reversed(shown), strict=True))  # the first one wins
    ordered = sorted(first_form)
    number = dict(zip(ordered, range(len(ordered)), strict=True))
    ids = np.fromiter(map(number.__getitem__, keys), np.int64, len(keys))
    return list(map(first_form.__getitem__, ordered)), ids


def _candidates(
    label: np.ndarray, slot: np.ndarray, n_models: int, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The candidates, (input, label) pairs sorted by input then label: their inputs, their
    labels, each entry's candidate, and the first entry that repeats a label of its own list (-1
    when none does).

    One stable sort of the entries by (input, label), so that repeats within a list are adjacent:
    ``np.lexsort`` of 16-bit keys (radix sorts) when they fit, else a sort of 64-bit keys.
    """
    row = slot // n_models
    if n_labels <= 1 << 16 and row.size and row[-1] < 1 << 16:
        by_key = np.lexsort((label.astype(np.uint16), row.astype(np.uint16)))
    else:
        by_key = np.argsort(row * n_labels + label, kind="stable")
    ordered = label[by_key]
    new = np.empty(label.size, bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    new[1:] |= row[1:] != row[:-1]  # the k-th entry in key order has the k-th entry's input
    by_slot = slot[by_key]
    twice = np.flatnonzero(~new[1:] & (by_slot[1:] == by_slot[:-1]))
    cand = np.empty(label.size, np.int64)
    cand[by_key] = np.cumsum(new) - 1
    first_twice = int(by_key[twice[0] + 1]) if twice.size else -1
    return row[new], ordered[new], cand, first_twice


def _check_coverage(part: _Part, w: np.ndarray, min_models: int, num_classes: int | None) -> None:
    """Enough models (and weight) answered every input; ``num_classes`` covers its labels."""
    n_models = len(part.models)
    answered = part.present.sum(axis=1)
    short = np.flatnonzero(answered < min_models)
    if short.size:
        i = int(short[0])
        gone = [m for m, ok in zip(part.models, part.present[i], strict=True) if not ok]
        raise EnsembleError(
            f"input {part.inputs[i]!r}: {answered[i]} of {n_models} models answered "
            f"(missing: {', '.join(gone)}); min_models={min_models}"
        )
    weightless = np.flatnonzero((part.present * w).sum(axis=1) <= 0)
    if weightless.size:
        i = int(weightless[0])
        raise EnsembleError(f"input {part.inputs[i]!r}: every model that answered has weight 0")
    if num_classes is not None:
        labels = np.bincount(part.cand_input, minlength=len(part.inputs))
        wide = np.flatnonzero(labels > num_classes)
        if wide.size:
            i = int(wide[0])
            raise EnsembleError(
                f"num_classes={num_classes} is less than the {labels[i]} labels listed for "
                f"input {part.inputs[i]!r}"
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
    part: _Part,
    method: str,
    w: np.ndarray,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
) -> _Scores:
    """Score every candidate.

    With unlisted labels at 0, the sums over models are sums over the listed entries: one
    ``np.bincount`` each, adding in entry order, so in model order per candidate, as a loop over
    the models would (with weights all 1 the products are the probabilities themselves).
    Otherwise (residual spreading, geometric mean, max) every model has a value for every
    candidate: (model, candidate) matrices, model-major so that the reductions over models run
    along whole rows.
    """
    present = part.present.T  # (models, inputs)
    weight = np.where(present, w[:, None], 0.0)
    total = weight.sum(axis=0)
    ci, cand, n_cand = part.cand_input, part.cand, part.cand_input.size
    total_c = total[ci]
    slot_weight = weight.T.ravel()
    unit = bool((w == 1).all())
    heads = part.start[part.answered]  # the first entry of each list
    votes = np.bincount(cand[heads], slot_weight[part.answered], n_cand) / total_c
    support = np.bincount(cand, minlength=n_cand)
    unlisted = np.zeros(len(part.inputs))
    if missing == "zero" and method in _SUM_METHODS:
        w_entry = None if unit else slot_weight[part.slot]
        if method == "borda":
            points = (part.length.ravel()[part.slot] - part.rank + 1).astype(np.float64)
            score = np.bincount(cand, points if w_entry is None else w_entry * points, n_cand)
            return _Scores(score, None, votes, support, unlisted)
        if method == "rrf":
            share = 1.0 if w_entry is None else w_entry
            score = np.bincount(cand, share / (rrf_k + part.rank), n_cand)
            return _Scores(score, None, votes, support, unlisted)
        mass = part.prob if w_entry is None else w_entry * part.prob
        soft = np.bincount(cand, mass, n_cand) / total_c
        if method == "majority_vote":
            return _Scores(votes, soft, votes, support, unlisted)
        return _Scores(soft, None, votes, support, unlisted)

    fill = np.zeros(present.shape)
    if missing == "residual":
        assert num_classes is not None
        room = num_classes - part.length.T
        fill = np.where(present & (room > 0), part.residual.T / np.maximum(room, 1), 0.0)
    model = part.slot % len(part.models)
    cw = weight[:, ci]  # (models, candidates)
    value = fill[:, ci]
    value[model, cand] = part.prob

    def mean(v: np.ndarray, v_unlisted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (v * cw).sum(axis=0) / total_c, (v_unlisted * weight).sum(axis=0) / total

    tie = None
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
    else:  # majority_vote, with residual spreading in its tie-break
        score, tie = votes, mean(value, fill)[0]
    return _Scores(score, tie, votes, support, unlisted)


def _tie_key(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to ``_TIE_BITS`` mantissa bits: equal up to rounding noise means tied."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(np.ldexp(mantissa, _TIE_BITS)), exponent - _TIE_BITS)


_DROPPED = 53 - _TIE_BITS  # low bits of a float's 53-bit significand that its tie key drops


def _tie_bits(x: np.ndarray) -> np.ndarray | None:
    """The tie keys of ``x`` as integers that order as they do, or ``None`` unless every ``x`` is
    0 or a normal positive float.

    The bits of a non-negative float order as the number does; rounding them half to even at bit
    ``_DROPPED`` rounds the significand as :func:`_tie_key` does (a carry into the exponent gives
    the next power of two, as there).
    """
    bits = x.view(np.int64)
    if x.size and (bits.min() < 0 or (bits - 1).view(np.uint64).min() < (1 << 52) - 1):
        return None  # negative, -0.0 or subnormal
    half = 1 << (_DROPPED - 1)
    return (bits + (half - 1) + ((bits >> _DROPPED) & 1)) >> _DROPPED


def _ranking(scores: _Scores, ci: np.ndarray, counts: np.ndarray, depth: int) -> np.ndarray:
    """The candidates in each input's first ``depth`` places, ``(inputs, depth)``; -1 past the
    last of an input's candidates.

    The order is the tie key of the score, then (majority vote) of the tie-break score, then the
    support, descending, then the label (candidates arrive in label order), as one sort of the
    rows of dense ``(inputs, width)`` matrices. One matrix when the inputs have about as many
    candidates each, else one per power-of-two width, so that the padding at most doubles the
    memory whatever the spread.

    Usually the keys pack into one integer per candidate, unique within its input, so that a plain
    ``np.sort`` does: the integer tie key (:func:`_tie_bits`, 50 bits), the support and the
    column. Otherwise (majority vote, subnormal scores, too many models or candidates)
    ``np.lexsort`` takes the keys one by one.
    """
    tie_bits = _tie_bits(scores.score) if scores.tie is None else None
    support_bits = int(scores.support.max(initial=0)).bit_length()
    first = np.cumsum(counts) - counts
    column = np.arange(ci.size) - first[ci]
    best = np.full((counts.size, depth), -1, np.int64)
    for rows, width, mine in _row_groups(ci, counts):
        r = ci if mine is None else np.searchsorted(rows, ci[mine])
        c = column if mine is None else column[mine]
        flat = r * width + c
        column_bits = (width - 1).bit_length()
        if tie_bits is not None and support_bits + column_bits <= _DROPPED:
            key = (tie_bits << (support_bits + column_bits)) | (scores.support << column_bits)
            key |= width - 1 - column
            # Keys are >= 1 (the support is), so padding at 0 sorts last and reads as column
            # ``width - 1``, past the candidates of a row that has padding.
            dense = np.zeros((rows.size, width), np.int64)
            dense.ravel()[flat] = -(key if mine is None else key[mine])
            ordered = np.sort(dense, axis=-1)[:, :depth]
            by_place = width - 1 - (-ordered & ((1 << column_bits) - 1))
        else:
            keys = [-scores.support.astype(np.float64), -_tie_key(scores.score)]
            if scores.tie is not None:
                keys.insert(1, -_tie_key(scores.tie))
            planes = []
            for key in keys:
                plane = np.full((rows.size, width), np.inf)
                plane.ravel()[flat] = key if mine is None else key[mine]
                planes.append(plane)
            by_place = np.lexsort(planes, axis=-1)[:, :depth]  # padding (inf) sorts last
        best[rows, : by_place.shape[1]] = np.where(
            by_place < counts[rows, None], first[rows, None] + by_place, -1
        )
    return best


def _row_groups(
    ci: np.ndarray, counts: np.ndarray
) -> Iterable[tuple[np.ndarray, int, np.ndarray | None]]:
    """Rows of inputs sorted together: (inputs, row width, their candidates or None for all)."""
    widest = int(counts.max())
    if widest * counts.size <= 2 * ci.size:
        yield np.arange(counts.size), widest, None
        return
    width = 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for w in np.unique(width).tolist():
        yield np.flatnonzero(width == w), w, np.flatnonzero(width[ci] == w)


# --------------------------------------------------------------------------- results


def _results(
    part: _Part,
    scores: _Scores,
    top_k: int,
    num_classes: int | None,
    rule: AbstainRule,
    description: dict[str, Any],
    shown: np.ndarray,
) -> list[dict[str, Any]]:
    """Rank each input's candidates, derive margin, entropy and abstention, build the dicts.

    The per-input lists come from ``(inputs, top_k)`` matrices turned into lists whole
    (``tolist``), trimmed only for the inputs with fewer than ``top_k`` candidates.
    """
    ci, score = part.cand_input, scores.score
    n_inputs, n_models = len(part.inputs), len(part.models)
    counts = np.bincount(ci, minlength=n_inputs)
    places = _ranking(scores, ci, counts, max(top_k, 2))
    best = places[:, 0]
    second = np.where(counts > 1, score[places[:, 1]], scores.unlisted)
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

    top = places[:, :top_k]
    labels = shown[part.cand_label[top]].tolist()
    top_scores, support = score[top].tolist(), scores.support[top].tolist()
    for i in np.flatnonzero(counts < top_k).tolist():
        n = int(counts[i])
        labels[i], top_scores[i], support[i] = labels[i][:n], top_scores[i][:n], support[i][:n]

    columns = zip(
        part.inputs,
        labels,
        top_scores,
        support,
        vote_share.tolist(),
        margin.tolist(),
        entropy.tolist(),
        below.tolist(),
        strict=True,
    )
    results = [
        {
            "input": input_id,
            "winner": top_labels[0],
            "top_k": {"labels": top_labels, "scores": top_score, "support": top_support},
            "vote_share": share,
            "margin": gap,
            "entropy": h,
            "abstained": code > 0,
            "abstain_reasons": [*reasons[code]],
            "missing_models": [],
            "method": description,
        }
        for input_id, top_labels, top_score, top_support, share, gap, h, code in columns
    ]
    if part.provenance:
        provenance = _provenance(part)
        for result, a in zip(results, range(0, n_inputs * n_models, n_models), strict=True):
            result["provenance"] = provenance[a : a + n_models]
    for s in np.flatnonzero(~part.present.ravel()).tolist():
        results[s // n_models]["missing_models"].append(part.models[s % n_models])
    return results


def _provenance(part: _Part) -> list[dict[str, Any]]:
    """Per slot (input-major): the model, its status, own list, residual, message and source."""
    start, raw, probs = part.start.tolist(), part.trail.raw_labels, part.prob.tolist()
    present = part.present.ravel().tolist()
    residual = [
        r if ok else None for r, ok in zip(part.residual.ravel().tolist(), present, strict=True)
    ]
    message = part.trail.message
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
                part.models * len(part.inputs),
                part.trail.status,
                start[:-1],
                start[1:],
                residual,
                part.trail.source,
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
    h = -np.bincount(ci, _plogp(score / safe[ci]), counts.size) - rest * _plogp(unlisted / safe)
    return np.where(z > 0, h, np.log(counts + rest))


def _plogp(p: np.ndarray) -> np.ndarray:
    """``p log p``, 0 where ``p`` is 0."""
    plogp = np.zeros_like(p)
    np.log(p, out=plogp, where=p > 0)
    plogp *= p
    return plogp
