"""Composite-AI results: the reports of ``OscarEnsembleOperator`` tasks, shaped for the page.

The shaping functions (:func:`report_view`, :func:`run_summary`, :func:`with_reviews`) are pure:
they take a report dict (read by :mod:`~airflow_provider_oscar.plugins.runs`) and return what
the templates and the JSON API show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_oscar.pictures import Thumbnail, thumbnail

#: Labels get these colours in order (Okabe-Ito: distinguishable with colour-vision deficiency);
#: every coloured mark also carries its label as text.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
SHOW = ("all", "disagreements", "abstained", "wrong")
#: Pictures larger than this are not read to find a thumbnail.
MAX_PICTURE_BYTES = 32 << 20


def with_reviews(report: Mapping[str, Any], outcomes: Iterable[Mapping[str, Any]]) -> dict:
    """The report with a person's reviews: a ``review`` on each input reviewed, and ``reviews``
    (a review task's outcome applies to the report it names, or to any report with its inputs)."""
    report = dict(report)
    names = {str(i.get("input")) for i in report.get("inputs") or () if isinstance(i, Mapping)}
    for outcome in outcomes:
        target = outcome.get("report_object")
        if target and target != report.get("report_object"):
            continue
        if not set(outcome["reviews"]) <= names:
            continue
        report["reviews"] = dict(outcome)
        report["inputs"] = [
            {**item, "review": outcome["reviews"][item["input"]]}
            if isinstance(item, Mapping) and item.get("input") in outcome["reviews"]
            else item
            for item in report.get("inputs") or ()
        ]
    return report


# shaping ----------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _combiner(report: Mapping[str, Any]) -> str | None:
    method = report.get("method")
    name = method.get("combiner") if isinstance(method, Mapping) else method
    fit = (report.get("calibration") or {}).get("fit") or {}
    if name and fit:
        return f"{name}, calibrated ({str(fit.get('pool', 'linear')).replace('_', '-')} pool)"
    return str(name) if name else None


def run_summary(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The headline numbers of one report (for the runs list)."""
    if not report:
        return None
    inputs = [i for i in report.get("inputs") or [] if isinstance(i, Mapping)]
    accuracy = report.get("accuracy") if isinstance(report.get("accuracy"), Mapping) else None
    unanimous = sum(1 for item in inputs if _top1s(item) and len(set(_top1s(item))) == 1)
    return {
        "method": _combiner(report),
        "models": list(report.get("models") or []),
        "inputs": len(inputs),
        "abstained": sum(1 for item in inputs if item.get("abstained")),
        "reviewed": sum(1 for item in inputs if _reviewed(item)),
        "incomplete": sum(1 for item in inputs if item.get("missing_models")),
        "unanimous": unanimous,
        "winners": dict(Counter(str(item.get("winner")) for item in inputs).most_common()),
        "accuracy": _float(accuracy.get("ensemble")) if accuracy else None,
        "model_accuracy": {
            str(m): _float(v) for m, v in ((accuracy or {}).get("models") or {}).items()
        },
    }


def _reviewed(item: Mapping[str, Any]) -> bool:
    review = item.get("review")
    return isinstance(review, Mapping) and review.get("status") == "reviewed"


def _top1s(item: Mapping[str, Any]) -> list[str]:
    return [
        str(p["labels"][0])
        for p in item.get("provenance") or []
        if isinstance(p, Mapping) and p.get("labels")
    ]


def colours(labels: Iterable[str]) -> dict[str, str]:
    """A stable colour per label, in order of first appearance."""
    result: dict[str, str] = {}
    for label in labels:
        if label not in result:
            result[label] = PALETTE[len(result) % len(PALETTE)]
    return result


def short_labels(labels: Iterable[str]) -> dict[str, str]:
    """Labels without the first word they all share (``Iris setosa`` → ``setosa``)."""
    labels = list(dict.fromkeys(labels))
    firsts = {label.split(" ", 1)[0] for label in labels}
    if len(labels) > 1 and len(firsts) == 1 and all(" " in label for label in labels):
        return {label: label.split(" ", 1)[1] for label in labels}
    return {label: label for label in labels}


def report_view(report: Mapping[str, Any], *, show: str = "all") -> dict[str, Any]:
    """Everything the results page draws for one report.

    ``show`` picks the inputs: ``all``, ``disagreements`` (the models' top-1 labels differ),
    ``abstained`` or ``wrong`` (the consensus is not the known truth).
    """
    truth = {str(k): str(v) for k, v in (report.get("truth") or {}).items()}
    models = [str(m) for m in report.get("models") or []]
    raw_inputs = [i for i in report.get("inputs") or [] if isinstance(i, Mapping)]
    labels: list[str] = []
    for item in raw_inputs:
        labels.extend(str(label) for label in (item.get("top_k") or {}).get("labels") or [])
    labels.extend(truth.values())
    palette = colours(labels)
    pictures = report.get("pictures")
    pictures = pictures if isinstance(pictures, Mapping) else {}
    inputs = [_input_view(item, models, truth, pictures) for item in raw_inputs]
    agree = {m: 0 for m in models}
    answered = {m: 0 for m in models}
    for view in inputs:
        for cell in view["models"]:
            if cell["top1"] is not None:
                answered[cell["model"]] += 1
                agree[cell["model"]] += cell["agrees"]
    accuracy = report.get("accuracy") if isinstance(report.get("accuracy"), Mapping) else None
    selected = [view for view in inputs if _selected(view, show)]
    return {
        "method": _combiner(report),
        "method_details": report.get("method") if isinstance(report.get("method"), Mapping) else {},
        "models": models,
        "inputs": selected,
        "inputs_total": len(inputs),
        "show": show if show in SHOW else "all",
        "counts": {
            "all": len(inputs),
            "disagreements": sum(1 for v in inputs if not v["unanimous"]),
            "abstained": sum(1 for v in inputs if v["abstained"]),
            "wrong": sum(1 for v in inputs if v["correct"] is False),
        },
        "palette": palette,
        "short": short_labels(palette),
        "has_truth": bool(truth),
        "accuracy": _accuracy_view(accuracy, models, report) if accuracy else None,
        "agreement": {m: (agree[m] / answered[m] if answered[m] else None) for m in models},
        "answered": answered,
        "report_object": report.get("report_object"),
    }


def _selected(view: Mapping[str, Any], show: str) -> bool:
    if show == "disagreements":
        return not view["unanimous"]
    if show == "abstained":
        return bool(view["abstained"])
    if show == "wrong":
        return view["correct"] is False
    return True


def _accuracy_view(
    accuracy: Mapping[str, Any], models: list[str], report: Mapping[str, Any]
) -> dict[str, Any]:
    per_model = {str(m): _float(v) for m, v in (accuracy.get("models") or {}).items()}
    rows = [{"name": m, "value": per_model.get(m), "kind": "model"} for m in models]
    rows += [
        {"name": m, "value": v, "kind": "model"} for m, v in per_model.items() if m not in models
    ]
    known = [v for v in per_model.values() if v is not None]
    ensemble = _float(accuracy.get("ensemble"))
    return {
        "inputs": accuracy.get("inputs"),
        "ensemble": ensemble,
        "models": rows,
        "best_model": max(known) if known else None,
        "mean_model": sum(known) / len(known) if known else None,
        "coverage": _float(accuracy.get("coverage")),
        "selective_accuracy": _float(accuracy.get("selective_accuracy")),
        "weights": learned_weights(report),
        "pool": ((report.get("calibration") or {}).get("fit") or {}).get("pool"),
        "reliability": reliability(report),
    }


def learned_weights(report: Mapping[str, Any]) -> dict[str, float] | None:
    """Each model's weight from the report's calibration (or the method's given weights)."""
    fit = (report.get("calibration") or {}).get("fit") or {}
    if isinstance(fit.get("models"), Mapping):
        return {str(m): _float(v.get("weight")) or 0.0 for m, v in fit["models"].items()}
    method = report.get("method")
    given = method.get("weights") if isinstance(method, Mapping) else None
    return {str(m): _float(w) or 0.0 for m, w in given.items()} if given else None


def reliability(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A reliability diagram per model and for the ensemble: the non-empty bins' confidence,
    accuracy and count, with the calibration error."""
    evaluation = report.get("evaluation")
    if not isinstance(evaluation, Mapping):
        return []
    parts = [(str(m), v) for m, v in (evaluation.get("models") or {}).items()]
    parts.append(("ensemble", evaluation.get("ensemble") or {}))
    diagrams = []
    for name, metrics in parts:
        bins = [
            {
                "confidence": _float(b.get("confidence")),
                "accuracy": _float(b.get("accuracy")),
                "count": int(b.get("count") or 0),
            }
            for b in (metrics or {}).get("reliability") or ()
            if isinstance(b, Mapping) and b.get("count")
        ]
        if bins:
            ece = (metrics.get("ece") or {}).get("value")
            diagrams.append({"name": name, "bins": bins, "ece": _float(ece), "kind": "model"})
    if diagrams and diagrams[-1]["name"] == "ensemble":
        diagrams[-1]["kind"] = "ensemble"
    return diagrams


def picture_source(report: Mapping[str, Any], name: str) -> tuple[str, str] | None:
    """``(connection id, bucket/key)`` of the picture of input ``name``, if the report has one."""
    pictures = report.get("pictures")
    entry = pictures.get(name) if isinstance(pictures, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    conn_id, source = entry.get("conn_id"), entry.get("object")
    if not isinstance(conn_id, str) or not isinstance(source, str):
        return None
    return conn_id, source


def read_thumbnail(conn_id: str, path: str) -> Thumbnail | None:
    """The thumbnail of the picture at ``path`` in the storage of connection ``conn_id``;
    ``None`` when it is missing, over :data:`MAX_PICTURE_BYTES`, or yields none."""
    from airflow_provider_oscar.hooks.storage import OscarStorageHook

    storage = OscarStorageHook(conn_id)
    info = storage.stat(path)
    if info is None or (info.size or 0) > MAX_PICTURE_BYTES:
        return None
    return thumbnail(storage.download_bytes(path))


def _input_view(
    item: Mapping[str, Any],
    models: list[str],
    truth: Mapping[str, str],
    pictures: Mapping[str, Any],
) -> dict[str, Any]:
    name = str(item.get("input"))
    winner = None if item.get("winner") is None else str(item.get("winner"))
    top_k = item.get("top_k") or {}
    review = item.get("review") if isinstance(item.get("review"), Mapping) else None
    reviewed = review.get("label") if review and review.get("status") == "reviewed" else None
    consensus = [
        {
            "label": str(label),
            "score": _float(score),
            "support": support,
            "is_reviewed": reviewed is not None and str(label) == reviewed,
        }
        for label, score, support in zip(
            top_k.get("labels") or [],
            top_k.get("scores") or [],
            list(top_k.get("support") or []) + [None] * len(top_k.get("labels") or []),
            strict=False,
        )
    ]
    known = truth.get(name)
    by_model = {
        str(p.get("model")): p for p in item.get("provenance") or [] if isinstance(p, Mapping)
    }
    cells = []
    for model in models or list(by_model):
        p = by_model.get(model) or {}
        labels = [str(label) for label in p.get("labels") or []]
        probabilities = [_float(x) for x in p.get("probabilities") or []]
        bars = [
            {
                "label": label,
                "p": probabilities[i] if i < len(probabilities) else None,
                "is_winner": label == winner,
                "is_truth": label == known,
            }
            for i, label in enumerate(labels)
        ]
        top1 = labels[0] if labels else None
        cells.append(
            {
                "model": model,
                "status": p.get("status") or ("missing" if not p else None),
                "message": p.get("message"),
                "top1": top1,
                "top1_p": bars[0]["p"] if bars else None,
                "agrees": top1 is not None and top1 == winner,
                "bars": bars,
            }
        )
    top1s = [c["top1"] for c in cells if c["top1"] is not None]
    return {
        "input": name,
        "picture": name in pictures,
        "winner": winner,
        "score": consensus[0]["score"] if consensus else None,
        "top_k": consensus,
        "vote_share": _float(item.get("vote_share")),
        "margin": _float(item.get("margin")),
        "entropy": _float(item.get("entropy")),
        "abstained": bool(item.get("abstained")),
        "abstain_reasons": list(item.get("abstain_reasons") or []),
        "review": dict(review) if review else None,
        "missing_models": [str(m) for m in item.get("missing_models") or []],
        "truth": known,
        "correct": None if known is None or winner is None else winner == known,
        "unanimous": len(set(top1s)) <= 1 and len(top1s) == len(cells),
        "agreeing": sum(1 for c in cells if c["agrees"]),
        "models": cells,
    }
