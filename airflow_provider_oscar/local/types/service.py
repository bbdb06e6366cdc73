"""pkg/types/service.go: an OSCAR service, field for field at each release."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.cluster import Cluster
from airflow_provider_oscar.local.types.deployment import ServiceDeploymentSummary
from airflow_provider_oscar.local.types.federation import Federation
from airflow_provider_oscar.local.types.gojson import go
from airflow_provider_oscar.local.types.replica import Replica
from airflow_provider_oscar.local.types.storage import StorageIOConfig, StorageProviders

V4_0, V4_1 = Release.of("v4.0.0"), Release.of("v4.1.0")
DEFAULT_OWNER = "cluster_admin"  # types.DefaultOwner
SERVICE_LABEL = "oscar_service"  # types.ServiceLabel
USER_SERVICE_LABEL = "oscar.grycap/user-service"  # types.OscarUserServiceLabel (v4.0.0)
JOB_OWNER_LABEL = "oscar.grycap/job-owner"  # types.JobOwnerExecutionAnnotation
LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass
class Synchronous:
    """``Synchronous struct{...}``: Knative's autoscaling bounds."""

    GO_ANONYMOUS = True
    min_scale: int = go("min_scale", 0)
    max_scale: int = go("max_scale", 0)


@dataclass
class Environment:
    """``Environment struct{...}``: ``Vars`` and ``Secrets``."""

    GO_ANONYMOUS = True
    variables: dict[str, str] | None = go("variables")
    secrets: dict[str, str] | None = go("secrets")


@dataclass
class Expose:
    """An exposed service's Deployment (``api_port`` and ``nodePort`` became lists in v4.1.0)."""

    min_scale: int = go("min_scale", 0, go_type="int32")
    max_scale: int = go("max_scale", 0, go_type="int32")
    api_port: int = go("api_port", 0, omitempty=True, until=V4_1)
    api_ports: list[int] | None = go("api_port", omitempty=True, since=V4_1)
    cpu_threshold: int = go("cpu_threshold", 0, go_type="int32")
    rewrite_target: bool = go("rewrite_target", False)
    node_port: int = go("nodePort", 0, go_type="int32", until=V4_1)
    node_ports: list[int] | None = go("nodePort", omitempty=True, since=V4_1)
    default_command: bool = go("default_command", False)
    set_auth: bool = go("set_auth", False)
    auth_type: str = go("auth_type", "", omitempty=True, since=V4_1)
    health_path: str = go("health_path", "")
    probe_mode: str = go("probe_mode", "", omitempty=True, since=V4_0)

    @property
    def exposed(self) -> bool:
        """Whether OSCAR deploys it as an exposed service (a port is set)."""
        return bool(self.api_ports[0] if self.api_ports else self.api_port)


@dataclass
class ServiceVolumeConfig:
    name: str = go("name", "", omitempty=True)
    size: str = go("size", "")
    mount_path: str = go("mount_path", "")
    lifecycle_policy: str = go("lifecycle_policy", "", omitempty=True)


@dataclass
class ServiceVolumeStatus:
    enabled: bool = go("enabled", False)
    name: str = go("name", "", omitempty=True)
    phase: str = go("phase", "", omitempty=True)
    error: str = go("error", "", omitempty=True)


@dataclass
class KserveInference:
    model_format: str = go("model_format", "", omitempty=True)
    runtime: str = go("runtime", "", omitempty=True)


@dataclass
class KserveLLMInference:
    runtime_image: str = go("runtime_image", "", omitempty=True)


@dataclass
class Kserve:
    type: str = go("type", "", omitempty=True)
    inference: KserveInference | None = go("inference", omitempty=True)
    llm_inference: KserveLLMInference | None = go("llm_inference", omitempty=True)
    storage_uri: str = go("storage_uri", "")
    api_version: str = go("api_version", "", omitempty=True)
    min_scale: int = go("min_scale", 0, omitempty=True, go_type="int32")
    max_scale: int = go("max_scale", 0, omitempty=True, go_type="int32")
    cpu: str = go("cpu", "")
    memory: str = go("memory", "")
    args: list[str] | None = go("args", omitempty=True)
    env: dict[str, str] | None = go("env", omitempty=True)
    enable_gpu: bool = go("enable_gpu", False, omitempty=True)
    set_auth: bool = go("set_auth", False, omitempty=True)


@dataclass
class Service:
    """``types.Service``: what ``/system/services`` takes and answers."""

    name: str = go("name", "", required=True, max_len=39, min_len=1)
    cluster_id: str = go("cluster_id", "")
    memory: str = go("memory", "")
    cpu: str = go("cpu", "")
    total_memory: str = go("total_memory", "")
    total_cpu: str = go("total_cpu", "")
    ephemeral_storage_request: str = go("ephemeral_storage_request", "", since=V4_1)
    enable_gpu: bool = go("enable_gpu", False)
    enable_sgx: bool = go("enable_sgx", False)
    image_prefetch: bool = go("image_prefetch", False)
    synchronous: Synchronous = go("synchronous", factory=Synchronous)
    replicas: list[Replica] | None = go("replicas", omitempty=True, until=V4_1)
    delegation: str = go("delegation", "", until=V4_1)
    rescheduler_threshold: int = go("rescheduler_threshold", 0, until=V4_1)
    federation: Federation | None = go("federation", omitempty=True, since=V4_1)
    log_level: str = go("log_level", "")
    image: str = go("image", "", required=True)
    alpine: bool = go("alpine", False)
    token: str = go("token", "")
    file_stage_in: bool = go("file_stage_in", False)
    input: list[StorageIOConfig] | None = go("input")
    output: list[StorageIOConfig] | None = go("output")
    script: str = go("script", "", omitempty=True, required=True)
    image_pull_secrets: list[str] | None = go("image_pull_secrets", omitempty=True)
    expose: Expose = go("expose", factory=Expose)
    environment: Environment = go("environment", factory=Environment)
    annotations: dict[str, str] | None = go("annotations")
    vo: str = go("vo", "")
    labels: dict[str, str] | None = go("labels")
    storage_providers: StorageProviders | None = go("storage_providers", omitempty=True)
    clusters: dict[str, Cluster] | None = go("clusters", omitempty=True)
    owner: str = go("owner", "")
    namespace: str = go("namespace", "", omitempty=True)
    interlink_node_name: str = go("interlink_node_name", "")
    visibility: str = go("visibility", "")
    allowed_users: list[str] | None = go("allowed_users")
    isolation_level: str = go("isolation_level", "")
    bucket_list: list[str] | None = go("bucket_list")
    mount: StorageIOConfig = go("mount", factory=StorageIOConfig)
    volume: ServiceVolumeConfig | None = go("volume", omitempty=True, since=V4_0)
    volume_status: ServiceVolumeStatus = go(
        "volume_status", factory=ServiceVolumeStatus, omitempty=True, since=V4_0
    )
    deployment: ServiceDeploymentSummary | None = go("deployment", omitempty=True, since=V4_0)
    kserve: Kserve | None = go("kserve", omitempty=True, since=V4_1)

    def storage(self) -> list[StorageIOConfig]:
        """The ``input`` and ``output`` entries."""
        return [*(self.input or []), *(self.output or [])]

    def minio_buckets(self) -> list[str]:
        """The buckets OSCAR creates on its own MinIO for the input and output paths."""
        names: list[str] = []
        for io in self.storage():
            default = io.provider_type == "minio" and io.provider_id == "default"
            if default and io.bucket and io.bucket not in names:
                names.append(io.bucket)
        return names
