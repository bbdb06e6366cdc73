"""Sizing and routing a batch over its clusters: how many invocations each can take now.

The service's CPU and memory against ``/system/status`` give each cluster's free slots (OSCAR's
batch tooling rule, :func:`~airflow_provider_oscar.routing.capacity_from_status`); a cluster
that cannot be reached while sizing starts cooled down, one without the service is left out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.errors import OscarClientError, OscarError
from airflow_provider_oscar.hooks.models import ClusterSettings
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.routing import (
    ClusterSlot,
    Router,
    capacity_from_status,
    is_cluster_failure,
    strategy_named,
)

if TYPE_CHECKING:
    from airflow_provider_oscar.fdl import Service
    from airflow_provider_oscar.hooks.correlation import Correlator
    from airflow_provider_oscar.hooks.oscar import OscarAsyncSession
    from airflow_provider_oscar.hooks.release import OscarRelease
    from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator

STATUS_REFRESH = 30.0  # seconds between status reads for least-loaded routing
DEFAULT_CONCURRENCY = 4  # when /system/status cannot size it


@dataclass(eq=False)
class Cluster:
    """One cluster of the batch: its connection, settings and (inside the loop) sessions."""

    conn_id: str
    settings: ClusterSettings
    session: OscarAsyncSession | None = None
    release: OscarRelease | None = None
    service: Service | None = None
    correlator: Correlator | None = None
    cpu: float = 0.0  # the service's needs on this cluster (read when sizing)
    memory: int = 0

    @classmethod
    def read(cls, conn_id: str, *, several: bool) -> Cluster:
        settings = OscarHook(conn_id).settings
        if several:  # another cluster is a better retry than hammering this one
            settings = replace(settings, retries=min(settings.retries, 1))
        return cls(conn_id, settings)

    @property
    def name(self) -> str:
        return self.settings.name


class Planner:
    """Builds the batch's router and says its concurrency."""

    def __init__(self, op: OscarBatchInvokeOperator, clusters: list[Cluster], log: Any) -> None:
        self.op = op
        self.clusters = clusters
        self.log = log
        self._unreachable: set[Cluster] = set()  # clusters that failed while sizing

    async def router(self) -> Router:
        op = self.op
        sized = op.concurrency is None or op.routing == "least_loaded" or len(self.clusters) > 1
        slots = []
        for cluster in self.clusters:
            slot = ClusterSlot(cluster.name, key=cluster)
            if sized:
                await self._size(slot, cluster)
            slots.append(slot)
        usable = [s for s in slots if s.limit != 0]
        if not usable:
            raise OscarClientError(
                f"service {op.service_name!r} is not usable on any cluster "
                f"({', '.join(s.name for s in slots)})"
            )
        router = Router(usable, strategy_named(op.routing), op.cooldown)
        for slot in usable:
            if slot.key in self._unreachable:  # start it cooled down
                router.report_failure(slot)
        return router

    async def _size(self, slot: ClusterSlot, cluster: Cluster) -> None:
        """Read the service and the cluster status; set the slot's limit and capacity."""
        op = self.op
        assert cluster.session is not None
        try:
            service = await cluster.session.aget_service(op.service_name)
        except OscarError as exc:
            if not is_cluster_failure(exc) or len(self.clusters) < 2:
                raise
            self.log.warning("OSCAR cluster %s is unavailable: %s", cluster.name, exc)
            self._unreachable.add(cluster)
            return
        if service is None:
            if len(self.clusters) < 2:
                raise OscarClientError(
                    f"OSCAR cluster {cluster.name}: service {op.service_name!r} does not exist",
                    status_code=404,
                    service=op.service_name,
                )
            self.log.warning("OSCAR cluster %s has no service %s", cluster.name, op.service_name)
            slot.limit = 0
            return
        cluster.service = service
        cluster.cpu, cluster.memory = service.cpu_cores, service.memory_bytes
        scale = service.synchronous.max_scale if op.mode == "sync" else 0
        free = await self._free_slots(cluster)
        if free is None:
            if op.concurrency is None:
                slot.limit = min(DEFAULT_CONCURRENCY, scale or op.max_concurrency)
            return
        slot.set_status_capacity(free)
        if op.concurrency is None:  # Knative runs one request per pod: no more than max_scale
            slot.limit = max(1, min(free, scale or free, op.max_concurrency))
            self.log.info(
                "OSCAR cluster %s fits %d parallel invocations of %s (%.2f CPU, %d MiB each)",
                cluster.name,
                free,
                op.service_name,
                service.cpu_cores,
                service.memory_bytes // 2**20,
            )

    async def _free_slots(self, cluster: Cluster) -> int | None:
        """Invocations of the service that fit on the cluster now (``None``: unknown)."""
        assert cluster.session is not None
        if cluster.cpu <= 0 and cluster.memory <= 0:  # its service was never read
            return None
        try:
            status = await cluster.session.aget_status()
        except OscarError as exc:
            self.log.warning("OSCAR cluster %s: no usable /system/status (%s)", cluster.name, exc)
            return None
        return capacity_from_status(status, cluster.cpu, cluster.memory, self.op.capacity_fraction)

    def concurrency(self, router: Router | None) -> int:
        op = self.op
        if op.concurrency is not None:
            return op.concurrency
        if router is None:
            return DEFAULT_CONCURRENCY
        total = sum(s.limit or DEFAULT_CONCURRENCY for s in router.clusters)
        return max(1, min(total, op.max_concurrency))

    async def refresh_status(self, router: Router) -> None:
        while True:
            await asyncio.sleep(STATUS_REFRESH)
            for slot in router.healthy():
                free = await self._free_slots(slot.key)
                if free is not None:
                    slot.set_status_capacity(free)
