"""An exposed service's Kubernetes Deployment, for its state and lifecycle (v4.1.0
``pkg/handlers/lifecycle.go``, ``deployment.go`` ``deploymentStatusFromDeployment``).

The embedded OSCAR runs no exposed service's server: it keeps the Deployment's replicas and
lifecycle annotations, and its pods are taken to be available as soon as they are wanted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from airflow_provider_oscar.local.types.deployment import (
    KIND_EXPOSED,
    READY,
    STOPPED,
    ServiceDeploymentStatus,
)
from airflow_provider_oscar.local.types.service import Service


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ExposedDeployment:
    """``<service>-dpl``: desired replicas and the lifecycle annotations."""

    replicas: int
    annotations: dict[str, str] = field(default_factory=dict)
    restarted_at: str = ""
    changed: datetime = field(default_factory=_now)


class ExposedDeployments:
    """The Deployments of the exposed services, created with their first use."""

    def __init__(self) -> None:
        self._by_service: dict[str, ExposedDeployment] = {}
        self._lock = threading.Lock()

    def _get(self, service: Service) -> ExposedDeployment:
        with self._lock:
            found = self._by_service.get(service.name)
            if found is None:
                found = ExposedDeployment(max(service.expose.min_scale, 1))
                self._by_service[service.name] = found
            return found

    def forget(self, name: str) -> None:
        with self._lock:
            self._by_service.pop(name, None)

    def status(self, service: Service, namespace: str) -> ServiceDeploymentStatus:
        """``deploymentStatusFromDeployment`` with every wanted pod available."""
        deployment = self._get(service)
        desired = max(deployment.replicas, 0)
        state, reason = (
            (STOPPED, "Deployment is stopped.")
            if desired == 0
            else (
                READY,
                "Deployment is ready.",
            )
        )
        since = deployment.changed.strftime("%Y-%m-%dT%H:%M:%SZ")
        return ServiceDeploymentStatus(
            service.name, namespace, state, reason, since, desired, 0, KIND_EXPOSED
        )

    def stop(self, service: Service) -> None:
        """``stopExposedService``: replicas to 0, the previous count kept in an annotation."""
        deployment = self._get(service)
        if deployment.replicas > 0:
            deployment.annotations["oscar.grycap.io/previous-replicas"] = str(deployment.replicas)
        deployment.annotations["oscar.grycap.io/stopped"] = "true"
        deployment.replicas, deployment.changed = 0, _now()

    def start(self, service: Service) -> None:
        """``startExposedService``: the previous count, else ``min_scale``, else 1."""
        deployment = self._get(service)
        previous = deployment.annotations.get("oscar.grycap.io/previous-replicas", "")
        count = int(previous) if previous.isdigit() and int(previous) > 0 else 0
        deployment.replicas = count or service.expose.min_scale or 1
        deployment.annotations["oscar.grycap.io/stopped"] = "false"
        deployment.changed = _now()

    def restart(self, service: Service) -> None:
        """``restartExposedService``: a new ``restarted-at`` on the pod template."""
        deployment = self._get(service)
        deployment.restarted_at = _now().isoformat()
