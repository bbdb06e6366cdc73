"""pkg/types/federation.go and replica.go (v4.1.0): a service's federation network and what
the federation API takes and answers."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.cluster import Cluster
from airflow_provider_oscar.local.types.gojson import go
from airflow_provider_oscar.local.types.replica import Replica
from airflow_provider_oscar.local.types.storage import StorageProviders


@dataclass
class Federation:
    group_id: str = go("group_id", "")
    topology: str = go("topology", "")
    delegation: str = go("delegation", "", omitempty=True)
    rescheduler_threshold: int = go("rescheduler_threshold", 0, omitempty=True)
    members: list[Replica] | None = go("members", omitempty=True)


@dataclass
class FederationResponse:
    topology: str = go("topology", "")
    members: list[Replica] | None = go("members")


@dataclass
class FederationRequest:
    members: list[Replica] | None = go("members")
    update: list[Replica] | None = go("update", omitempty=True)
    clusters: dict[str, Cluster] | None = go("clusters", omitempty=True)
    storage_providers: StorageProviders | None = go("storage_providers", omitempty=True)
    delete: bool = go("delete", False, omitempty=True)
