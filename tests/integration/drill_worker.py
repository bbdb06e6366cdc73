"""A worker process for the kill drills: it submits, waits, and is killed (few imports, so it
starts quickly)."""

from __future__ import annotations

import os
from types import SimpleNamespace


def work(conn: str, name: str, run_id: str) -> None:
    """Submit the drill input and wait for it, until the process is killed."""
    os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = conn
    from airflow_provider_oscar.operators.submit import OscarSubmitJobOperator

    ti = SimpleNamespace(
        dag_id="drills",
        run_id=run_id,
        task_id="classify",
        map_index=-1,
        try_number=1,
        xcom_push=lambda **_: None,
    )
    OscarSubmitJobOperator(
        task_id="classify",
        service_name=name,
        input_data="drill input",
        decode="text",
        poll_interval=0.1,
        timeout=60.0,
    ).execute({"ti": ti})


def work_batch(conn: str, name: str, run_id: str, inputs: list[str]) -> None:
    """Run an async batch of ``inputs`` in the worker, until the process is killed."""
    os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = conn
    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

    ti = SimpleNamespace(
        dag_id="drills",
        run_id=run_id,
        task_id="batch",
        map_index=-1,
        try_number=1,
        xcom_push=lambda **_: None,
    )
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
    ).execute({"ti": ti})
