"""A chunk of inputs as flat arrays: its entries, candidates and the checks on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from airflow_provider_oscar.ensemble.base import TOLERANCE, EnsembleError
from airflow_provider_oscar.ensemble.reading import Chunk, Read


@dataclass(frozen=True)
class Part:
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
    trail: Chunk

    @property
    def rank(self) -> np.ndarray:
        """(entries,) each entry's 1-based position in its model's list."""
        return np.arange(self.slot.size) - self.start[self.slot] + 1


def build_part(read: Read, lo: int, hi: int) -> Part:
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
    return Part(
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


def _check_probabilities(
    prob: np.ndarray, slot: np.ndarray, total: np.ndarray, where: Callable[[int], str]
) -> None:
    """Each probability in [0, 1] and each list's sum at most 1, up to float32 rounding."""
    in_range = prob.min(initial=0.0) >= 0 and prob.max(initial=0.0) <= 1 + TOLERANCE  # no NaN
    if in_range and total.max(initial=0.0) <= 1 + TOLERANCE:
        return
    bad = np.flatnonzero(~((prob >= 0) & (prob <= 1 + TOLERANCE)))  # NaN is bad too
    if bad.size:
        e = int(bad[0])
        raise EnsembleError(f"{where(int(slot[e]))}: probability {float(prob[e])!r} outside [0, 1]")
    over = np.flatnonzero(total > 1 + TOLERANCE)
    if over.size:
        s = int(over[0])
        raise EnsembleError(f"{where(s)}: probabilities sum to {total[s]:.10g} > 1")


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


def check_coverage(part: Part, w: np.ndarray, min_models: int, num_classes: int | None) -> None:
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
