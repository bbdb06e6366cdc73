"""Spreading invocations over several OSCAR clusters, and sizing them to what a cluster can run.

* :func:`capacity_from_status` turns ``GET /system/status`` and a service's CPU and memory into
  the number of parallel invocations that fit, with the rule of OSCAR's batch tooling
  (oscar-batch): use 80 % of the free resources, ``N = min(free_cpu / service_cpu,
  free_memory / service_memory)``, counted per node (an invocation runs on one node). The
  ``*_cores`` fields are integer millicores on every release the provider supports
  (``pkg/types/status.go``, filled from Kubernetes ``Quantity.MilliValue`` by
  ``pkg/handlers/status.go`` since v3.6): they are read as millicores, never guessed.
* :class:`Router` hands out clusters for invocations: a :class:`Strategy` picks among the
  healthy clusters with room (:class:`RoundRobin`, :class:`LeastLoaded`, :class:`Failover`); a
  cluster that errors or cannot be reached is skipped for a cool-down, so its inputs go
  elsewhere. The clock is injectable for tests.

No I/O and no Airflow here: callers feed in statuses and outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_oscar.errors import OscarApiError, OscarClientError

RoutingName = Literal["round_robin", "least_loaded", "failover"]
ROUTINGS: tuple[RoutingName, ...] = ("round_robin", "least_loaded", "failover")
CAPACITY_FRACTION = 0.8
MILLICORES_PER_CORE = 1000

__all__ = [
    "ROUTINGS",
    "ClusterSlot",
    "Failover",
    "LeastLoaded",
    "RoundRobin",
    "Router",
    "Strategy",
    "capacity_from_status",
    "is_cluster_failure",
    "strategy_named",
]


def capacity_from_status(
    status: Mapping[str, Any],
    cpu: float,
    memory: int,
    fraction: float = CAPACITY_FRACTION,
) -> int:
    """How many invocations of a service (``cpu`` cores, ``memory`` bytes each) fit now.

    Per ready node: ``floor(fraction * free / need)`` for CPU and for memory, summed over nodes;
    the answer is the smaller of the two sums. Without per-node data the cluster totals are used.
    """
    cluster = status.get("cluster") or {}
    nodes = [n for n in cluster.get("nodes") or [] if _ready(n)]
    if nodes:
        by_cpu = by_memory = 0
        for node in nodes:
            node_cpu, node_memory = node.get("cpu") or {}, node.get("memory") or {}
            free_cpu = _number(node_cpu.get("capacity_cores")) - max(
                _number(node_cpu.get("usage_cores")), _number(node_cpu.get("request_cores"))
            )
            free_memory = _number(node_memory.get("capacity_bytes")) - max(
                _number(node_memory.get("usage_bytes")), _number(node_memory.get("request_bytes"))
            )
            by_cpu += _fits(fraction * free_cpu / MILLICORES_PER_CORE, cpu)
            by_memory += _fits(fraction * free_memory, memory)
        return min(by_cpu, by_memory)
    metrics = cluster.get("metrics") or {}
    free_cpu = _number((metrics.get("cpu") or {}).get("total_free_cores"))
    free_memory = _number((metrics.get("memory") or {}).get("total_free_bytes"))
    free_cpu /= MILLICORES_PER_CORE
    return min(_fits(fraction * free_cpu, cpu), _fits(fraction * free_memory, memory))


def _ready(node: Mapping[str, Any]) -> bool:
    if node.get("status") not in (None, "", "Ready"):
        return False
    conditions = node.get("conditions") or []
    return all(c.get("status") for c in conditions if c.get("type") == "Ready")


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _fits(free: float, need: float) -> int:
    if need <= 0:
        return 1_000_000
    return max(0, math.floor(free / need + 1e-9))


def is_cluster_failure(exc: BaseException) -> bool:
    """Whether an error says the cluster is in trouble (5xx after retries, unreachable).

    Refusals (4xx), model errors and undecodable outputs say nothing about the cluster.
    """
    return isinstance(exc, OscarApiError) and not isinstance(exc, OscarClientError)


@dataclass(eq=False)
class ClusterSlot:
    """One cluster as the router sees it.

    ``limit`` caps the invocations in flight on it (``None``: no cap of its own). ``capacity``
    is what least-loaded routing ranks by: the free service slots its last status showed plus
    the invocations this batch had running there at that moment (``None`` when unknown).
    """

    name: str
    limit: int | None = None
    capacity: float | None = None
    key: Any = None  # the caller's handle (e.g. its connection id)
    index: int = 0  # position in the configured order (set by the router)
    in_flight: int = 0
    served: int = 0
    failures: int = 0
    down_until: float = float("-inf")
    _in_flight_at_status: int = 0

    def set_status_capacity(self, free_slots: float) -> None:
        """Record a fresh status: ``free_slots`` already excludes our running invocations."""
        self.capacity = free_slots
        self._in_flight_at_status = self.in_flight

    @property
    def headroom(self) -> float:
        """Estimated slots still free for us (least-loaded ranks by this)."""
        if self.capacity is None:
            return -float(self.in_flight)
        return self.capacity + self._in_flight_at_status - self.in_flight

    def has_room(self) -> bool:
        return self.limit is None or self.in_flight < self.limit


class Strategy(ABC):
    """Picks one cluster among the healthy ones with room (``candidates`` keep their order)."""

    name: str = ""

    @abstractmethod
    def pick(self, candidates: Sequence[ClusterSlot]) -> ClusterSlot:
        """The cluster for the next input."""


class RoundRobin(Strategy):
    """Each cluster in turn."""

    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[ClusterSlot]) -> ClusterSlot:
        # Turns go by configured position, so a cluster skipped for lack of room or health
        # does not shift the others' turns.
        chosen = next((c for c in candidates if c.index >= self._turn), candidates[0])
        self._turn = chosen.index + 1
        return chosen


class LeastLoaded(Strategy):
    """The cluster with the most free slots (from ``/system/status``, minus what we started)."""

    name = "least_loaded"

    def pick(self, candidates: Sequence[ClusterSlot]) -> ClusterSlot:
        return max(candidates, key=lambda c: (c.headroom, -c.in_flight))


class Failover(Strategy):
    """The first cluster in the configured order; the next ones only while it is down."""

    name = "failover"

    def pick(self, candidates: Sequence[ClusterSlot]) -> ClusterSlot:
        return candidates[0]


def strategy_named(name: str) -> Strategy:
    """The strategy for ``round_robin``, ``least_loaded`` or ``failover``."""
    kinds: dict[str, type[Strategy]] = {
        "round_robin": RoundRobin,
        "least_loaded": LeastLoaded,
        "failover": Failover,
    }
    if name not in kinds:
        raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, not {name!r}")
    return kinds[name]()


@dataclass(eq=False)
class Router:
    """Leases clusters to invocations: health (cool-downs), per-cluster limits, a strategy.

    A cluster reported failing is skipped for ``cooldown`` seconds (only when there is another
    cluster to go to). When every cluster is down or full, :meth:`acquire` waits for a release
    or for the earliest cool-down to end.
    """

    clusters: list[ClusterSlot]
    strategy: Strategy = field(default_factory=RoundRobin)
    cooldown: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _changed: asyncio.Condition | None = None

    def __post_init__(self) -> None:
        if not self.clusters:
            raise ValueError("a router needs at least one cluster")
        for index, cluster in enumerate(self.clusters):
            cluster.index = index

    # health -------------------------------------------------------------------------------

    def healthy(self) -> list[ClusterSlot]:
        now = self.clock()
        return [c for c in self.clusters if c.down_until <= now]

    def is_down(self, cluster: ClusterSlot) -> bool:
        return cluster.down_until > self.clock()

    def report_failure(self, cluster: ClusterSlot) -> bool:
        """The cluster failed an invocation; cool it down. Whether it is now skipped."""
        cluster.failures += 1
        if len(self.clusters) < 2 or self.cooldown <= 0:
            return False
        cluster.down_until = self.clock() + self.cooldown
        return True

    def report_success(self, cluster: ClusterSlot) -> None:
        cluster.served += 1

    # leases -------------------------------------------------------------------------------

    def choose(self, avoid: Collection[str] = ()) -> ClusterSlot | None:
        """A cluster for one invocation now (its in-flight count taken), or ``None``.

        Clusters in ``avoid`` (those an input already failed on) are used only when no other
        healthy cluster has room.
        """
        roomy = [c for c in self.healthy() if c.has_room()]
        preferred = [c for c in roomy if c.name not in avoid] or roomy
        if not preferred:
            return None
        cluster = self.strategy.pick(preferred)
        cluster.in_flight += 1
        return cluster

    async def acquire(self, avoid: Collection[str] = ()) -> ClusterSlot:
        """Wait for a cluster with room and lease it; give it back with :meth:`release`."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            while True:
                cluster = self.choose(avoid)
                if cluster is not None:
                    return cluster
                await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        assert self._changed is not None
        now = self.clock()
        ends = [c.down_until for c in self.clusters if c.down_until > now]
        timeout = (min(ends) - now) if ends and not self.healthy() else None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def release(self, cluster: ClusterSlot) -> None:
        cluster.in_flight -= 1
        if self._changed is None:
            return
        async with self._changed:
            self._changed.notify_all()

    def summary(self) -> dict[str, int]:
        """Invocations served per cluster."""
        return {c.name: c.served for c in self.clusters}
