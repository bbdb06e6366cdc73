"""Scores of every candidate, and each input's ranking of its candidates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from airflow_provider_oscar.ensemble.base import SUM_METHODS, TIE_BITS
from airflow_provider_oscar.ensemble.parts import Part


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # (candidates,)
    tie: np.ndarray | None  # (candidates,) second ranking key (majority vote: soft-vote score)
    votes: np.ndarray  # (candidates,) weighted share of the models whose top-1 it is
    support: np.ndarray  # (candidates,) how many models listed it
    unlisted: np.ndarray  # (inputs,) the score of a label no model listed


def score_part(
    part: Part,
    method: str,
    w: np.ndarray,
    missing: str,
    floor: float,
    rrf_k: float,
    num_classes: int | None,
) -> Scores:
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
    if missing == "zero" and method in SUM_METHODS:
        w_entry = None if unit else slot_weight[part.slot]
        if method == "borda":
            points = (part.length.ravel()[part.slot] - part.rank + 1).astype(np.float64)
            score = np.bincount(cand, points if w_entry is None else w_entry * points, n_cand)
            return Scores(score, None, votes, support, unlisted)
        if method == "rrf":
            share = 1.0 if w_entry is None else w_entry
            score = np.bincount(cand, share / (rrf_k + part.rank), n_cand)
            return Scores(score, None, votes, support, unlisted)
        mass = part.prob if w_entry is None else w_entry * part.prob
        soft = np.bincount(cand, mass, n_cand) / total_c
        if method == "majority_vote":
            return Scores(votes, soft, votes, support, unlisted)
        return Scores(soft, None, votes, support, unlisted)

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
    return Scores(score, tie, votes, support, unlisted)


def _tie_key(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to ``TIE_BITS`` mantissa bits: equal up to rounding noise means tied."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(np.ldexp(mantissa, TIE_BITS)), exponent - TIE_BITS)


_DROPPED = 53 - TIE_BITS  # low bits of a float's 53-bit significand that its tie key drops


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


def ranking(scores: Scores, ci: np.ndarray, counts: np.ndarray, depth: int) -> np.ndarray:
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
