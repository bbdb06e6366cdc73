"""The submit-job operator at its edges: several outputs, a deadline between two polls.

Both waiting modes run: in the worker, and deferred (the trigger rebuilt from its serialised
form, run to its event, a fresh operator resumed with it). Side effects are counted on the
cluster (its job list) and in the bucket (the objects the job wrote).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
from airflow.sdk import Context
from airflow.sdk.module_loading import import_string
from minio import Minio

from airflow_provider_oscar.compat import AirflowException, AirflowFailException, TaskDeferred
from airflow_provider_oscar.local.faults import StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.invoke import OscarSubmitJobOperator

MODES = [pytest.param(False, id="waiting"), pytest.param(True, id="deferrable")]
# Three outputs named after the input; the .json one holds the model's answer and sorts last.
THREE_OUTPUTS = """#!/bin/sh
base=$(basename "$INPUT_FILE_PATH" .json)
printf 'notes about the leaf\\n' > "$TMP_OUTPUT_DIR/$base.a-notes.txt"
printf 'label,probability\\nRosa canina,0.8\\n' > "$TMP_OUTPUT_DIR/$base.csv"
printf '{"status": "ok", "labels": ["Rosa canina", "Rosa gallica"], "probabilities": [0.8, 0.2]}' \\
  > "$TMP_OUTPUT_DIR/$base.json"
"""


@pytest.fixture(autouse=True)
def _connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


def task_context() -> Context:
    ti = SimpleNamespace(
        dag_id="submit_edges",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="classify",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


def with_folders(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/out"}],
    }


async def run_to_result(make: Callable[[], OscarSubmitJobOperator]) -> dict[str, Any]:
    """Execute; when the operator defers, run its trigger and resume a fresh operator."""
    context = task_context()
    try:
        return make().execute(context)
    except TaskDeferred as deferred:
        classpath, kwargs = deferred.trigger.serialize()
        events = import_string(classpath)(**kwargs).run()
        event = await events.__anext__()
        await events.aclose()
        resume = getattr(make(), deferred.method_name)
        payload = json.loads(json.dumps(event.payload))
        return resume(context=context, event=payload, **json.loads(json.dumps(deferred.kwargs)))


def jobs_on_cluster(admin: httpx.Client, service: str) -> dict[str, Any]:
    return dict(admin.get(f"/system/logs/{service}").json()["jobs"])


@pytest.mark.parametrize("deferrable", MODES)
async def test_of_several_outputs_via_the_bucket_the_json_one_is_the_result(
    s3: Minio, deploy: Callable[..., dict], unique_name: Callable[[str], str], deferrable: bool
) -> None:
    name = deploy(THREE_OUTPUTS, log_level="CRITICAL", **with_folders(unique_name("outs")))["name"]
    result = await run_to_result(
        lambda: OscarSubmitJobOperator(
            task_id="classify",
            service_name=name,
            via="bucket",
            input_data={"leaf": "serrated"},
            poll_interval=0.1,
            timeout=30,
            deferrable=deferrable,
        )
    )
    keys = [o.object_name or "" for o in s3.list_objects(name, prefix="out/", recursive=True)]
    written = sorted(f"{name}/{key}" for key in keys if not key.endswith("/"))  # (the folder)
    assert sorted(result["outputs"]) == written  # every output, each named with the token
    assert [o.rsplit(".", 1)[1] for o in sorted(result["outputs"])] == ["txt", "csv", "json"]
    assert result["prediction"]["labels"] == ["Rosa canina", "Rosa gallica"]
    assert "text" not in result


@pytest.mark.parametrize("deferrable", MODES)
async def test_a_timeout_between_two_polls_ends_the_wait_at_the_timeout_and_deletes_the_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], deferrable: bool
) -> None:
    """poll_interval 30 s, timeout 0.7 s: the wait ends at the timeout, not at the next poll."""
    name = deploy("echo never\n")["name"]
    oscar.faults.add(StuckJobs(service=name, count=-1))
    started = time.monotonic()
    with pytest.raises(AirflowException, match="Pending") as failure:
        await run_to_result(
            lambda: OscarSubmitJobOperator(
                task_id="classify",
                service_name=name,
                input_data="x",
                poll_interval=30,
                timeout=0.7,
                deferrable=deferrable,
            )
        )
    elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 15, elapsed
    assert not isinstance(failure.value, AirflowFailException)  # a retry may try again
    assert jobs_on_cluster(admin, name) == {}
