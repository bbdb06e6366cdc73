"""pkg/types/deployment.go (v4.0.0): a service's runtime state, as ``/deployment`` reports it."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go

PENDING, READY, DEGRADED, FAILED, STOPPED, UNAVAILABLE = (
    "pending",
    "ready",
    "degraded",
    "failed",
    "stopped",  # v4.1.0
    "unavailable",
)
KIND_EXPOSED, KIND_KSERVE, KIND_KNATIVE, KIND_UNAVAILABLE = (
    "exposed_service",
    "kserve_service",  # v4.1.0
    "knative_service",
    "unavailable",
)


@dataclass
class ServiceDeploymentStatus:
    service_name: str = go("service_name", "")
    namespace: str = go("namespace", "", omitempty=True)
    state: str = go("state", "")
    reason: str = go("reason", "", omitempty=True)
    last_transition_time: str | None = go("last_transition_time", omitempty=True)
    active_instances: int = go("active_instances", 0)
    affected_instances: int = go("affected_instances", 0)
    resource_kind: str = go("resource_kind", "")


@dataclass
class ServiceDeploymentSummary:
    """The ``deployment`` a service carries with ``?include=deployment``."""

    state: str = go("state", "")
    reason: str = go("reason", "", omitempty=True)
    last_transition_time: str | None = go("last_transition_time", omitempty=True)
    active_instances: int = go("active_instances", 0)
    affected_instances: int = go("affected_instances", 0)
    resource_kind: str = go("resource_kind", "", omitempty=True)

    @classmethod
    def of(cls, status: ServiceDeploymentStatus) -> ServiceDeploymentSummary:
        """deployment.go deploymentSummaryFromStatus."""
        return cls(
            status.state,
            status.reason,
            status.last_transition_time,
            status.active_instances,
            status.affected_instances,
            status.resource_kind,
        )


@dataclass
class DeploymentLogEntry:
    timestamp: str = go("timestamp", "", omitempty=True)
    message: str = go("message", "")


@dataclass
class DeploymentLogStream:
    service_name: str = go("service_name", "")
    available: bool = go("available", False)
    message: str = go("message", "", omitempty=True)
    entries: list[DeploymentLogEntry] | None = go("entries")
