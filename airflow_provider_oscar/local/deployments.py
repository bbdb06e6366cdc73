"""A Knative or pod-backed service's deployment status, as grycap/oscar v4.0.0+
``pkg/handlers/deployment.go`` reads it (``inspectDeploymentRuntime``)."""

from __future__ import annotations

from datetime import datetime

from airflow_provider_oscar.local.faults import DeploymentFault
from airflow_provider_oscar.local.state import utc_now
from airflow_provider_oscar.local.types.deployment import (
    FAILED,
    KIND_KNATIVE,
    KIND_UNAVAILABLE,
    PENDING,
    READY,
    UNAVAILABLE,
    ServiceDeploymentStatus,
)
from airflow_provider_oscar.local.types.service import Service


def pod_backed_status(service: Service, namespace: str) -> ServiceDeploymentStatus:
    """``inspectPodBackedDeploymentRuntime``: no serverless backend, nothing to report."""
    return ServiceDeploymentStatus(
        service.name,
        namespace,
        UNAVAILABLE,
        "Current deployment visibility is unavailable for this service runtime.",
        resource_kind=KIND_UNAVAILABLE,
    )


def knative_status(
    service: Service,
    namespace: str,
    *,
    created: datetime,
    pods: int,
    fault: DeploymentFault | None,
    deploy_delay: float,
) -> ServiceDeploymentStatus:
    """``deploymentStatusFromKnativeService``: ready once the revision is, with its pods (at
    least ``min_scale``); an injected fault plays a revision that is not ``Ready``."""
    since = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    instances = max(pods, service.synchronous.min_scale)
    if fault is not None:  # Ready=False
        total = max(instances, 1)  # the crashing pods are current
        affected = total if fault.state == FAILED else max(1, total // 2)
        if fault.state != FAILED:
            total = max(total, affected + 1)
        return ServiceDeploymentStatus(
            service.name, namespace, fault.state, fault.reason, since, total, affected, KIND_KNATIVE
        )
    if (utc_now() - created).total_seconds() < deploy_delay:
        reason = f'Configuration "{service.name}" is waiting for a Revision to become ready.'
        return ServiceDeploymentStatus(
            service.name, namespace, PENDING, reason, since, 0, 0, KIND_KNATIVE
        )
    return ServiceDeploymentStatus(
        service.name,
        namespace,
        READY,
        "Runtime service is ready.",
        since,
        instances,
        0,
        KIND_KNATIVE,
    )
