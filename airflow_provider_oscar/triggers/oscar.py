"""Deferrable waits on OSCAR: a job reaching an end state, a service becoming ready.

Triggers take JSON-plain arguments only and an absolute ``deadline`` (epoch seconds), so a
trigger rebuilt from :meth:`serialize` after a triggerer restart keeps its original time limit.
Each yields one event ``{"status": "success" | "failed" | "timeout" | "error", ...}`` and stops
(the job trigger also ``"missing"`` when the job's service no longer exists, and ``"gone"``
when the job was deleted). Polls that fail with something that heals (5xx, 429, connection
errors, a listing that failed) are logged and tried again with back-off until the deadline
(:mod:`~airflow_provider_oscar.patience`); only what cannot heal becomes an ``"error"`` event.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.hooks.oscar import OscarAsyncSession, OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.patience import Patience
from airflow_provider_oscar.triggers.base import OscarTrigger
from airflow_provider_oscar.triggers.coalesce import coalescer

__all__ = ["OscarJobTrigger", "OscarServiceReadyTrigger"]

#: Listings a job may be absent from before it counts as deleted.
ABSENT_LISTINGS = 3


class OscarJobTrigger(OscarTrigger):
    """Wait until an OSCAR job ends ``Succeeded`` or ``Failed`` (or disappears).

    :param service_name: the job's service.
    :param job_name: the job (``<service>-<uuid>``).
    :param cancel_on_kill: delete the job (and ``input_object``) when the user kills the task
        while it is deferred; never on a triggerer restart.
    :param live_logs: copy new lines of the job's log into the task log while it runs (one
        log read per poll at most); the event's ``log_lines`` says how many were copied.
    :param log_lines: lines of the log already copied (by an earlier deferral).
    :param input_object: ``bucket/key`` of the input an upload submitted, removed with the job
        on a kill so nothing starts it again.
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
        live_logs: bool = False,
        log_lines: int = 0,
        input_object: str | None = None,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.service_name = service_name
        self.job_name = job_name
        self.cancel_on_kill = cancel_on_kill
        self.live_logs = live_logs
        self.log_lines = int(log_lines)
        self.input_object = input_object

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "service_name": self.service_name,
            "job_name": self.job_name,
            "cancel_on_kill": self.cancel_on_kill,
            "live_logs": self.live_logs,
            "log_lines": self.log_lines,
            "input_object": self.input_object,
        }

    def _base(self) -> dict[str, Any]:
        return {"service": self.service_name, "job": self.job_name, "log_lines": self.log_lines}

    def _error(self, base: dict[str, Any], exc: Exception) -> dict[str, Any]:
        if isinstance(exc, OscarClientError) and exc.status_code == 404:
            return {  # the service is gone, and its jobs with it: waiting again cannot help
                **base,
                "status": "missing",
                "message": f"service {self.service_name!r} no longer exists: {exc}",
            }
        return super()._error(base, exc)

    async def _wait(self, base: dict[str, Any]) -> dict[str, Any]:
        """Poll through the process's coalescer: one job listing per interval and service,
        shared with every other trigger waiting on jobs of the same service and cluster."""
        hook = OscarHook(self.oscar_conn_id)
        settings = await hook.asettings()  # read once per run
        patience = Patience(f"OSCAR job {self.job_name}", self.log, base=self.poll_interval)
        absent = 0
        async with (
            coalescer().watch(settings, self.service_name, self.poll_interval) as feed,
            hook.asession(settings=settings, max_connections=2) as session,
        ):

            async def look() -> JobInfo | None:
                info = (await feed.next(deadline=self.deadline)).get(self.job_name)
                if info is not None and self.live_logs and info.status == "Running":
                    await self._copy_new_lines(session)
                return info

            while True:
                info = await self._ask(look, patience)
                base["log_lines"] = self.log_lines
                if info is None:
                    absent += 1
                    if absent >= ABSENT_LISTINGS:
                        return {**base, "status": "gone", "message": "the job was deleted"}
                elif info.finished:
                    status = "success" if info.status == "Succeeded" else "failed"
                    return {**base, "status": status, "info": info.to_dict()}
                else:
                    absent = 0
                    if self._expired():
                        return {
                            **self._timeout(base, f"the job was still {info.status}"),
                            "info": info.to_dict(),
                        }
                    self.log.debug("job %s is %s", self.job_name, info.status)

    def _timeout(self, base: dict[str, Any], why: str) -> dict[str, Any]:
        return {**base, "status": "timeout", "message": f"{why} at the deadline"}

    async def _copy_new_lines(self, session: OscarAsyncSession) -> None:
        text = await session.aget_job_logs(self.service_name, self.job_name) or ""
        lines = text.splitlines()
        for line in lines[self.log_lines :]:
            self.log.info("[%s] %s", self.job_name, line)
        self.log_lines = max(self.log_lines, len(lines))

    async def cancel_remote(self) -> None:
        """Delete the job (and the input object an upload left, so nothing restarts it)."""
        if not self.cancel_on_kill:
            return
        deleted = await OscarHook(self.oscar_conn_id).adelete_job(self.service_name, self.job_name)
        self.log.info("OSCAR job %s %s", self.job_name, "deleted" if deleted else "was gone")
        if self.input_object:
            bucket, key = split_path(self.input_object)
            async with OscarStorageHook(self.oscar_conn_id).as3() as s3:
                await s3.delete(bucket, key)


class OscarServiceReadyTrigger(OscarTrigger):
    """Wait until a service is ready (see ``OscarHook.get_readiness``); fails on ``failed``."""

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

    def _base(self) -> dict[str, Any]:
        return {"service": self.service_name}

    async def _wait(self, base: dict[str, Any]) -> dict[str, Any]:
        hook = OscarHook(self.oscar_conn_id)
        patience = Patience(f"OSCAR service {self.service_name}", self.log, base=self.poll_interval)
        async with hook.asession() as session:

            async def look() -> dict[str, Any]:
                return await session.acall(lambda api: api.readiness(self.service_name))

            while True:
                deployment = await self._ask(look, patience)
                readiness = deployment.get("readiness")
                if readiness == "ready":
                    return {**base, "status": "success", "deployment": deployment}
                if readiness == "failed" or self._expired():
                    return {
                        **base,
                        "status": "failed" if readiness == "failed" else "timeout",
                        "deployment": deployment,
                        "message": f"deployment is {deployment.get('state')}: "
                        f"{deployment.get('reason') or '-'}",
                    }
                await self._sleep()
