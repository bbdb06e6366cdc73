"""Reading ensemble reports from the metadata DB, as the API server's own XCom endpoints do.

Reports are the ``return_value`` XComs of ``OscarEnsembleOperator`` tasks. Ensemble tasks are
found by their operator's class name in the task instance table, so every DAG that ran one is
listed, whatever its shape; a review task's outcome is attached to the report it reviewed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_provider_oscar.plugins.results import run_summary, with_reviews

#: Operator class names whose ``return_value`` is an ensemble report.
ENSEMBLE_OPERATORS = ("OscarEnsembleOperator",)
#: Operator class names whose ``return_value`` holds a person's reviews of a report's doubts.
REVIEW_OPERATORS = ("OscarEnsembleReviewOperator",)
#: Runs listed per DAG, and how many of the installation's newest runs are searched.
RECENT_RUNS = 8
RUN_WINDOW = 1000


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


def _is_report(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("inputs"), list)
