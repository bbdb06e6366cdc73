"""Worker processes for the kill drills: they submit, wait, and are killed (few imports, so
they start quickly)."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any


def _context(conn: str, run_id: str, task_id: str) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = conn
    ti = SimpleNamespace(
        dag_id="drills",
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        xcom_push=lambda **_: None,
    )
    return {"ti": ti}


def work(conn: str, name: str, run_id: str) -> None:
    """Submit the drill input and wait for it, until the process is killed."""
    context = _context(conn, run_id, "classify")
    from airflow_provider_oscar.operators.submit import OscarSubmitJobOperator

    OscarSubmitJobOperator(
        task_id="classify",
        service_name=name,
        input_data="drill input",
        decode="text",
        poll_interval=0.1,
        timeout=60.0,
    ).execute(context)


def work_batch(conn: str, name: str, run_id: str, inputs: list[str]) -> None:
    """Run an async batch of ``inputs`` in the worker, until the process is killed."""
    context = _context(conn, run_id, "batch")
    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

    OscarBatchInvokeOperator(
        task_id="batch",
        service_name=name,
        inputs=inputs,
        mode="async",
        decode="text",
        concurrency=16,
        poll_interval=0.1,
        progress_interval=0,
        deferrable=False,
    ).execute(context)
