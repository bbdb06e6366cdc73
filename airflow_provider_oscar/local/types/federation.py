"""pkg/types/federation.go (v4.1.0): a service's federation network."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go
from airflow_provider_oscar.local.types.replica import Replica


@dataclass
class Federation:
    group_id: str = go("group_id", "")
    topology: str = go("topology", "")
    delegation: str = go("delegation", "", omitempty=True)
    rescheduler_threshold: int = go("rescheduler_threshold", 0, omitempty=True)
    members: list[Replica] | None = go("members", omitempty=True)
