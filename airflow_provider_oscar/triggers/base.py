"""What the OSCAR triggers share: JSON-plain kwargs, an absolute deadline, and cancellation.

**Cancellation.** A trigger that owns remote work (a job, a pending input object) gives it up
when the user kills the deferred task (mark failed, mark success, clear), and never when the
triggerer merely stops (a restart, a redistribution, a rolling deploy):

* Airflow 3.3 and later call :meth:`on_kill` for user actions only (``TriggerRunner
  .run_trigger`` in ``airflow/jobs/triggerer_job_runner.py``), so that is where the work is
  cancelled;
* before 3.3 both look alike to the trigger (its task is cancelled, then :meth:`cleanup` runs),
  so :meth:`cleanup` asks the task instance's state first and cancels only when it is no longer
  ``deferred`` (a restart leaves it deferred), as the Google and Amazon providers'
  ``safe_to_cancel`` do.

A trigger that already fired its event cancels nothing.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oscar import compat
from airflow_provider_oscar.patience import Patience

__all__ = ["DeadlinePassed", "OscarTrigger"]

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The deadline came while OSCAR could not be asked (the cause says why)."""


class OscarTrigger(BaseTrigger):
    """Connection, poll interval, deadline (epoch seconds), serialisation and cancellation."""

    def __init__(self, *, oscar_conn_id: str, poll_interval: float, deadline: float | None) -> None:
        super().__init__()
        self.oscar_conn_id = oscar_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self._fired = False
        self._cancelled = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}", self._kwargs()

    def _kwargs(self) -> dict[str, Any]:
        return {
            "oscar_conn_id": self.oscar_conn_id,
            "poll_interval": self.poll_interval,
            "deadline": self.deadline,
        }

    def _expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    async def _sleep(self, pause: float | None = None) -> None:
        pause = self.poll_interval if pause is None else pause
        if self.deadline is not None:
            pause = max(0.0, min(pause, self.deadline - time.time()))
        await asyncio.sleep(pause)

    # the wait ---------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """One event: the payload of :meth:`_wait` (errors become ``"error"`` events)."""
        try:
            payload = await self._guarded(self._base())
        except asyncio.CancelledError:
            self._cancelled = True  # for cleanup(): a kill, or the triggerer stopping
            raise
        self._fired = True
        yield TriggerEvent(payload)

    def _base(self) -> dict[str, Any]:
        """What every event of this trigger carries (what it waits for)."""
        return {}

    @abstractmethod
    async def _wait(self, base: dict[str, Any]) -> dict[str, Any]:
        """Wait; the event's payload."""

    async def _guarded(self, base: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._wait(base)
        except DeadlinePassed as passed:
            return {**base, "status": "timeout", "message": f"{passed} at the deadline"}
        except Exception as exc:
            return self._error(base, exc)

    def _error(self, base: dict[str, Any], exc: Exception) -> dict[str, Any]:
        return {**base, "status": "error", "message": f"{type(exc).__name__}: {exc}"}

    async def _ask(self, ask: Callable[[], Awaitable[T]], patience: Patience) -> T:
        """``await ask()`` until it works: failures that heal are logged and asked again after
        a growing pause; others raise; past the deadline :class:`DeadlinePassed`."""
        while True:
            try:
                value = await ask()
            except Exception as exc:
                pause = patience.failed(exc)  # re-raises what cannot heal
                if self._expired():
                    raise DeadlinePassed(f"OSCAR could not be asked ({exc})") from exc
                await self._sleep(pause)
                continue
            patience.succeeded()
            return value

    # cancellation ---------------------------------------------------------------------------

    async def cancel_remote(self) -> None:
        """Give up the remote work this trigger waits on (nothing, unless overridden)."""

    async def on_kill(self) -> None:
        """The user killed the deferred task (Airflow 3.3+): give up the remote work."""
        if not self._fired:
            await self._cancel("the task was killed while deferred")

    async def cleanup(self) -> None:
        """Before 3.3: cancel when the run was cancelled by a user action, not a restart."""
        if compat.AIRFLOW_V_3_3_PLUS or not self._cancelled or self._fired:
            return
        if await self.safe_to_cancel():
            await self._cancel("the task is no longer deferred")

    async def safe_to_cancel(self) -> bool:
        """Whether the task left ``deferred`` (a kill), rather than the triggerer stopping."""
        state = await compat.task_state(self.task_instance)
        return state is not None and state != "deferred"

    async def _cancel(self, why: str) -> None:
        try:
            await self.cancel_remote()
        except Exception as exc:  # a failed cancellation must not hide the kill
            self.log.warning("could not cancel the remote work (%s): %s", why, exc)
