"""How right the ensemble and its models are against known labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from airflow_provider_oscar.ensemble.base import EnsembleError, label_key


def accuracy(results: Iterable[Mapping[str, Any]], truth: Mapping[str, str]) -> dict[str, Any]:
    """Top-1 accuracy of the ensemble and of each model on the inputs whose true label is known.

    Labels compare normalised; a model that did not answer an input is wrong there. ``coverage``
    is the share of those inputs the ensemble did not abstain on, ``selective_accuracy`` its
    accuracy on them. Shares are ``None`` when there is nothing to count. The models' accuracy
    comes from the provenance: results aggregated with ``provenance=False`` give no ``models``.
    """
    known = {input_id: label_key(label) for input_id, label in truth.items()}
    scored = [r for r in results if r["input"] in known]
    confident = [r for r in scored if not r["abstained"]]
    models = list(dict.fromkeys(p["model"] for r in scored for p in r.get("provenance", ())))

    def right(result: Mapping[str, Any], label: str | None) -> bool:
        return label is not None and label_key(label) == known[result["input"]]

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


def evaluate(
    results: Iterable[Mapping[str, Any]],
    truth: Mapping[str, str],
    *,
    num_classes: int | None = None,
    bins: int = 10,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, log loss, Brier score, calibration error and abstention, with intervals.

    For the ensemble (its scores as probabilities; probability metrics are ``None`` for the
    rank and vote methods and ``max``) and for each model (its own list from the provenance, on
    the inputs it answered), over the inputs in ``truth``:

    * ``log_loss``: ``-log p(true label)``, ``p`` floored at ``1e-15``;
    * ``brier``: ``Σ_c (p_c - [c is true])²`` over all classes;
    * ``ece``: expected calibration error of the top label, ``bins`` equal-width bins of
      confidence, with each bin's ``reliability`` (count, mean confidence, accuracy);
    * ``coverage`` and ``selective_accuracy``: the share answered, and the accuracy there, under
      the results' abstain rule (a model abstains on its own margin and top score).

    A label no list names gets the unlisted score (the ensemble's ``unlisted_score``; for a model,
    its residual spread over ``num_classes - k`` classes, or 0 without ``num_classes``, which
    defaults to the results' own). Each metric is ``{"value", "low", "high"}``: the
    ``confidence`` percentile interval of ``bootstrap`` resamples of the inputs (``seed`` fixed).
    Raises :class:`EnsembleError` when a result does not list every label its models listed
    (aggregate with a larger ``top_k``).
    """
    known = {i: label_key(t) for i, t in truth.items()}
    scored = [r for r in results if r["input"] in known]
    method = scored[0]["method"] if scored else {}
    classes = num_classes if num_classes is not None else method.get("num_classes")
    rule = method.get("abstain") or {}
    probabilistic = method.get("combiner") in PROBABILITY_METHODS
    sample = _Resample(len(scored), bootstrap, seed, confidence, bins)
    ensemble = [_ensemble_view(r) for r in scored]
    report: dict[str, Any] = {
        "inputs": len(scored),
        "bins": bins,
        "bootstrap": bootstrap,
        "confidence": confidence,
        "ensemble": sample.metrics(
            ensemble,
            [known[r["input"]] for r in scored],
            classes,
            probabilistic,
            np.array([bool(r["abstained"]) for r in scored], bool),
        ),
    }
    models = list(dict.fromkeys(p["model"] for r in scored for p in r.get("provenance", ())))
    report["models"] = {}
    for model in models:
        views, truths = [], []
        for result in scored:
            own = next((p for p in result.get("provenance", ()) if p["model"] == model), None)
            if own and own["labels"]:
                views.append(_model_view(own, classes))
                truths.append(known[result["input"]])
        resample = _Resample(len(views), bootstrap, seed, confidence, bins)
        report["models"][model] = resample.metrics(
            views, truths, classes, True, _own_abstentions(views, rule)
        )
    return report


PROBABILITY_METHODS = ("soft_vote", "weighted_mean", "geometric_mean", "dawid_skene")
_LOG_FLOOR = 1e-15
_View = tuple[list[str], list[float], float]  # labels, scores, the score of any other label


def _ensemble_view(result: Mapping[str, Any]) -> _View:
    """Labels, scores, unlisted score and its class count offset (listed labels)."""
    labels = [label_key(x) for x in result["top_k"]["labels"]]
    listed = {label_key(x) for p in result.get("provenance", ()) for x in p["labels"]}
    complete = listed <= set(labels) if listed else len(labels) < result["method"]["top_k"]
    if not complete:
        raise EnsembleError(
            f"input {result['input']!r}: its top_k does not list every candidate label; "
            "aggregate with a larger top_k to evaluate"
        )
    return labels, list(result["top_k"]["scores"]), float(result.get("unlisted_score", 0.0))


