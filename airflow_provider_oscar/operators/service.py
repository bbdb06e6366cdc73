"""Deploy (upsert) and delete OSCAR services."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.compat import AirflowException, AirflowFailException
from airflow_provider_oscar.crates import DEFAULT_REF, DEFAULT_REPO, fetch_crate, load_crate
from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.links import OscarServiceLink
from airflow_provider_oscar.operators.base import OscarBaseOperator, default_deferrable
from airflow_provider_oscar.operators.hub import HubTarget
from airflow_provider_oscar.sensors.oscar import deployment_failure, ready_deployment
from airflow_provider_oscar.triggers.oscar import OscarServiceReadyTrigger
from airflow_provider_oscar.warmup import restore_min_scale

if TYPE_CHECKING:
    from airflow.sdk import Context


class OscarDeployServiceOperator(OscarBaseOperator):
    """Create or update services (oscar-cli's ``apply``) and wait until they are ready.

    Returns ``{service name: "created" | "updated"}``.

    :param definition: an FDL file path, FDL/YAML text, an FDL mapping (with ``functions``),
        or one service as a mapping; or
    :param hub_service: the OSCAR Hub crate to deploy, as ``oscar-cli hub deploy`` does: its
        ``ro-crate-metadata.json`` names the FDL and the script (see :mod:`.crates`).
    :param hub_ref: the branch, tag or commit of ``hub_repo`` to read the crate from.
    :param hub_repo: the GitHub repository of the crates (``owner/name``, crates under
        ``crates/``).
    :param hub_local_path: read the crate from this folder instead (the crate itself, or an
        OSCAR Hub folder holding ``<hub_service>/`` or ``crates/<hub_service>/``).
    :param service_name: deploy the crate's service under this name (``oscar-cli``'s ``-n``).
    :param cluster_id: deploy only the FDL's services under this cluster id.
    :param wait_for_ready: wait until every deployed service's deployment is ``ready``.
    :param ready_timeout: seconds to wait for that, in all.
    :param poll_interval: seconds between deployment checks.
    :param deferrable: wait in the triggerer; ``None`` reads ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = (
        "definition",
        "hub_service",
        "hub_ref",
        "service_name",
        "cluster_id",
        "oscar_conn_id",
    )
    operator_extra_links = (OscarServiceLink(),)

    def __init__(
        self,
        *,
        definition: str | Path | Mapping[str, Any] | Service | None = None,
        hub_service: str | None = None,
        hub_ref: str = DEFAULT_REF,
        hub_repo: str = DEFAULT_REPO,
        hub_local_path: str | Path | None = None,
        service_name: str | None = None,
        cluster_id: str | None = None,
        wait_for_ready: bool = True,
        ready_timeout: float = 600,
        poll_interval: float = 5,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (definition is None) == (hub_service is None):
            raise ValueError("give exactly one of definition and hub_service")
        if service_name is not None and hub_service is None:
            raise ValueError("service_name renames a hub_service; a definition names its own")
        self.definition = definition
        self.hub_service = hub_service
        self.hub_ref = hub_ref
        self.hub_repo = hub_repo
        self.hub_local_path = hub_local_path
        self.service_name = service_name
        self.cluster_id = cluster_id
        self.wait_for_ready = wait_for_ready
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def execute(self, context: Context) -> dict[str, str]:
        with task_outcome():
            applied = self.hook.apply_service(self._definition(), self.cluster_id)
            endpoint = self.hook.settings.endpoint
        for name, outcome in applied.items():
            self.log.info("OSCAR service %s %s", name, outcome)
        only = next(iter(applied)) if len(applied) == 1 else None
        OscarServiceLink.persist(context, endpoint=endpoint, service=only)
        if not self.wait_for_ready:
            return applied
        return self.await_ready(applied, list(applied), time.time() + self.ready_timeout)

    def _definition(self) -> str | Path | Mapping[str, Any] | Service:
        """The definition given, or the service of the OSCAR Hub crate."""
        if self.hub_service is None:
            assert self.definition is not None
            return self.definition
        if self.hub_local_path is not None:
            crate = load_crate(self.hub_local_path, self.hub_service)
        else:
            crate = fetch_crate(self.hub_service, repo=self.hub_repo, ref=self.hub_ref)
        self.log.info(
            "OSCAR Hub crate %s: %s (version %s) from %s",
            crate.slug,
            crate.title,
            crate.version or "-",
            crate.source,
        )
        if self.service_name:
            return crate.service.model_copy(update={"name": self.service_name})
        return crate.service

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        *,
        applied: dict[str, str],
        pending: list[str],
        deadline: float,
    ) -> dict[str, str]:
        """Resume after one service's trigger; go on with the services not yet checked."""
        event = event or {}
        status, service = event.get("status"), event.get("service", "?")
        if status == "failed":
            raise deployment_failure(self.hook, service, event["deployment"], self.log)
        if status != "success":
            raise AirflowException(
                f"OSCAR service {service!r} is not ready: {event.get('message') or event}"
            )
        return self.await_ready(applied, pending, deadline)

    def await_ready(
        self, applied: dict[str, str], pending: list[str], deadline: float
    ) -> dict[str, str]:
        """Wait for each pending service in turn: polling here, or deferring per service."""
        for index, name in enumerate(pending):
            while not ready_deployment(self.hook, name, self.log):
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AirflowException(
                        f"OSCAR service {name!r} was not ready within {self.ready_timeout} s"
                    )
                if self.deferrable:
                    self.defer(
                        trigger=OscarServiceReadyTrigger(
                            service_name=name,
                            oscar_conn_id=self.oscar_conn_id,
                            poll_interval=self.poll_interval,
                            deadline=deadline,
                        ),
                        method_name="execute_complete",
                        kwargs={
                            "applied": applied,
                            "pending": pending[index + 1 :],
                            "deadline": deadline,
                        },
                        timeout=timedelta(seconds=remaining),
                    )
                time.sleep(min(self.poll_interval, remaining))
        return applied


