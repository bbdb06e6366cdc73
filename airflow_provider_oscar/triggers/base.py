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
from typing import Any

from airflow.triggers.base import BaseTrigger

from airflow_provider_oscar import compat

__all__ = ["OscarTrigger"]


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

    async def _outcome(self, waiting: Any) -> dict[str, Any]:
        """Await the wait's payload, noting a cancellation for :meth:`cleanup`."""
        try:
            payload: dict[str, Any] = await waiting
        except asyncio.CancelledError:
            self._cancelled = True
            raise
        self._fired = True
        return payload

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
