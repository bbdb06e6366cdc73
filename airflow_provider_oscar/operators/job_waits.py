"""How ``OscarSubmitJobOperator`` waits for its job or its outputs: in the worker, riding out
failures that heal until the deadline, or deferred to a trigger; a job that outlives the wait
is deleted, so a retry never runs it twice."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.errors import OscarClientError, OscarError
from airflow_provider_oscar.hooks.models import JobInfo
from airflow_provider_oscar.patience import Patience
from airflow_provider_oscar.triggers.oscar import ABSENT_LISTINGS
from airflow_provider_oscar.triggers.storage import matching

if TYPE_CHECKING:
    from airflow_provider_oscar.hooks.oscar import OscarHook
    from airflow_provider_oscar.hooks.storage import OscarStorageHook


class JobWaits:
    """The waits of a submission (a mixin of the submit operator)."""

    hook: OscarHook
    storage: OscarStorageHook
    log: Any
    service_name: str
    oscar_conn_id: str
    poll_interval: float
    timeout: float
    live_logs: bool

    def _wait_for_job(self, sub: dict[str, Any], deadline: float) -> JobInfo:
        job = sub["job"]
        patience = Patience(f"OSCAR job {job}", self.log, base=self.poll_interval)
        absent = shown = 0
        while True:
            try:
                info = self.hook.list_jobs(self.service_name).get(job)
                if info is not None and self.live_logs and info.status == "Running":
                    lines = (self.hook.get_job_logs(self.service_name, job) or "").splitlines()
                    for line in lines[shown:]:
                        self.log.info("[%s] %s", job, line)
                    shown = max(shown, len(lines))
            except OscarError as exc:
                if isinstance(exc, OscarClientError) and exc.status_code == 404:
                    raise AirflowFailException(
                        f"OSCAR job {job}: service {self.service_name!r} no longer exists: {exc}"
                    ) from exc
                pause = patience.failed(exc)
                if time.time() >= deadline:
                    self._give_up(job, f"could not be asked about after {self.timeout:g} s")
                time.sleep(min(pause, max(0.0, deadline - time.time())))
                continue
            patience.succeeded()
            sub["log_lines"] = shown
            if info is None:
                absent += 1
                if absent >= ABSENT_LISTINGS:
                    raise AirflowException(f"OSCAR job {job} was deleted before it finished")
            elif info.finished:
                return info
            elif time.time() >= deadline:
                self._give_up(job, f"still {info.status} after {self.timeout:g} s")
            else:
                absent = 0
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.time())))

    def _wait_for_outputs(self, sub: dict[str, Any], deadline: float) -> list[str]:
        patience = Patience(f"outputs in {sub['output']}", self.log, base=self.poll_interval)
        while True:
            try:
                objects = self.storage.list_objects(f"{sub['output']}/")
            except OscarError as exc:
                pause = patience.failed(exc)
                time.sleep(min(pause, max(0.0, deadline - time.time())))
                continue
            found = matching(objects, sub["token"], sub["submitted"])
            if found:
                return [f"{o.bucket}/{o.key}" for o in found]
            if time.time() >= deadline:
                raise AirflowException(
                    f"no output containing {sub['token']!r} in {sub['output']} after "
                    f"{self.timeout:g} s"
                )
            time.sleep(self.poll_interval)

    def _give_up(self, job: str, why: str) -> NoReturn:
        """Delete a job that outlived the wait (so a retry never runs twice), then fail."""
        try:
            self.hook.delete_job(self.service_name, job)
            outcome = "the job was deleted"
        except OscarError as exc:
            outcome = f"deleting it failed too ({exc}): it may still run"
        raise AirflowException(f"OSCAR job {job} {why}; {outcome}")
