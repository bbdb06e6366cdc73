"""pkg/types/config.go: the cluster's configuration, and what ``/system/config`` shows of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.gojson import go
from airflow_provider_oscar.local.types.storage import MinIOProvider


def parse_string_slice(text: str) -> list[str]:
    """config.go parseStringSlice: split on commas and trim; ``""`` gives ``[""]``."""
    return [part.strip() for part in text.split(",")]


@dataclass
class Config:
    """``types.Config``; the JSON-visible fields, then what the emulator needs internally."""

    name: str = go("name", "oscar")
    namespace: str = go("namespace", "oscar")
    services_namespace: str = go("services_namespace", "oscar-svc")
    controller_service_account: str = go("controller_service_account", "oscar-sa")
    gpu_available: bool = go("gpu_available", False)
    interlink_available: bool = go("interLink_available", False)
    serverless_backend: str = go("serverless_backend", "knative", omitempty=True)
    yunikorn_enable: bool = go("yunikorn_enable", False)
    kueue_enable: bool = go("kueue_enable", False, since=Release.of("v3.7.0"))
    volume_enable: bool = go("volume_enable", False, since=Release.of("v4.0.0"))
    oidc_groups: list[str] | None = go("oidc_groups", factory=lambda: parse_string_slice(""))
    minio_quota_enabled: bool = go("minio_quota_enabled", False, since=Release.of("v4.1.0"))
    # json:"-" fields the emulator uses
    oidc_enable: bool = False
    oidc_issuers: list[str] = field(default_factory=lambda: parse_string_slice(""))
    users_admin: list[str] = field(default_factory=list)
    job_listing_limit: int = 70  # JOB_LISTING_LIMIT
    kueue_default_cpu: str = "2"  # KUEUE_DEFAULT_CPU, the per-user ClusterQueue quota
    kueue_default_memory: str = "2Gi"  # KUEUE_DEFAULT_MEMORY
    write_timeout: float = 300.0  # WRITE_TIMEOUT (seconds)

    def flags(self) -> dict[str, bool]:
        """The switches ``main.go`` registers routes by."""
        return {
            "serverless_backend": bool(self.serverless_backend),
            "kueue_enable": self.kueue_enable,
            "volume_enable": self.volume_enable,
        }


@dataclass
class ConfigForUser:
    """``/system/config``; ``allowed_image_repositories`` from v4.0.0 (a handler struct before)."""

    config: Config | None = go("config")
    minio_provider: MinIOProvider | None = go("minio_provider")
    allowed_image_repositories: list[str] | None = go(
        "allowed_image_repositories", since=Release.of("v4.0.0")
    )