class OscarDeleteServiceOperator(OscarBaseOperator):
    """Delete a service (OSCAR also deletes its input and output buckets).

    Returns whether the service existed.

    :param service_name: the service.
    :param missing_ok: a service that does not exist is not an error.
    """

    template_fields: Sequence[str] = ("service_name", "oscar_conn_id")

    def __init__(self, *, service_name: str, missing_ok: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service_name = service_name
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> bool:
        with task_outcome():
            deleted = self.hook.delete_service(self.service_name)
            cluster = self.hook.settings.name
        if deleted:
            self.log.info("deleted OSCAR service %s", self.service_name)
        elif self.missing_ok:
            self.log.info("OSCAR service %s did not exist", self.service_name)
        else:
            raise AirflowFailException(
                f"OSCAR cluster {cluster}: service {self.service_name!r} does not exist "
                "(nothing to delete; pass missing_ok=True to accept that)"
            )
        return deleted


class OscarRestoreMinScaleOperator(HubTarget, OscarBaseOperator):
    """Put back the ``min_scale`` that a ``warm_up="min_scale"`` raised (a run's teardown).

    Returns whether it changed anything (``False`` when nothing was raised or it is back).

    :param service_name: the service; or
    :param hub_module: the AI4OS hub module it runs.
    """

    template_fields: Sequence[str] = ("service_name", "hub_module", "oscar_conn_id")

    def __init__(
        self, *, service_name: str | None = None, hub_module: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.set_hub_options(
            service_name=service_name,
            hub_module=hub_module,
        )

    def execute(self, context: Context) -> bool:
        with task_outcome():
            name = self.resolve_name()
            restored = restore_min_scale(self.hook, name)
        done = "min_scale put back" if restored else "nothing to put back"
        self.log.info("OSCAR service %s: %s", name, done)
        return restored
