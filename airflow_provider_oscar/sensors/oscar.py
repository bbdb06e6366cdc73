"""Sensors on OSCAR jobs and service deployments.

Each sensor pokes in the worker (``mode="poke"`` or ``"reschedule"``) or, when deferrable, pokes
once and then hands the wait to a trigger with an absolute deadline; ``poke_interval`` is the
trigger's poll interval too. A poke that fails with something that heals (5xx, 429, a
connection error) is logged and counts as "not yet"; the sensor's ``timeout`` bounds the wait.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_oscar.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow_provider_oscar.errors import OscarError
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.links import OscarJobLogsLink, OscarServiceLink
from airflow_provider_oscar.operators.base import default_deferrable
from airflow_provider_oscar.operators.hub import WARM_UP_TIMEOUT, HubTarget
from airflow_provider_oscar.patience import can_heal
from airflow_provider_oscar.triggers.oscar import OscarJobTrigger, OscarServiceReadyTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import Logger
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_oscar.warmup import WarmUp

#: How many of a failed job's last log lines go into the failure message.
LOG_TAIL_LINES = 20


class OscarBaseSensor(BaseSensorOperator):
    """Base of the OSCAR sensors: connection, lazy hook, and the poke-once-then-defer path.

    :param oscar_conn_id: the Airflow connection (type ``oscar``) of the cluster.
    :param deferrable: wait in the triggerer; ``None`` reads ``[operators] default_deferrable``.
    """

    ui_color = "#d6ecff"

    def __init__(
        self,
        *,
        oscar_conn_id: str = OscarHook.default_conn_name,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.oscar_conn_id = oscar_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    @cached_property
    def hook(self) -> OscarHook:
        return OscarHook(self.oscar_conn_id)

    def execute(self, context: Context) -> Any:
        self.persist_links(context)
        if not self.deferrable:
            return super().execute(context)
        try:
            done = self.patient_poke(context)
        except AirflowFailException as exc:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"skipped (soft_fail/never_fail): {exc}") from exc
            raise
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        self.defer(
            trigger=self.trigger(deadline=time.time() + self.timeout),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: its ``success`` event gives the result, others fail."""
        event = event or {}
        status = event.get("status")
        if status == "success":
            return self.on_success(context, event)
        if status == "failed":
            return self.on_failed(context, event)
        message = f"{self.task_id}: {event.get('message') or f'unexpected trigger event {event!r}'}"
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        if status == "missing":
            raise AirflowFailException(message)
        raise AirflowException(message)

    def persist_links(self, context: Context) -> None:
        """Store what the sensor's extra links need (before any deferral)."""

    def poke(self, context: Context) -> bool | PokeReturnValue:
        return self.patient_poke(context)

    def patient_poke(self, context: Context) -> bool | PokeReturnValue:
        """:meth:`check`, with a failure that heals taken as "not yet" (and logged)."""
        try:
            return self.check(context)
        except (AirflowException, OscarError) as exc:
            cause = exc.__cause__ if isinstance(exc, AirflowException) else exc
            if cause is None or not can_heal(cause):
                raise
            self.log.warning(
                "%s: %s; asking again in %s s", self.task_id, cause, self.poke_interval
            )
            return False

    @abstractmethod
    def check(self, context: Context) -> bool | PokeReturnValue:
        """One look at the condition (the sensor's ``poke``)."""

    @abstractmethod
    def trigger(self, deadline: float) -> BaseTrigger:
        """The trigger that waits in place of :meth:`poke`."""

    @abstractmethod
    def on_success(self, context: Context, event: dict[str, Any]) -> Any:
        """The XCom value of a ``success`` event."""

    def on_failed(self, context: Context, event: dict[str, Any]) -> Any:
        """Handle a ``failed`` event (by default: fail with its message)."""
        raise AirflowFailException(f"{self.task_id}: {event.get('message') or event}")


