"""pkg/types/cluster.go: another OSCAR cluster a service may delegate to."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go


@dataclass
class Cluster:
    endpoint: str = go("endpoint", "")
    auth_user: str = go("auth_user", "")
    auth_password: str = go("auth_password", "")
    ssl_verify: bool = go("ssl_verify", False)
