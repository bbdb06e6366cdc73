"""Deferrable waits on OSCAR: a job reaching an end state, a service becoming ready.

Triggers take JSON-plain arguments only and an absolute ``deadline`` (epoch seconds), so a
trigger rebuilt from :meth:`serialize` after a triggerer restart keeps its original time limit.
Each yields one event ``{"status": "success" | "failed" | "timeout" | "error", ...}`` and stops
(the job trigger also ``"missing"``, when the job's service no longer exists);
unexpected errors become ``"error"`` events with the reason instead of a bare trigger failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.triggers.coalesce import coalescer


class _OscarTrigger(BaseTrigger):
    """Shared plumbing: connection, poll interval, deadline, serialisation."""

    def __init__(self, *, oscar_conn_id: str, poll_interval: float, deadline: float | None) -> None:
        super().__init__()
        self.oscar_conn_id = oscar_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline

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

    async def _sleep(self) -> None:
        pause = self.poll_interval
        if self.deadline is not None:
            pause = max(0.0, min(pause, self.deadline - time.time()))
        await asyncio.sleep(pause)


class OscarJobTrigger(_OscarTrigger):
    """Wait until an OSCAR job ends ``Succeeded`` or ``Failed`` (or disappears).

    :param service_name: the job's service.
    :param job_name: the job (``<service>-<uuid>``).
    :param cancel_on_kill: delete the job when the task is killed while deferred (Airflow 3.3+).
    """

    def __init__(
        self,
        *,
        service_name: str,
        job_name: str,
        oscar_conn_id: str = OscarHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.service_name = service_name
        self.job_name = job_name
        self.cancel_on_kill = cancel_on_kill

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "service_name": self.service_name,
            "job_name": self.job_name,
            "cancel_on_kill": self.cancel_on_kill,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll through the process's coalescer: one job listing per interval and service,
        shared with every other trigger waiting on jobs of the same service and cluster."""
        try:
            payload = await self._wait()
        except OscarClientError as exc:
            if exc.status_code != 404:
                payload = self._error(exc)
            else:  # the service is gone, and its jobs with it: waiting again cannot help
                payload = {
                    "service": self.service_name,
                    "job": self.job_name,
                    "status": "missing",
                    "message": f"service {self.service_name!r} no longer exists: {exc}",
                }
        except Exception as exc:
            payload = self._error(exc)
        yield TriggerEvent(payload)

    def _error(self, exc: Exception) -> dict[str, Any]:
        return {
            "service": self.service_name,
            "job": self.job_name,
            "status": "error",
            "message": f"{type(exc).__name__}: {exc}",
        }

    async def _wait(self) -> dict[str, Any]:
        base = {"service": self.service_name, "job": self.job_name}
        settings = await OscarHook(self.oscar_conn_id).asettings()
        async with coalescer().watch(settings, self.service_name, self.poll_interval) as feed:
            while True:
                info = (await feed.next(deadline=self.deadline)).get(self.job_name)
                if info is None:
                    return {**base, "status": "error", "message": "the job disappeared"}
                if info.finished:
                    status = "success" if info.status == "Succeeded" else "failed"
                    return {**base, "status": status, "info": info.to_dict()}
                if self._expired():
                    return {
                        **base,
                        "status": "timeout",
                        "info": info.to_dict(),
                        "message": f"the job was still {info.status} at the deadline",
                    }
                self.log.debug("job %s is %s", self.job_name, info.status)

    async def on_kill(self) -> None:
        """Delete the remote job when the user kills the deferred task (Airflow 3.3+)."""
        if self.cancel_on_kill:
            await OscarHook(self.oscar_conn_id).adelete_job(self.service_name, self.job_name)


class OscarServiceReadyTrigger(_OscarTrigger):
    """Wait until a service's deployment reports ``ready`` (fails on ``failed``)."""

    def __init__(
        self,
        *,
        service_name: str,
        oscar_conn_id: str = OscarHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.service_name = service_name

    def _kwargs(self) -> dict[str, Any]:
        return {**super()._kwargs(), "service_name": self.service_name}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OscarHook(self.oscar_conn_id)
        base = {"service": self.service_name}
        try:
            while True:
                deployment = await hook.aget_readiness(self.service_name)
                state = deployment.get("state")
                if deployment.get("readiness") == "ready":
                    yield TriggerEvent({**base, "status": "success", "deployment": deployment})
                    return
                if state == "failed" or self._expired():
                    yield TriggerEvent(
                        {
                            **base,
                            "status": "failed" if state == "failed" else "timeout",
                            "deployment": deployment,
                            "message": f"deployment is {state}: {deployment.get('reason') or '-'}",
                        }
                    )
                    return
                await self._sleep()
        except Exception as exc:
            yield TriggerEvent(
                {**base, "status": "error", "message": f"{type(exc).__name__}: {exc}"}
            )