class OscarJobSensor(OscarBaseSensor):
    """Wait for an OSCAR job to end; its ``JobInfo`` (as a dict) is the XCom value.

    The job's log is copied into the task log when it ends.

    :param service_name: the job's service.
    :param job_name: the job (``<service>-<uuid>``, or the name given at submission).
    :param fail_on_job_failure: a ``Failed`` job fails the task (with its last log lines);
        ``False`` makes it an ordinary result whose ``status`` is ``Failed``.
    """

    template_fields: Sequence[str] = ("service_name", "job_name", "oscar_conn_id")
    operator_extra_links = (OscarJobLogsLink(),)

    def __init__(
        self,
        *,
        service_name: str,
        job_name: str,
        fail_on_job_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service_name = service_name
        self.job_name = job_name
        self.fail_on_job_failure = fail_on_job_failure

    def persist_links(self, context: Context) -> None:
        with task_outcome():
            endpoint = self.hook.settings.endpoint
        OscarJobLogsLink.persist(
            context, endpoint=endpoint, service=self.service_name, job=self.job_name
        )

    def check(self, context: Context) -> bool | PokeReturnValue:
        with task_outcome():
            info = self.hook.list_jobs(self.service_name).get(self.job_name)
            cluster = self.hook.settings.name
        if info is None:
            raise AirflowFailException(
                f"OSCAR cluster {cluster}: service {self.service_name!r} has no job "
                f"{self.job_name!r} (never submitted, deleted, or expired after its TTL)"
            )
        if not info.finished:
            self.log.info("OSCAR job %s is %s", self.job_name, info.status)
            return False
        return PokeReturnValue(True, self.finish(info.to_dict()))

    def trigger(self, deadline: float) -> BaseTrigger:
        return OscarJobTrigger(
            service_name=self.service_name,
            job_name=self.job_name,
            oscar_conn_id=self.oscar_conn_id,
            poll_interval=self.poke_interval,
            deadline=deadline,
            cancel_on_kill=False,  # the sensor watches the job; it does not own it
        )

    def on_success(self, context: Context, event: dict[str, Any]) -> Any:
        return self.finish(event["info"])

    def on_failed(self, context: Context, event: dict[str, Any]) -> Any:
        return self.finish(event["info"])

    def finish(self, info: dict[str, Any]) -> dict[str, Any]:
        """Copy the ended job's log into the task log; fail on ``Failed`` if asked to."""
        try:
            text = self.hook.get_job_logs(self.service_name, self.job_name) or ""
        except OscarError as exc:
            self.log.warning("could not read the log of OSCAR job %s: %s", self.job_name, exc)
            text = ""
        for line in text.splitlines():
            self.log.info("[%s] %s", self.job_name, line)
        if info["status"] == "Failed" and self.fail_on_job_failure:
            with task_outcome():
                cluster = self.hook.settings.name
            tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:]) or "(no log)"
            raise AirflowFailException(
                f"OSCAR cluster {cluster}: job {self.job_name!r} of service "
                f"{self.service_name!r} failed; last log lines:\n{tail}"
            )
        return info


