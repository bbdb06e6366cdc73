"""Capacity sizing and routing decisions, without any cluster (statuses are plain dicts)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_oscar.errors import OscarApiError, OscarClientError, OscarModelError
from airflow_provider_oscar.routing import (
    ClusterSlot,
    Failover,
    LeastLoaded,
    RoundRobin,
    Router,
    capacity_from_status,
    is_cluster_failure,
    strategy_named,
)

GIB = 1024**3


def node(cpu: float, used_cpu: float, memory: int, used_memory: int, **extra: Any) -> dict:
    """A node of ``cpu`` cores, reported as OSCAR does: integer millicores."""
    return {
        "name": "n",
        "cpu": {"capacity_cores": round(cpu * 1000), "usage_cores": round(used_cpu * 1000)},
        "memory": {"capacity_bytes": memory, "usage_bytes": used_memory},
        "status": "Ready",
        "conditions": [{"type": "Ready", "status": True}],
        **extra,
    }


def status(*nodes: dict) -> dict:
    return {"cluster": {"nodes_count": len(nodes), "nodes": list(nodes)}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# capacity ------------------------------------------------------------------------------------


def test_capacity_uses_eighty_percent_of_the_free_cpu_when_cpu_is_scarcer() -> None:
    # 4 free cores x 0.8 / 0.5 = 6.4 -> 6; memory would allow 0.8 x 16 GiB / 1 GiB = 12
    assert capacity_from_status(status(node(4, 0, 16 * GIB, 0)), 0.5, GIB) == 6


def test_capacity_uses_eighty_percent_of_the_free_memory_when_memory_is_scarcer() -> None:
    # 10 GiB free x 0.8 / 2 GiB = 4; cpu would allow 0.8 x 32 / 1 = 25
    assert capacity_from_status(status(node(32, 0, 12 * GIB, 2 * GIB)), 1.0, 2 * GIB) == 4


def test_capacity_is_counted_per_node_because_an_invocation_runs_on_one_node() -> None:
    # two nodes with 1 free core each: 0.8 / 0.6 = 1 per node (a cluster total would say 2.67)
    two = status(node(2, 1, 8 * GIB, 0), node(2, 1, 8 * GIB, 0))
    assert capacity_from_status(two, 0.6, GIB) == 2


def test_capacity_skips_nodes_that_are_not_ready() -> None:
    down = node(8, 0, 16 * GIB, 0, status="NotReady")
    assert capacity_from_status(status(node(1, 0, 16 * GIB, 0), down), 0.2, GIB) == 4


def test_capacity_reads_cores_as_millicores_even_on_a_small_node() -> None:
    # half a core is 500 millicores (status.go MilliValue): 0.8 x 0.5 / 0.2 = 2, not 2000
    assert capacity_from_status(status(node(0.5, 0, 16 * GIB, 0)), 0.2, GIB) == 2


def test_capacity_falls_back_to_cluster_totals_without_nodes() -> None:
    totals = {
        "cluster": {
            "metrics": {
                "cpu": {"total_free_cores": 2000, "max_free_on_node_cores": 2000},
                "memory": {"total_free_bytes": 4 * GIB},
            }
        }
    }
    assert capacity_from_status(totals, 0.25, 256 * 1024**2) == 6


def test_capacity_is_zero_on_a_full_cluster() -> None:
    assert capacity_from_status(status(node(2, 2, 8 * GIB, 0)), 0.5, GIB) == 0


# which errors cool a cluster down ------------------------------------------------------------


def test_only_server_errors_and_unreachable_clusters_count_as_cluster_failures() -> None:
    assert is_cluster_failure(OscarApiError("503", status_code=503))
    assert is_cluster_failure(OscarApiError("connection refused"))
    assert not is_cluster_failure(OscarClientError("401", status_code=401))
    assert not is_cluster_failure(OscarModelError("bad image"))


# strategies ---------------------------------------------------------------------------------


def slots(*names: str, **kwargs: Any) -> list[ClusterSlot]:
    return [ClusterSlot(n, **kwargs) for n in names]


def test_round_robin_takes_each_cluster_in_turn() -> None:
    router = Router(slots("a", "b", "c"), RoundRobin())
    picked = []
    for _ in range(6):
        cluster = router.choose()
        assert cluster is not None
        picked.append(cluster.name)
        cluster.in_flight -= 1
    assert picked == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_a_full_cluster_without_losing_the_turn_order() -> None:
    a, b, c = slots("a", "b", "c", limit=1)
    router = Router([a, b, c], RoundRobin())
    b.in_flight = 1  # full
    first, second = router.choose(), router.choose()
    assert [first and first.name, second and second.name] == ["a", "c"]


def test_least_loaded_picks_the_cluster_with_most_free_slots() -> None:
    busy, free = slots("busy", "free")
    busy.set_status_capacity(2)
    free.set_status_capacity(10)
    router = Router([busy, free], LeastLoaded())
    assert [router.choose().name for _ in range(3)] == ["free"] * 3  # type: ignore[union-attr]


def test_least_loaded_counts_what_it_started_since_the_last_status() -> None:
    a, b = slots("a", "b")
    a.set_status_capacity(3)
    b.set_status_capacity(2)
    router = Router([a, b], LeastLoaded())
    names = [router.choose().name for _ in range(5)]  # type: ignore[union-attr]
    assert names.count("a") == 3 and names.count("b") == 2


def test_failover_sticks_to_the_first_cluster_while_it_is_healthy() -> None:
    router = Router(slots("primary", "backup"), Failover())
    assert {router.choose().name for _ in range(4)} == {"primary"}  # type: ignore[union-attr]


def test_an_unknown_routing_name_is_refused() -> None:
    with pytest.raises(ValueError, match="round_robin"):
        strategy_named("random")


# cool-down ----------------------------------------------------------------------------------


def test_a_failing_cluster_is_skipped_until_its_cool_down_ends() -> None:
    clock = Clock()
    primary, backup = slots("primary", "backup")
    router = Router([primary, backup], Failover(), cooldown=30.0, clock=clock)
    assert router.report_failure(primary)
    assert router.choose().name == "backup"  # type: ignore[union-attr]
    clock.now += 29.9
    assert router.choose().name == "backup"  # type: ignore[union-attr]
    clock.now += 0.2
    assert router.choose().name == "primary"  # type: ignore[union-attr]


def test_a_single_cluster_is_never_cooled_down() -> None:
    (only,) = slots("only")
    router = Router([only], Failover(), cooldown=30.0, clock=Clock())
    assert not router.report_failure(only)
    assert router.choose() is only


def test_clusters_an_input_failed_on_are_avoided_when_another_has_room() -> None:
    router = Router(slots("a", "b"), Failover(), clock=Clock())
    assert router.choose(avoid={"a"}).name == "b"  # type: ignore[union-attr]
    assert router.choose(avoid={"a", "b"}).name == "a"  # type: ignore[union-attr]


async def test_acquire_waits_for_a_release_when_every_cluster_is_full() -> None:
    (only,) = slots("only", limit=1)
    router = Router([only], RoundRobin())
    first = await router.acquire()
    waiting = asyncio.ensure_future(router.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await router.release(first)
    assert await asyncio.wait_for(waiting, 1) is only


async def test_acquire_waits_for_the_cool_down_when_every_cluster_is_down() -> None:
    a, b = slots("a", "b")
    router = Router([a, b], RoundRobin(), cooldown=0.05)
    router.report_failure(a)
    router.report_failure(b)
    cluster = await asyncio.wait_for(router.acquire(), 1)
    assert cluster.name in ("a", "b")
