"""One info line per OSCAR invocation in the task log: service, cluster, outcome, duration, top."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing

from airflow_provider_oscar.errors import OscarApiError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.faults import Drop, ErrorBurst
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_call_log_test"
ANSWER = {"status": "OK", "labels": ["setosa", "versicolor"], "probabilities": [0.25, 0.75]}
CLASSIFIER = f"#!/bin/sh\necho '{json.dumps(ANSWER)}'\n"


@pytest.fixture
def hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    connection = json.loads(oscar.connection_json())
    connection["extra"]["cluster_id"] = "call-log"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return OscarHook(CONN_ID)


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """The log events emitted meanwhile (hook logs go through Airflow's structlog)."""
    with structlog.testing.capture_logs() as events:
        yield events


def calls(events: list[dict[str, Any]]) -> list[str]:
    """The invocation lines, rendered as the task log shows them."""
    lines = [str(e["event"]) % tuple(e.get("positional_args") or ()) for e in events]
    return [line for line in lines if line.startswith("OSCAR call:")]


def test_a_run_logs_its_service_cluster_outcome_duration_and_top_prediction(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]], logged: list[dict[str, Any]]
) -> None:
    name = deploy(CLASSIFIER, log_level="CRITICAL")["name"]
    hook.run_service(name, {"sepal_length": 5.1})
    (line,) = calls(logged)
    assert line.startswith(f"OSCAR call: service {name} on cluster call-log, /run answered 200 in ")
    assert line.endswith("; top prediction versicolor (0.750)")
    seconds = float(line.split(" in ")[1].split(" s")[0])
    assert 0 < seconds < 60


def test_a_job_submission_logs_one_line_without_a_prediction(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]], logged: list[dict[str, Any]]
) -> None:
    name = deploy(CLASSIFIER, log_level="CRITICAL")["name"]
    hook.submit_job(name, "x", job_name=f"{name}-logged")
    (line,) = calls(logged)
    assert line.startswith(f"OSCAR call: service {name} on cluster call-log, /job answered 201")
    assert "prediction" not in line


def test_console_text_gets_no_prediction_and_an_error_answer_logs_its_status(
    hook: OscarHook,
    oscar: OscarLocal,
    deploy: Callable[..., dict[str, Any]],
    logged: list[dict[str, Any]],
) -> None:
    echo = deploy('#!/bin/sh\necho "just text"\n', log_level="CRITICAL")["name"]
    hook.run_service(echo, "x")
    oscar.faults.add(ErrorBurst(route=f"/run/{echo}", status=500, count=1))
    with pytest.raises(OscarApiError):
        hook.run_service(echo, "x")
    text, failed = calls(logged)
    assert text.endswith(" s") and f"service {echo} " in text and "/run answered 200" in text
    assert f"service {echo} " in failed and "/run answered 500 in " in failed


async def test_the_async_path_logs_the_same_line(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]], logged: list[dict[str, Any]]
) -> None:
    name = deploy(CLASSIFIER, log_level="CRITICAL")["name"]
    async with hook.asession() as session:
        await session.arun_service(name, "x")
    (line,) = calls(logged)
    assert f"service {name} on cluster call-log, /run answered 200" in line
    assert line.endswith("top prediction versicolor (0.750)")


def test_retries_are_one_call_and_a_dropped_answer_logs_the_failure(
    hook: OscarHook,
    oscar: OscarLocal,
    deploy: Callable[..., dict[str, Any]],
    logged: list[dict[str, Any]],
) -> None:
    name = deploy(CLASSIFIER, log_level="CRITICAL")["name"]
    hook.get_service_token(name)  # cached: only the calls below meet the faults
    oscar.faults.add(ErrorBurst(route=f"/run/{name}", status=503, count=1))
    hook.run_service(name, "x")
    oscar.faults.add(Drop(route=f"/run/{name}", count=1))
    with pytest.raises(OscarApiError):
        hook.run_service(name, "x")
    retried, dropped = calls(logged)
    assert "/run answered 200 in " in retried
    assert retried.endswith(" s after 2 attempts; top prediction versicolor (0.750)")
    assert f"service {name} on cluster call-log, /run failed (RemoteProtocolError" in dropped
