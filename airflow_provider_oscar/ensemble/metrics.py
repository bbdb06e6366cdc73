"""How right the ensemble and its models are against known labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_oscar.ensemble.base import label_key


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
