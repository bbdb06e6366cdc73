"""The asyncio fan-out engine alone: concurrency bound, per-input retries, stopping, progress."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from airflow_provider_oscar.errors import OscarApiError, OscarModelError
from airflow_provider_oscar.fanout import (
    AttemptError,
    Item,
    Outcome,
    Progress,
    fan_out,
    format_duration,
)


def items(n: int) -> list[Item]:
    return [Item(i, f"in-{i}") for i in range(n)]


async def test_no_more_than_concurrency_inputs_are_ever_in_flight() -> None:
    running = peak = 0

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return {"value": item.index}

    summary = await fan_out(items(40), attempt, concurrency=4)
    assert summary.total == summary.succeeded == 40
    assert peak == 4


async def test_every_result_carries_its_input_status_and_seconds() -> None:
    seen: list[Outcome] = []

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        return {"cluster": "c1", "value": item.index * 2}

    await fan_out(items(3), attempt, concurrency=2, on_outcome=seen.append)
    records = sorted((o.record for o in seen), key=lambda r: r["index"])
    assert [r["value"] for r in records] == [0, 2, 4]
    assert set(records[0]) == {"index", "input", "status", "cluster", "value", "seconds"}
    assert records[1]["input"] == "in-1" and records[1]["status"] == "ok"


async def test_a_transient_failure_is_retried_and_the_attempts_are_recorded() -> None:
    calls: dict[int, int] = {}
    seen: list[Outcome] = []

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        calls[item.index] = number
        if item.index == 1 and number < 3:
            raise AttemptError(OscarApiError("HTTP 503"), "c1")
        return {}

    summary = await fan_out(
        items(3), attempt, concurrency=3, retries=2, retry_delay=0.001, on_outcome=seen.append
    )
    assert summary.failed == 0
    assert calls[1] == 3
    retried = next(o for o in seen if o.item.index == 1)
    assert retried.record["attempts"] == 3


async def test_a_permanent_failure_is_not_retried() -> None:
    calls = 0
    seen: list[Outcome] = []

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise AttemptError(OscarModelError("not a plant"), "c2")

    summary = await fan_out(items(1), attempt, concurrency=1, retries=5, on_outcome=seen.append)
    assert calls == 1 and summary.failed == 1
    assert seen[0].record["cluster"] == "c2"
    assert seen[0].record["status"] == "error"
    assert "not a plant" in seen[0].record["error"]


async def test_retries_run_out_and_the_input_is_reported_failed() -> None:
    async def attempt(item: Item, number: int) -> dict[str, Any]:
        raise OscarApiError("HTTP 500")

    summary = await fan_out(items(2), attempt, concurrency=2, retries=1, retry_delay=0.001)
    assert summary.failed == 2
    assert summary.first_failure is not None and summary.first_failure.attempts == 2


async def test_stop_on_failure_starts_no_new_input_and_cancels_those_in_flight() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        started.append(item.index)
        if item.index == 0:
            raise OscarModelError("bad")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item.index)
            raise
        return {}

    summary = await asyncio.wait_for(
        fan_out(items(100), attempt, concurrency=3, stop_on_failure=True), 5
    )
    assert summary.stopped and summary.failed == 1
    assert len(started) <= 4  # the failure, the two in flight, at most one more pulled
    assert sorted(cancelled) == sorted(started[1:])


async def test_progress_is_reported_at_a_steady_rate_while_the_fan_out_runs() -> None:
    lines: list[str] = []

    async def attempt(item: Item, number: int) -> dict[str, Any]:
        await asyncio.sleep(0.04)
        if item.index == 3:
            raise OscarModelError("bad")
        return {}

    progress = Progress(12, lines.append, interval=0.05, label="svc")
    await fan_out(items(12), attempt, concurrency=2, progress=progress)  # >= 0.24 s
    assert len(lines) >= 2
    assert all(
        re.fullmatch(
            r"svc: \d+/12 done, [01] failed, [\d.]+ inputs/s, \d+ s elapsed, (ETA .+|done)",
            line,
        )
        for line in lines
    )
    assert progress.line().startswith("svc: 12/12 done, 1 failed")
    assert progress.line().endswith("done")


def test_durations_read_naturally() -> None:
    assert format_duration(42.2) == "42 s"
    assert format_duration(185) == "3 min 5 s"
    assert format_duration(7620) == "2 h 7 min"


async def test_a_concurrency_below_one_is_refused() -> None:
    async def attempt(item: Item, number: int) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="concurrency"):
        await fan_out(items(1), attempt, concurrency=0)
