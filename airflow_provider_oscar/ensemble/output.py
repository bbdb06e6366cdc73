"""The JSON-plain results: ranked top-k, margin, entropy, abstention, provenance."""

from __future__ import annotations

from typing import Any

import numpy as np

from airflow_provider_oscar.ensemble.base import AbstainRule
from airflow_provider_oscar.ensemble.parts import Part
from airflow_provider_oscar.ensemble.scoring import Scores, ranking


def build_results(
    part: Part,
    scores: Scores,
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
    places = ranking(scores, ci, counts, max(top_k, 2))
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
        scores.unlisted.tolist(),
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
            "unlisted_score": rest,
            "abstained": code > 0,
            "abstain_reasons": [*reasons[code]],
            "missing_models": [],
            "method": description,
        }
        for input_id, top_labels, top_score, top_support, share, gap, h, rest, code in columns
    ]
    if part.provenance:
        provenance = _provenance(part)
        for result, a in zip(results, range(0, n_inputs * n_models, n_models), strict=True):
            result["provenance"] = provenance[a : a + n_models]
    for s in np.flatnonzero(~part.present.ravel()).tolist():
        results[s // n_models]["missing_models"].append(part.models[s % n_models])
    return results


def _provenance(part: Part) -> list[dict[str, Any]]:
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
