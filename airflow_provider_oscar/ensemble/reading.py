"""Predictions read and checked, from mappings or from arrays, into flat arrays by chunk."""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, compress, count, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from airflow_provider_oscar.ensemble.base import EnsembleError

# --------------------------------------------------------------------------- collection

_ABSENT = object()  # stands for the status of a prediction that is not there at all
_NO_PREDICTION: dict[str, Any] = {"status": _ABSENT}  # the view of an absent prediction
_FIELDS = ("status", "labels", "probabilities", "message", "source")
_SEQUENCES = {list, tuple}
_NOT_FAILED = frozenset(("ok", "missing"))


@dataclass(frozen=True)
class Chunk:
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


class Read(ABC):
    """A batch as read and checked: inputs, models, the labels' display forms (by label id, in
    the alphabetical order of their keys), and each run of inputs' entries on demand."""

    inputs: list[str]
    models: list[str]
    display: list[str]
    provenance: bool
    entries_per_input: float  # on average, or at most

    @abstractmethod
    def chunk(self, lo: int, hi: int) -> Chunk:
        """The entries of inputs ``lo`` to ``hi``."""


class _Mappings(Read):
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

    def chunk(self, lo: int, hi: int) -> Chunk:
        m = len(self.models)
        a, b = np.searchsorted(self.answered, [lo * m, hi * m]).tolist()
        e, f = int(self.offset[a]), int(self.offset[b])
        chunk = Chunk(
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


def read_mappings(
    predictions: Mapping[str, Mapping[str, Any]], models: Sequence[str] | None, provenance: bool
) -> Read:
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
        name_of = {s: status_name(s) for s in set(raw_status)}
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
    display, ids = label_ids(list(first_at))
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


class _Arrays(Read):
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
        self.display, key_of = label_ids(words)
        if len(self.display) < len(words):  # forms of one label: show the first the batch lists
            listed = np.flatnonzero((ids >= 0) & present[:, None])
            word = ids.ravel()[listed]
            seen = np.full(len(words), listed.size)
            np.minimum.at(seen, word, np.arange(listed.size))
            by_seen = np.argsort(seen, kind="stable")
            self.display, key_by_seen = label_ids([words[j] for j in by_seen.tolist()])
            key_of = np.empty_like(key_by_seen)
            key_of[by_seen] = key_by_seen
        self.key_of = key_of

    def chunk(self, lo: int, hi: int) -> Chunk:
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
        chunk = Chunk(answered, lengths, prob, self.key_of[word])
        if not self.provenance:
            return chunk
        return replace(
            chunk,
            status=["ok" if ok else "missing" for ok in present.tolist()],
            source=[None] * present.size,
            raw_labels=np.array(self.words, dtype=object)[word].tolist(),
        )


def read_arrays(
    inputs: Sequence[str],
    models: Sequence[str],
    vocabulary: Sequence[str],
    labels: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    answered: npt.ArrayLike | None,
    provenance: bool,
) -> Read:
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


def label_ids(raw_labels: list[Any]) -> tuple[list[str], np.ndarray]:
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


def status_name(status: Any) -> str:
    if status is _ABSENT:
        return "missing"
    return "ok" if status is None else str(status).strip().casefold()
