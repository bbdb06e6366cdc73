"""Deferrable wait on many jobs of one service: the deferrable batch's trigger.

It fires as soon as ``enough`` of its jobs have ended (or some disappeared, or the deadline
came), so the batch resumes, records them and submits the next inputs while the others run.
It polls through the process's job-list coalescer and rides out failures that heal; when the
user kills the task it deletes the jobs still running (never on a triggerer restart).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.patience import Patience
from airflow_provider_oscar.triggers.base import OscarTrigger
from airflow_provider_oscar.triggers.coalesce import coalescer
from airflow_provider_oscar.triggers.oscar import ABSENT_LISTINGS

__all__ = ["OscarJobsTrigger"]


class OscarJobsTrigger(OscarTrigger):
    """Wait until ``enough`` of ``job_names`` (jobs of one service) have ended.

    The event: ``{"status": "progress", "ended": {job: info}, "gone": [job, ...]}``, or
    ``"timeout"`` (with the jobs' last ``states``) or ``"error"``.
    """

    def __init__(
        self,
        *,
        service_name: str,
        job_names: list[str],
        enough: int = 1,
        oscar_conn_id: str = OscarHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.service_name = service_name
        self.job_names = list(job_names)
        self.enough = max(1, min(int(enough), len(self.job_names) or 1))
        self.cancel_on_kill = cancel_on_kill

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "service_name": self.service_name,
            "job_names": self.job_names,
            "enough": self.enough,
            "cancel_on_kill": self.cancel_on_kill,
        }

    def _base(self) -> dict[str, Any]:
        return {"service": self.service_name}

    async def _wait(self, base: dict[str, Any]) -> dict[str, Any]:
        settings = await OscarHook(self.oscar_conn_id).asettings()
        what = f"{len(self.job_names)} jobs of {self.service_name}"
        patience = Patience(what, self.log, base=self.poll_interval)
        absent: dict[str, int] = {}
        async with coalescer().watch(settings, self.service_name, self.poll_interval) as feed:

            async def look() -> dict[str, JobInfo]:
                return await feed.next(deadline=self.deadline)

            while True:
                jobs = await self._ask(look, patience)
                listed = [n for n in self.job_names if n in jobs]
                ended = {n: jobs[n].to_dict() for n in listed if jobs[n].finished}
                for name in self.job_names:
                    absent[name] = 0 if name in jobs else absent.get(name, 0) + 1
                gone = [n for n, count in absent.items() if count >= ABSENT_LISTINGS]
                if len(ended) + len(gone) >= self.enough or gone:
                    return {**base, "status": "progress", "ended": ended, "gone": gone}
                if self._expired():
                    states = {n: jobs[n].status for n in listed}
                    return {**base, "status": "timeout", "states": states, "message": "deadline"}

    async def cancel_remote(self) -> None:
        if not self.cancel_on_kill:
            return
        async with OscarHook(self.oscar_conn_id).asession() as session:
            for name in self.job_names:
                await session.adelete_job(self.service_name, name)
        self.log.info("deleted the %d jobs of the batch still running", len(self.job_names))