def _model_view(own: Mapping[str, Any], classes: int | None) -> _View:
    labels, probs = [label_key(x) for x in own["labels"]], list(own["probabilities"])
    room = (classes - len(labels)) if classes else 0
    unlisted = (own.get("residual") or 0.0) / room if room > 0 else 0.0
    return labels, probs, unlisted


def _own_abstentions(views: list[_View], rule: Mapping[str, float]) -> np.ndarray:
    """Where a model on its own falls below the rule's margin or top score."""
    flags = []
    for _, scores, unlisted in views:
        ranked = [*sorted(scores, reverse=True), unlisted]
        flags.append(
            ranked[0] - ranked[1] < rule.get("min_margin", 0.0)
            or ranked[0] < rule.get("min_top_score", 0.0)
        )
    return np.array(flags, bool)


class _Resample:
    """Per-input terms of every metric, their bootstrap intervals, and the reliability bins."""

    def __init__(self, n: int, times: int, seed: int, confidence: float, bins: int) -> None:
        self.n, self.bins = n, bins
        self.tails = (50 * (1 - confidence), 50 * (1 + confidence))
        rng = np.random.default_rng(seed)
        self.draws = rng.integers(0, n, (times, n)) if n and times else np.zeros((0, n), int)

    def metrics(
        self,
        views: list[_View],
        truths: list[str],
        classes: int | None,
        probabilistic: bool,
        abstain: np.ndarray,
    ) -> dict[str, Any]:
        n = len(views)
        correct = np.zeros(n)
        p_true, top, sumsq = np.zeros(n), np.zeros(n), np.zeros(n)
        for i, ((labels, scores, unlisted), t) in enumerate(zip(views, truths, strict=True)):
            best = max(range(len(labels)), key=lambda j: scores[j])
            correct[i] = labels[best] == t
            top[i] = scores[best]
            p_true[i] = scores[labels.index(t)] if t in labels else unlisted
            rest = max((classes - len(labels)) if classes else 0, 0)
            sumsq[i] = sum(s * s for s in scores) + rest * unlisted * unlisted
        out: dict[str, Any] = {"inputs": n, "accuracy": self._interval(correct, np.mean)}
        answered = ~abstain
        out["coverage"] = self._interval(answered.astype(float), np.mean)
        out["selective_accuracy"] = self._ratio(correct * answered, answered.astype(float))
        if not probabilistic:
            out.update(log_loss=None, brier=None, ece=None, reliability=None)
            return out
        out["log_loss"] = self._interval(-np.log(np.maximum(p_true, _LOG_FLOOR)), np.mean)
        out["brier"] = self._interval(sumsq - 2 * p_true + 1, np.mean)
        where = np.minimum((np.clip(top, 0, 1) * self.bins).astype(int), self.bins - 1)
        out["ece"] = self._ece(where, top, correct)
        out["reliability"] = [
            {
                "bin": [b / self.bins, (b + 1) / self.bins],
                "count": int((where == b).sum()),
                "confidence": float(top[where == b].mean()) if (where == b).any() else None,
                "accuracy": float(correct[where == b].mean()) if (where == b).any() else None,
            }
            for b in range(self.bins)
        ]
        return out

    def _interval(self, terms: np.ndarray, reduce: Any) -> dict[str, float | None]:
        if not terms.size:
            return {"value": None, "low": None, "high": None}
        spread = reduce(terms[self.draws], axis=1) if self.draws.size else np.array([])
        return self._bounds(float(reduce(terms)), spread)

    def _ratio(self, hits: np.ndarray, counted: np.ndarray) -> dict[str, float | None]:
        if not counted.sum():
            return {"value": None, "low": None, "high": None}
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = hits[self.draws].sum(1) / counted[self.draws].sum(1)
        return self._bounds(float(hits.sum() / counted.sum()), spread[np.isfinite(spread)])

    def _ece(self, where: np.ndarray, top: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
        def ece(idx: np.ndarray) -> np.ndarray:
            rows = np.arange(idx.shape[0])[:, None] * self.bins + where[idx]
            size = idx.shape[0] * self.bins
            gap = np.bincount(rows.ravel(), (correct[idx] - top[idx]).ravel(), size)
            return np.abs(gap.reshape(-1, self.bins)).sum(1) / idx.shape[1]

        if not where.size:
            return {"value": None, "low": None, "high": None}
        spread = ece(self.draws) if self.draws.size else np.array([])
        return self._bounds(float(ece(np.arange(where.size)[None, :])[0]), spread)

    def _bounds(self, value: float, spread: np.ndarray) -> dict[str, float | None]:
        if not spread.size:
            return {"value": value, "low": None, "high": None}
        low, high = np.percentile(spread, self.tails)
        return {"value": value, "low": float(low), "high": float(high)}
