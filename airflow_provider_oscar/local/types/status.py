"""pkg/types/status.go (handlers/status.go NewStatusInfo at v3.6.5): ``/system/status``.

CPU figures are millicores (``Quantity.MilliValue``), memory in bytes; v4.0.0 adds the
schedulable totals and the per-node requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.gojson import go

V4_0 = Release.of("v4.0.0")


@dataclass
class CPUMetrics:
    total_free_cores: int = go("total_free_cores", 0)
    max_free_on_node_cores: int = go("max_free_on_node_cores", 0)
    total_schedulable_cores: int = go("total_schedulable_cores", 0, since=V4_0)
    max_schedulable_on_node_cores: int = go("total_schedulable_on_node_cores", 0, since=V4_0)


@dataclass
class MemoryMetrics:
    total_free_bytes: int = go("total_free_bytes", 0)
    max_free_on_node_bytes: int = go("max_free_on_node_bytes", 0)
    total_schedulable_bytes: int = go("total_schedulable_bytes", 0, since=V4_0)
    max_schedulable_on_node_bytes: int = go("max_schedulable_on_node_bytes", 0, since=V4_0)


@dataclass
class GPUMetrics:
    total_gpu: int = go("total_gpu", 0)


@dataclass
class ClusterMetrics:
    cpu: CPUMetrics = go("cpu", factory=CPUMetrics)
    memory: MemoryMetrics = go("memory", factory=MemoryMetrics)
    gpu: GPUMetrics = go("gpu", factory=GPUMetrics)


@dataclass
class NodeResource:
    capacity_cores: int = go("capacity_cores", 0, omitempty=True)
    usage_cores: int = go("usage_cores", 0, omitempty=True)
    request_cores: int = go("request_cores", 0, omitempty=True, since=V4_0)
    capacity_bytes: int = go("capacity_bytes", 0, omitempty=True)
    usage_bytes: int = go("usage_bytes", 0, omitempty=True)
    request_bytes: int = go("request_bytes", 0, omitempty=True, since=V4_0)


@dataclass
class NodeConditionSimple:
    type: str = go("type", "")
    status: bool = go("status", False)


@dataclass
class NodeDetail:
    name: str = go("name", "")
    cpu: NodeResource = go("cpu", factory=NodeResource)
    memory: NodeResource = go("memory", factory=NodeResource)
    gpu: int = go("gpu", 0)
    is_interlink: bool = go("is_interlink", False)
    status: str = go("status", "")
    conditions: list[NodeConditionSimple] | None = go("conditions")


@dataclass
class ClusterInfo:
    nodes_count: int = go("nodes_count", 0)
    metrics: ClusterMetrics = go("metrics", factory=ClusterMetrics)
    nodes: list[NodeDetail] | None = go("nodes")


@dataclass
class OscarDeployment:
    available_replicas: int = go("available_replicas", 0)
    ready_replicas: int = go("ready_replicas", 0)
    replicas: int = go("replicas", 0)
    creation_timestamp: str | None = go("creation_timestamp")
    strategy: str = go("strategy", "")
    labels: dict[str, str] | None = go("labels")


@dataclass
class PodStates:
    total: int = go("total", 0)
    states: dict[str, int] | None = go("states", factory=dict)


@dataclass
class OIDCInfo:
    enabled: bool = go("enabled", False)
    issuers: list[str] | None = go("issuers")
    groups: list[str] | None = go("groups")


@dataclass
class OscarInfo:
    deployment_name: str = go("deployment_name", "")
    ready: bool = go("ready", False)
    deployment: OscarDeployment = go("deployment", factory=OscarDeployment)
    jobs_count: int = go("jobs_count", 0)
    pods: PodStates = go("pods", factory=PodStates)
    oidc: OIDCInfo = go("oidc", factory=OIDCInfo)


@dataclass
class MinioInfo:
    buckets_count: int = go("buckets_count", 0)
    total_objects: int = go("total_objects", 0)


@dataclass
class StatusInfo:
    cluster: ClusterInfo = go("cluster", factory=ClusterInfo)
    oscar: OscarInfo = go("oscar", factory=OscarInfo)
    minio: MinioInfo = go("minio", factory=MinioInfo)


POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
