"""A plain-Python twin of ``airflow_provider_oscar.ensemble``: dicts, input by input.

Same semantics and result shape, written the straightforward way, so that the property tests can
check the vectorised code against it and the benchmark can measure the speed-up over it. It checks
the predictions as the real one does, but trusts its other arguments. ``aggregate_reference``
reads mappings, as ``aggregate`` does; ``aggregate_arrays_reference`` reads the same information as
``aggregate_arrays``, held as plain lists (``array.tolist()``), and normalises each vocabulary
entry once, as a reasonable pure-Python program would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from airflow_provider_oscar.ensemble import AbstainRule, EnsembleError

_TIE_BITS = 40

# One model's answer for one input: label key -> (probability, 1-based rank), in list order.
OwnList = dict[str, tuple[float, int]]


def aggregate_reference(
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
    """What ``aggregate`` returns for the same arguments, computed with dicts and loops."""
    if models is None:
        models = list(dict.fromkeys(m for row in predictions.values() for m in row))
    combiner = _Combiner(
        method, models, weights, top_k, missing, floor, rrf_k, num_classes, min_models, abstain
    )
    display = combiner.display
    results = []
    for input_id, row in predictions.items():
        lists: dict[str, OwnList] = {}
        residual: dict[str, float] = {}
        trail = []
        for model in models:
            status, labels, probs, message, source = _read(row.get(model))
            if provenance:
                trail.append(
                    {
                        "model": model,
                        "status": status,
                        "labels": list(labels),
                        "probabilities": [float(p) for p in probs],
                        "residual": None,
                        "message": message,
                        "source": source,
                    }
                )
            if status != "ok":
                continue
            if len(labels) != len(probs) or not labels:
                raise EnsembleError(f"input {input_id!r}, model {model!r}: bad lengths")
            own: OwnList = {}
            total = 0.0
            for rank, (label, p) in enumerate(zip(labels, probs, strict=True), start=1):
                p = float(p)
                if not 0 <= p <= 1 + 1e-6:
                    raise EnsembleError(f"input {input_id!r}, model {model!r}: bad probability")
                total += p
                shown = " ".join(label.split())
                key = shown.casefold()
                if key in own:
                    raise EnsembleError(f"input {input_id!r}, model {model!r}: listed twice")
                display.setdefault(key, shown)
                own[key] = (p, rank)
            if total > 1 + 1e-6:
                raise EnsembleError(f"input {input_id!r}, model {model!r}: sum > 1")
            lists[model] = own
            residual[model] = max(1.0 - total, 0.0)
            if provenance:
                trail[-1]["residual"] = residual[model]
        results.append(combiner.combine(input_id, lists, residual, trail if provenance else None))
    return results


def aggregate_arrays_reference(
    inputs: Sequence[str],
    models: Sequence[str],
    vocabulary: Sequence[str],
    labels: Sequence[Sequence[Sequence[int]]],
    probabilities: Sequence[Sequence[Sequence[float]]],
    *,
    answered: Sequence[Sequence[bool]] | None = None,
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
    """What ``aggregate_arrays`` returns, from the same information as nested lists: ``labels``
    and ``probabilities`` per input, per model, per list position; ``answered`` per input, per
    model."""
    combiner = _Combiner(
        method, models, weights, top_k, missing, floor, rrf_k, num_classes, min_models, abstain
    )
    display = combiner.display
    shown = [" ".join(word.split()) for word in vocabulary]
    keys = [word.casefold() for word in shown]
    if "" in keys:
        raise EnsembleError("labels must be non-empty strings")
    results = []
    for i, input_id in enumerate(inputs):
        lists: dict[str, OwnList] = {}
        residual: dict[str, float] = {}
        trail = []
        for m, model in enumerate(models):
            ok = answered is None or answered[i][m]
            own: OwnList = {}
            raw = []
            if ok:
                ids, probs = labels[i][m], probabilities[i][m]
                total = 0.0
                for rank, (j, p) in enumerate(zip(ids, probs, strict=True), start=1):
                    if j == -1:
                        if any(later != -1 for later in ids[rank:]):
                            raise EnsembleError(f"input {input_id!r}, model {model!r}: gap")
                        break
                    if not 0 <= j < len(vocabulary):
                        raise EnsembleError(f"input {input_id!r}, model {model!r}: bad label")
                    if not 0 <= p <= 1 + 1e-6:
                        raise EnsembleError(f"input {input_id!r}, model {model!r}: bad probability")
                    total += p
                    key = keys[j]
                    if key in own:
                        raise EnsembleError(f"input {input_id!r}, model {model!r}: listed twice")
                    display.setdefault(key, shown[j])
                    own[key] = (p, rank)
                    if provenance:
                        raw.append(vocabulary[j])
                if not own:
                    raise EnsembleError(f"input {input_id!r}, model {model!r}: no labels")
                if total > 1 + 1e-6:
                    raise EnsembleError(f"input {input_id!r}, model {model!r}: sum > 1")
                lists[model] = own
                residual[model] = max(1.0 - total, 0.0)
            if provenance:
                trail.append(
                    {
                        "model": model,
                        "status": "ok" if ok else "missing",
                        "labels": raw,
                        "probabilities": [p for p, _ in own.values()],
                        "residual": residual.get(model),
                        "message": None,
                        "source": None,
                    }
                )
        results.append(combiner.combine(input_id, lists, residual, trail if provenance else None))
    return results


class _Combiner:
    """The per-input consensus, shared by both readers."""

    def __init__(
        self,
        method: str,
        models: Sequence[str],
        weights: Mapping[str, float] | None,
        top_k: int,
        missing: str,
        floor: float,
        rrf_k: float,
        num_classes: int | None,
        min_models: int,
        abstain: AbstainRule | None,
    ) -> None:
        self.method, self.models, self.top_k, self.missing = method, models, top_k, missing
        self.floor, self.rrf_k, self.num_classes, self.min_models = (
            floor,
            rrf_k,
            num_classes,
            min_models,
        )
        self.rule = abstain if abstain is not None else AbstainRule()
        self.weight = {m: float(weights[m]) for m in models} if weights is not None else None
        self.description = {
            "combiner": method,
            "weights": self.weight,
            "missing": missing,
            "floor": floor if method == "geometric_mean" else None,
            "rrf_k": rrf_k if method == "rrf" else None,
            "num_classes": num_classes,
            "top_k": top_k,
            "min_models": min_models,
            "abstain": asdict(self.rule),
        }
        self.display: dict[str, str] = {}  # normalised label -> first form seen in the batch

    def combine(
        self,
        input_id: str,
        lists: dict[str, OwnList],
        residual: dict[str, float],
        provenance: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """The result for one input from the lists of the models that answered it."""
        method, num_classes, rule, display = self.method, self.num_classes, self.rule, self.display
        if len(lists) < self.min_models:
            raise EnsembleError(f"input {input_id!r}: too few models answered")
        w = {m: self.weight[m] if self.weight is not None else 1.0 for m in lists}
        total_weight = sum(w.values())
        fill = {
            m: residual[m] / (num_classes - len(own))
            if self.missing == "residual" and num_classes is not None and num_classes > len(own)
            else 0.0
            for m, own in lists.items()
        }

        def value(m: str, label: str) -> float:
            return lists[m][label][0] if label in lists[m] else fill[m]

        def soft(label: str) -> float:
            return sum(w[m] * value(m, label) for m in lists) / total_weight

        votes: dict[str, float] = {}
        for m, own in lists.items():
            top1 = next(iter(own))
            votes[top1] = votes.get(top1, 0.0) + w[m]
        candidates = list(dict.fromkeys(label for own in lists.values() for label in own))
        support = {c: sum(c in own for own in lists.values()) for c in candidates}
        score: dict[str, float] = {}
        tie: dict[str, float] = {c: 0.0 for c in candidates}
        unlisted = 0.0
        if method in ("soft_vote", "weighted_mean"):
            score = {c: soft(c) for c in candidates}
            unlisted = sum(w[m] * fill[m] for m in lists) / total_weight
        elif method == "geometric_mean":
            for c in candidates:
                logs = sum(w[m] * math.log(max(value(m, c), self.floor)) for m in lists)
                score[c] = math.exp(logs / total_weight)
            logs = sum(w[m] * math.log(max(fill[m], self.floor)) for m in lists)
            unlisted = math.exp(logs / total_weight)
        elif method == "max":
            score = {c: max(value(m, c) for m in lists) for c in candidates}
            unlisted = max(fill.values())
        elif method == "majority_vote":
            score = {c: votes.get(c, 0.0) / total_weight for c in candidates}
            tie = {c: soft(c) for c in candidates}
        elif method == "borda":
            for c in candidates:
                score[c] = sum(
                    w[m] * (len(own) - own[c][1] + 1) for m, own in lists.items() if c in own
                )
        else:
            for c in candidates:
                score[c] = sum(
                    w[m] / (self.rrf_k + own[c][1]) for m, own in lists.items() if c in own
                )

        ranking = sorted(
            candidates,
            key=lambda c: (-_tie_key(score[c]), -_tie_key(tie[c]), -support[c], c),
        )
        top = ranking[: self.top_k]
        winner = ranking[0]
        second = score[ranking[1]] if len(ranking) > 1 else unlisted
        margin = score[winner] - second
        share = votes.get(winner, 0.0) / total_weight
        rest = num_classes - len(candidates) if num_classes is not None else 0
        entropy = _entropy([score[c] for c in candidates], rest, unlisted)
        reasons = [
            name
            for below, name in (
                (margin < rule.min_margin, "margin"),
                (share < rule.min_vote_share, "vote_share"),
                (score[winner] < rule.min_top_score, "top_score"),
            )
            if below
        ]
        result = {
            "input": input_id,
            "winner": display[winner],
            "top_k": {
                "labels": [display[c] for c in top],
                "scores": [score[c] for c in top],
                "support": [support[c] for c in top],
            },
            "vote_share": share,
            "margin": margin,
            "entropy": entropy,
            "unlisted_score": unlisted,
            "abstained": bool(reasons),
            "abstain_reasons": reasons,
            "missing_models": [m for m in self.models if m not in lists],
        }
        if provenance is not None:
            result["provenance"] = provenance
        result["method"] = self.description
        return result


def _read(prediction: Any) -> tuple[str, list[Any], list[Any], str | None, Any]:
    if prediction is None:
        return "missing", [], [], None, None
    names = ("status", "labels", "probabilities", "message", "source")
    if isinstance(prediction, Mapping):
        fields = {k: prediction.get(k) for k in names}
    else:
        fields = {k: getattr(prediction, k, None) for k in names}
    status = "ok" if fields["status"] is None else str(fields["status"]).strip().casefold()
    if status != "ok":
        message = fields["message"]
        return status, [], [], None if message is None else str(message), fields["source"]
    labels, probs = list(fields["labels"] or []), list(fields["probabilities"] or [])
    return status, labels, probs, None, fields["source"]


def _tie_key(x: float) -> float:
    mantissa, exponent = math.frexp(x)
    return math.ldexp(round(math.ldexp(mantissa, _TIE_BITS)), exponent - _TIE_BITS)


def _entropy(scores: list[float], rest: int, unlisted: float) -> float:
    z = sum(scores) + rest * unlisted
    if z <= 0:
        return math.log(len(scores) + rest)
    h = -sum(s / z * math.log(s / z) for s in scores if s > 0)
    if unlisted > 0:
        h -= rest * (unlisted / z) * math.log(unlisted / z)
    return h


def differences(got: Any, expected: Any, tolerance: float = 1e-9, path: str = "") -> list[str]:
    """Where two results differ: numbers within ``tolerance``, everything else exactly."""
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return [] if abs(got - expected) <= tolerance else [f"{path}: {got!r} != {expected!r}"]
    if isinstance(expected, dict) and isinstance(got, dict):
        if got.keys() != expected.keys():
            return [f"{path}: keys {sorted(got)} != {sorted(expected)}"]
        return [
            d for k in expected for d in differences(got[k], expected[k], tolerance, f"{path}.{k}")
        ]
    if isinstance(expected, list) and isinstance(got, list) and len(got) == len(expected):
        pairs = zip(got, expected, strict=True)
        return [
            d
            for n, (g, e) in enumerate(pairs)
            for d in differences(g, e, tolerance, f"{path}[{n}]")
        ]
    return (
        []
        if got == expected and type(got) is type(expected)
        else [f"{path}: {got!r} != {expected!r}"]
    )