class OscarServiceReadySensor(HubTarget, OscarBaseSensor):
    """Wait until a service's deployment is ``ready``; the deployment status is the XCom value.

    A ``failed`` deployment fails the task, with the deployment's logs in the task log.

    :param service_name: the service; or
    :param hub_module: the AI4OS hub module it runs (see
        :class:`~airflow_provider_oscar.operators.invoke.OscarRunServiceOperator`).
    :param warm_up: ``"call"``: once ready, call the service until it answers (through the
        cuts of a cold start), so the calls that follow find a pod up and the model loaded;
        ``"min_scale"``: keep a pod up (its ``synchronous.min_scale`` raised to 1) and wait until
        one is; put it back afterwards with
        :class:`~airflow_provider_oscar.operators.service.OscarRestoreMinScaleOperator`. What was
        done is the XCom value's ``warm_up``.
    :param warm_up_timeout: seconds the warm-up call may take.
    """

    template_fields: Sequence[str] = ("service_name", "hub_module", "oscar_conn_id")
    operator_extra_links = (OscarServiceLink(),)

    def __init__(
        self,
        *,
        service_name: str | None = None,
        hub_module: str | None = None,
        warm_up: WarmUp | None = None,
        warm_up_timeout: float = WARM_UP_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_hub_options(
            service_name=service_name,
            hub_module=hub_module,
            warm_up=warm_up,
            warm_up_timeout=warm_up_timeout,
        )

    def persist_links(self, context: Context) -> None:
        with task_outcome():
            endpoint = self.hook.settings.endpoint
            name = self.resolve_name()
        OscarServiceLink.persist(context, endpoint=endpoint, service=name)

    def check(self, context: Context) -> bool | PokeReturnValue:
        with task_outcome():
            name = self.resolve_name()
            warm_up = self.warmed() if self.warm_up == "min_scale" else None
        deployment = ready_deployment(self.hook, name, self.log)
        if not deployment:
            return False
        if warm_up is not None:
            if not deployment.get("active_instances"):
                self.log.info("OSCAR service %s is ready but has no pod up yet", name)
                return False
            return PokeReturnValue(True, {**deployment, "warm_up": warm_up})
        return PokeReturnValue(True, self._called(deployment))

    def _called(self, deployment: dict[str, Any]) -> dict[str, Any]:
        """The deployment, after the warm-up call when one is asked for."""
        if self.warm_up != "call":
            return deployment
        with task_outcome():
            return {**deployment, "warm_up": self.warmed()}

    def trigger(self, deadline: float) -> BaseTrigger:
        return OscarServiceReadyTrigger(
            service_name=self.service_name,
            oscar_conn_id=self.oscar_conn_id,
            poll_interval=self.poke_interval,
            deadline=deadline,
        )

    def on_success(self, context: Context, event: dict[str, Any]) -> Any:
        if self.warm_up == "min_scale":
            with task_outcome():
                return {**event["deployment"], "warm_up": self.warmed()}
        return self._called(event["deployment"])

    def on_failed(self, context: Context, event: dict[str, Any]) -> Any:
        with task_outcome():
            name = self.resolve_name()
        raise deployment_failure(self.hook, name, event["deployment"], self.log)


def ready_deployment(hook: OscarHook, service: str, log: Logger) -> dict[str, Any] | None:
    """The service's deployment status when ready, ``None`` while it is not yet.

    Before OSCAR 4.0 (no deployment status), and when OSCAR reports the deployment
    ``unavailable``, a service that exists is ready. Raises :class:`AirflowFailException`
    (after logging the deployment's logs) when it failed, or when the service does not exist.
    """
    with task_outcome():
        deployment = hook.get_readiness(service)
    readiness = deployment.get("readiness")
    if readiness == "failed":
        raise deployment_failure(hook, service, deployment, log)
    if readiness != "ready":
        log.info(
            "OSCAR service %s is %s (%s)",
            service,
            deployment.get("state"),
            deployment.get("reason") or "-",
        )
        return None
    if deployment.get("readiness_note"):
        log.info("%s", deployment["readiness_note"])
    return deployment


def deployment_failure(
    hook: OscarHook, service: str, deployment: dict[str, Any], log: Logger
) -> AirflowFailException:
    """Copy a failed deployment's logs into the task log; the exception to raise for it."""
    try:
        logs = hook.get_deployment_logs(service)
    except OscarError as exc:
        log.warning("could not read the deployment logs of OSCAR service %s: %s", service, exc)
        logs = {}
    for entry in logs.get("entries") or []:
        log.error("[%s] %s %s", service, entry.get("timestamp") or "", entry.get("message"))
    if logs.get("message"):
        log.error("[%s] %s", service, logs["message"])
    with task_outcome():
        cluster = hook.settings.name
    return AirflowFailException(
        f"OSCAR cluster {cluster}: deployment of service {service!r} failed: "
        f"{deployment.get('reason') or 'no reason given'}"
    )
