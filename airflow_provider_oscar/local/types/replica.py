"""pkg/types/replica.go: where a service re-sends events it cannot run."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go


@dataclass
class Replica:
    type: str = go("type", "")
    cluster_id: str = go("cluster_id", "")
    service_name: str = go("service_name", "")
    url: str = go("url", "")
    ssl_verify: bool = go("ssl_verify", False)
    priority: int = go("priority", 0, go_type="uint")
    headers: dict[str, str] | None = go("headers")
