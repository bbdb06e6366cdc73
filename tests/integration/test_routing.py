"""Multi-cluster routing of the batch operator, over several embedded OSCARs.

``oscar`` (the session's, 4+ CPUs) and ``big`` (16 CPUs) share one S3 store; each test deploys
the same service on the clusters it uses, and connections ``oscar_a``/``oscar_b`` point at them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context

from airflow_provider_oscar.local.faults import ErrorBurst
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

SCRIPT = """#!/bin/sh
sleep "${DELAY:-0}"
label=$(head -c 60 "$INPUT_FILE_PATH" | tr -dc 'a-z0-9-')
printf '{"status": "ok", "labels": ["%s"], "probabilities": [0.9]}\\n' "$label"
"""


def connection(server: OscarLocal) -> str:
    """A connection that gives up on a request quickly (failover is the better retry)."""
    data = json.loads(server.connection_json())
    data["extra"].update(retries=1, backoff=0.05, timeout=5)
    return json.dumps(data)


@pytest.fixture(scope="module")
def big(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """A 16-CPU OSCAR sharing the session's S3 store."""
    with OscarLocal(settings=Settings(total_cpu=16.0), s3=oscar.s3) as server:
        yield server


@pytest.fixture
def service(
    oscar: OscarLocal, big: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Deploy one service, under one name, on the given clusters; returns the name."""
    name = f"route-{uuid.uuid4().hex[:8]}"
    deployed: list[OscarLocal] = []
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_A", connection(oscar))
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_B", connection(big))
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", connection(oscar))

    def _deploy(*servers: OscarLocal, delay: float = 0.0) -> str:
        body = {
            "name": name,
            "image": "x",
            "script": SCRIPT,
            "cpu": "0.25",
            "log_level": "CRITICAL",
            "environment": {"variables": {"DELAY": str(delay)}},
        }
        for server in servers:
            with admin(server) as client:
                client.post("/system/services", json=body).raise_for_status()
            deployed.append(server)
        return name

    yield _deploy
    for server in deployed:
        with admin(server) as client:
            client.delete(f"/system/services/{name}")


def admin(server: OscarLocal) -> httpx.Client:
    return httpx.Client(base_url=server.endpoint, auth=(server.user, server.password))


def task_context() -> Context:
    ti = SimpleNamespace(
        dag_id="routing",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="spread",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


def batch(service: str, conn_ids: list[str], **kwargs: Any) -> OscarBatchInvokeOperator:
    options: dict[str, Any] = {
        "inputs": [f"seed-{i}" for i in range(8)],
        "concurrency": 2,
        "input_retry_delay": 0.05,
        "progress_interval": 0,
        **kwargs,
    }
    return OscarBatchInvokeOperator(
        task_id="spread", service_name=service, oscar_conn_ids=conn_ids, **options
    )


def served_by(result: dict[str, Any]) -> list[str]:
    return [r["cluster"] for r in result["results"]]


def test_round_robin_spreads_the_inputs_evenly_and_records_each_serving_cluster(
    oscar: OscarLocal, big: OscarLocal, service: Callable[..., str]
) -> None:
    name = service(oscar, big)
    result = batch(name, ["oscar_a", "oscar_b"], routing="round_robin").execute(task_context())
    assert result["succeeded"] == 8
    assert served_by(result) == [oscar.endpoint, big.endpoint] * 4
    assert result["clusters"] == {oscar.endpoint: 4, big.endpoint: 4}
    assert [r["prediction"]["labels"][0] for r in result["results"]] == [
        f"seed-{i}" for i in range(8)
    ]


def test_least_loaded_sends_the_inputs_to_the_cluster_with_more_free_cpu(
    oscar: OscarLocal, big: OscarLocal, service: Callable[..., str]
) -> None:
    name = service(oscar, big)
    result = batch(name, ["oscar_a", "oscar_b"], routing="least_loaded").execute(task_context())
    assert set(served_by(result)) == {big.endpoint}  # 16 CPUs beat 4, though listed second


def test_failover_skips_a_stopped_cluster_and_its_inputs_are_served_by_the_next(
    oscar: OscarLocal, service: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = service(oscar)
    with OscarLocal(s3=oscar.s3) as gone:
        monkeypatch.setenv("AIRFLOW_CONN_OSCAR_GONE", connection(gone))
    op = batch(name, ["oscar_gone", "oscar_a"], routing="failover", cooldown=60)
    with structlog.testing.capture_logs() as logs:
        result = op.execute(task_context())
    assert result["succeeded"] == 8
    assert set(served_by(result)) == {oscar.endpoint}
    assert result["clusters"] == {gone.endpoint: 0, oscar.endpoint: 8}
    assert not [r for r in result["results"] if r.get("attempts")]  # skipped from the start
    assert any(f"{gone.endpoint} is unavailable" in str(e["event"]) for e in logs)


def test_a_cluster_is_used_again_once_its_cool_down_has_passed(
    oscar: OscarLocal, big: OscarLocal, service: Callable[..., str]
) -> None:
    name = service(oscar, big, delay=0.1)
    # the primary's first request fails (503, retried once, 503 again): a cluster failure
    oscar.faults.add(ErrorBurst(route=f"/run/{name}", status=503, count=2))
    op = batch(
        name,
        ["oscar_a", "oscar_b"],
        routing="failover",
        cooldown=0.5,
        concurrency=1,
        inputs=[f"seed-{i}" for i in range(14)],
    )
    result = op.execute(task_context())
    clusters = served_by(result)
    assert result["succeeded"] == 14
    assert clusters[0] == big.endpoint  # retried on the backup while the primary cools down
    assert clusters[-1] == oscar.endpoint  # back on the primary after the cool-down
    assert result["results"][0]["attempts"] == 2
