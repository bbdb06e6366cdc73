"""Small helpers the test modules share: polling with a deadline, processes, deferrals."""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oscar.local.faults import DeploymentFault
from airflow_provider_oscar.local.server import OscarLocal


def unavailable(what: str, reason: str, how: str) -> None:
    """Fail in CI, skip elsewhere: CI must never pass without running ``what``.

    ``how`` says what installs the missing piece (e.g. "run `make test` as root").
    """
    message = f"{what} cannot run: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (in CI this is a failure: {how})")
    pytest.skip(message)


def wait_until(probe: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


def stays(probe: Callable[[], Any], seconds: float) -> None:
    """Assert ``probe`` holds for ``seconds`` (for things that must NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe()
        time.sleep(0.05)


def wait_for_pid(path: Path) -> int:
    """The pid a script wrote into ``path``, once it is there."""
    return int(wait_until(lambda: path.exists() and path.read_text().strip()))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def first_event(trigger: BaseTrigger) -> TriggerEvent:
    """Run a trigger until its first event, then close it."""
    events = trigger.run()
    try:
        return await events.__anext__()
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def resume(op: Any, ctx: dict[str, Any], deferred: Any) -> Any:
    """Run a deferral's trigger to its event and resume the operator with it."""
    event = await first_event(deferred.trigger)
    method = getattr(op, deferred.method_name)
    return method(context=ctx, event=event.payload, **(deferred.kwargs or {}))


CRASH_LOG = "exec /oscar/bin/fwatchdog: exec format error"


def fail_deployment(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the embedded OSCAR report ``name``'s deployment as failed (until the test ends),
    its crashing pod's log ending in :data:`CRASH_LOG`."""
    assert oscar.cluster is not None
    faults = oscar.cluster.faults
    failed = DeploymentFault(
        service=name, state="failed", reason="CrashLoopBackOff", logs=[CRASH_LOG]
    )
    monkeypatch.setattr(faults, "_faults", [*faults._faults, failed])


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour (8-bit RGB, no interlace), as a test's own picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def return_values(run: Any, task_id: str) -> list[Any]:
    """The ``return_value`` XComs of a task (each mapped instance's) in a ``dag.test()`` run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value"
        )
        return [XComModel.deserialize_value(x) for x in session.scalars(query).all()]
