"""Composite-AI results: the reports of ``OscarEnsembleOperator`` tasks, shaped for the page.

Reports are the tasks' ``return_value`` XComs, read from the metadata DB by the API server (as
its own XCom endpoints do). Ensemble tasks are found by their operator's class name in the task
instance table, so every DAG that ran one is listed, whatever its shape. The shaping functions
(:func:`report_view`, :func:`run_summary`) are pure: they take a report dict and return what the
templates and the JSON API show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

#: Operator class names whose ``return_value`` is an ensemble report.
ENSEMBLE_OPERATORS = ("OscarEnsembleOperator",)
#: Operator class names whose ``return_value`` holds a person's reviews of a report's doubts.
REVIEW_OPERATORS = ("OscarEnsembleReviewOperator",)
#: Runs listed per DAG, and how many of the installation's newest runs are searched.
RECENT_RUNS = 8
RUN_WINDOW = 1000
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


# reading the metadata DB ------------------------------------------------------------------


def list_ensemble_runs(
    is_allowed: Callable[[str], bool] | None = None,
    *,
    runs_per_dag: int = RECENT_RUNS,
    window: int = RUN_WINDOW,
) -> list[dict[str, Any]]:
    """DAGs that ran an ensemble task, latest first, with their recent runs' summaries.

    Only the newest ``window`` DAG runs of the installation are searched (by primary key, so
    the query stays cheap on a large metadata DB). ``is_allowed(dag_id)`` filters the DAGs.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        recent = (
            select(DagRun.id, DagRun.dag_id, DagRun.run_id)
            .order_by(DagRun.id.desc())
            .limit(window)
            .subquery()
        )
        rows = session.execute(
            select(recent.c.id, recent.c.dag_id)
            .join(
                TaskInstance,
                (TaskInstance.dag_id == recent.c.dag_id) & (TaskInstance.run_id == recent.c.run_id),
            )
            .where(TaskInstance.operator.in_(ENSEMBLE_OPERATORS))
            .distinct()
        ).all()
        run_ids_of: dict[str, list[int]] = {}
        for run_pk, dag_id in sorted(rows, reverse=True):
            run_ids_of.setdefault(dag_id, []).append(run_pk)
        dags: list[dict[str, Any]] = []
        for dag_id, pks in run_ids_of.items():  # newest run first, so newest DAG first
            if is_allowed is not None and not is_allowed(dag_id):
                continue
            runs = session.scalars(
                select(DagRun).where(DagRun.id.in_(pks[:runs_per_dag])).order_by(DagRun.id.desc())
            ).all()
            run_rows = [_run_row(run) for run in runs]
            reports = _reports(session, dag_id, [r["run_id"] for r in run_rows])
            for row in run_rows:
                row["tasks"] = [
                    {
                        **{k: v for k, v in task.items() if k != "report"},
                        "summary": run_summary(task["report"]),
                    }
                    for task in reports.get(row["run_id"], [])
                ]
            dags.append({"dag_id": dag_id, "runs": run_rows})
    return dags


def run_reports(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """One run and its ensemble tasks with their full reports (``None``: no such run)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
        if run is None:
            return None
        row = _run_row(run)
        row["tasks"] = _reports(session, dag_id, [run_id]).get(run_id, [])
    return row


def _run_row(run: Any) -> dict[str, Any]:
    return {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "state": str(run.state) if run.state is not None else None,
        "run_type": str(getattr(run, "run_type", "") or ""),
        "run_after": _iso(getattr(run, "run_after", None)),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _reports(session: Any, dag_id: str, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``{run_id: [{task_id, map_index, state, report | None, error}]}`` of ensemble tasks."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    if not run_ids:
        return {}
    tis = session.execute(
        select(
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.start_date,
            TaskInstance.end_date,
        )
        .where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id.in_(run_ids),
            TaskInstance.operator.in_(ENSEMBLE_OPERATORS),
        )
        .order_by(TaskInstance.task_id, TaskInstance.map_index)
    ).all()
    xcoms = _return_values(session, dag_id, run_ids, {ti.task_id for ti in tis})
    values = {(x.run_id, x.task_id, x.map_index): x for x in xcoms}
    reviews = _reviews(session, dag_id, run_ids)
    found: dict[str, list[dict[str, Any]]] = {}
    for ti in tis:
        xcom = values.get((ti.run_id, ti.task_id, ti.map_index))
        report, error = None, None
        if xcom is not None:
            value = XComModel.deserialize_value(xcom)
            if _is_report(value):
                report = with_reviews(value, reviews.get(ti.run_id, []))
            else:
                error = "the result is not an ensemble report (a custom XCom backend?)"
        found.setdefault(ti.run_id, []).append(
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(ti.state) if ti.state is not None else None,
                "start_date": _iso(ti.start_date),
                "end_date": _iso(ti.end_date),
                "report": report,
                "error": error,
            }
        )
    return found


def _return_values(
    session: Any, dag_id: str, run_ids: Sequence[str], task_ids: set[str]
) -> list[Any]:
    """The ``return_value`` XCom rows of those tasks in those runs."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    return list(
        session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id.in_(run_ids),
                XComModel.key == "return_value",
                XComModel.task_id.in_(task_ids),
            )
        ).all()
    )


def _reviews(session: Any, dag_id: str, run_ids: Sequence[str]) -> dict[str, list[dict]]:
    """``{run_id: [review outcome, ...]}`` of the runs' review tasks that finished."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    tasks = session.execute(
        select(TaskInstance.run_id, TaskInstance.task_id).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id.in_(run_ids),
            TaskInstance.operator.in_(REVIEW_OPERATORS),
        )
    ).all()
    if not tasks:
        return {}
    found: dict[str, list[dict]] = {}
    for xcom in _return_values(session, dag_id, run_ids, {t.task_id for t in tasks}):
        value = XComModel.deserialize_value(xcom)
        if isinstance(value, Mapping) and isinstance(value.get("reviews"), Mapping):
            found.setdefault(xcom.run_id, []).append(dict(value))
    return found


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


def _is_report(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("inputs"), list)


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
    inputs = [_input_view(item, models, truth) for item in raw_inputs]
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


def _input_view(
    item: Mapping[str, Any], models: list[str], truth: Mapping[str, str]
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
