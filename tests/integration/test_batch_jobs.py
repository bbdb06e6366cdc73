"""What an asynchronous batch leaves on the cluster, and where its results go.

Side effects are counted where they happen: the jobs in the cluster's job list
(``GET /system/logs/<service>``), the ``POST /job`` requests the embedded OSCAR received, the
objects in the bucket.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context

from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

ECHO = 'cat "$INPUT_FILE_PATH"\n'
FAST = {"input_retry_delay": 0.05, "poll_interval": 0.1, "progress_interval": 0}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(autouse=True)
def _connection(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())


def task_context() -> Context:
    ti = SimpleNamespace(
        dag_id="batch",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="echo_all",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


def batch(service: str, inputs: list[str], **kwargs: Any) -> OscarBatchInvokeOperator:
    options = {**FAST, "mode": "async", "decode": "text", "concurrency": 4, **kwargs}
    return OscarBatchInvokeOperator(
        task_id="echo_all", service_name=service, inputs=inputs, **options
    )


def jobs_on_cluster(admin: httpx.Client, service: str) -> dict[str, Any]:
    return dict(admin.get(f"/system/logs/{service}").json()["jobs"])


def jobs_posted(oscar: OscarLocal, service: str) -> int:
    assert oscar.cluster is not None
    return request_counts(oscar.cluster)[f"POST /job/{service}"]


@pytest.mark.parametrize("delete_jobs", [True, False])
def test_delete_jobs_decides_whether_the_finished_jobs_stay_on_the_cluster(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], delete_jobs: bool
) -> None:
    service = deploy(ECHO, log_level="CRITICAL")["name"]
    inputs = [f"fern-{i}" for i in range(5)]
    result = batch(service, inputs, delete_jobs=delete_jobs).execute(task_context())
    assert [r["text"] for r in result["results"]] == inputs
    assert jobs_posted(oscar, service) == 5
    left = jobs_on_cluster(admin, service)
    if delete_jobs:
        assert left == {}
    else:
        assert sorted(left) == sorted(r["job"] for r in result["results"])
        assert {job["status"] for job in left.values()} == {"Succeeded"}


def test_a_job_past_job_timeout_is_deleted_from_the_cluster_and_not_run_again(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    slow = deploy("sleep 30\n")["name"]
    op = batch(slow, ["oak"], job_timeout=0.5, input_retries=2, on_failure="continue")
    result = op.execute(task_context())
    (record,) = result["results"]
    assert (result["succeeded"], result["failed"], result["failed_inputs"]) == (0, 1, ["0"])
    assert record["status"] == "error"
    assert re.search(r"was still (Pending|Running) after .*; it was deleted", record["error"])
    assert jobs_posted(oscar, slow) == 1  # a timed-out job is not retried
    assert jobs_on_cluster(admin, slow) == {}


def test_only_the_job_past_job_timeout_is_deleted_the_others_finish(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    script = 'if grep -q slow "$INPUT_FILE_PATH"; then sleep 30; fi\ncat "$INPUT_FILE_PATH"\n'
    service = deploy(script, log_level="CRITICAL")["name"]
    op = batch(service, ["quick-1", "slow", "quick-2"], job_timeout=3.0, on_failure="continue")
    result = op.execute(task_context())
    assert [r["status"] for r in result["results"]] == ["ok", "error", "ok"]
    assert [r.get("text") for r in result["results"]] == ["quick-1", None, "quick-2"]
    assert jobs_on_cluster(admin, service) == {}  # two deleted when done, one at its deadline


def test_a_batch_over_the_xcom_threshold_without_results_object_keeps_every_result_in_xcom(
    deploy: Callable[..., dict],
) -> None:
    """Without a place to write them, nothing is lost: XCom holds them all, with a warning."""
    service = deploy(ECHO, log_level="CRITICAL")["name"]
    inputs = [f"moss-{i}" for i in range(8)]
    op = batch(service, inputs, mode="sync", results_threshold=3)
    with structlog.testing.capture_logs() as logs:
        result = op.execute(task_context())
    assert "results_object" not in result
    assert [r["text"] for r in result["results"]] == inputs
    assert [r["index"] for r in result["results"]] == list(range(8))
    warnings = [str(e["event"]) for e in logs if e["log_level"] == "warning"]
    assert any("set results_object" in w for w in warnings), warnings


def _name(length: int) -> str:
    """A unique service name of exactly ``length`` characters."""
    tag = uuid.uuid4().hex[:8]
    return f"svc-{tag}-" + "x" * (length - 13)


@pytest.mark.parametrize(("length", "prefix"), [(24, 24), (25, 16), (26, 16)])
def test_job_names_keep_the_service_name_up_to_24_characters_and_cut_it_to_16_from_25(
    admin: httpx.Client, deploy: Callable[..., dict], length: int, prefix: int
) -> None:
    """pkg/handlers/job.go (MakeJobHandler): ``if len(service.Name) >= 25 { [:16] }``."""
    name = deploy(ECHO, name=_name(length), log_level="CRITICAL")["name"]
    assert len(name) == length
    result = batch(name, ["ivy"], delete_jobs=False).execute(task_context())
    (job,) = jobs_on_cluster(admin, name)
    assert job == result["results"][0]["job"]
    assert re.fullmatch(f"{re.escape(name[:prefix])}-{UUID}", job), job
