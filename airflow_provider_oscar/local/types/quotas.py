"""pkg/types/quotas.go (v4.0.0; v3.7.x kept these types in pkg/handlers/quotas.go, with string
``max``/``used``): what ``/system/quotas/user`` reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.gojson import go

V4_1 = Release.of("v4.1.0")


@dataclass
class QuotaValues:
    """``int64`` from v4.0.0 (millicores for ``cpu``, bytes otherwise); v3.7.x's quotaValues
    held each Quantity's ``String()``."""

    max: int | str = go("max", 0)
    used: int | str = go("used", 0)


@dataclass
class VolumeQuotaValues:
    max: str = go("max", "")
    used: str = go("used", "")


@dataclass
class VolumeQuotaResponse:
    disk: VolumeQuotaValues = go("disk", factory=VolumeQuotaValues)
    volumes: VolumeQuotaValues = go("volumes", factory=VolumeQuotaValues)
    max_disk_per_volume: str = go("max_disk_per_volume", "")
    min_disk_per_volume: str = go("min_disk_per_volume", "")


@dataclass
class MinIOBucketCountQuota:
    max: int = go("max", 0)
    used: int = go("used", 0)


@dataclass
class MinIOStoragePerBucketQuota:
    max: str = go("max", "")


@dataclass
class MinIOStorageTotalUsage:
    used: str = go("used", "")


@dataclass
class MinIOQuotaResponse:
    buckets: MinIOBucketCountQuota = go("buckets", factory=MinIOBucketCountQuota)
    storage_per_bucket: MinIOStoragePerBucketQuota = go(
        "storage_per_bucket", factory=MinIOStoragePerBucketQuota
    )
    storage_total: MinIOStorageTotalUsage = go("storage_total", factory=MinIOStorageTotalUsage)


@dataclass
class QuotaResponse:
    """v3.7.x's quotaResponse always had ``cluster_queue`` and ``resources``."""

    user_id: str = go("user_id", "")
    cluster_queue: str = go("cluster_queue", "", omitempty=True)
    resources: dict[str, QuotaValues] | None = go("resources", omitempty=True)
    volumes: VolumeQuotaResponse | None = go("volumes", omitempty=True)
    minio: MinIOQuotaResponse | None = go("minio", omitempty=True, since=V4_1)


@dataclass
class QuotaResponseV37:
    user_id: str = go("user_id", "")
    cluster_queue: str = go("cluster_queue", "")
    resources: dict[str, QuotaValues] | None = go("resources")


@dataclass
class VolumeQuotaUpdate:
    disk: str = go("disk", "", omitempty=True)
    volumes: str = go("volumes", "", omitempty=True)
    max_disk_per_volume: str = go("max_disk_per_volume", "", omitempty=True)
    min_disk_per_volume: str = go("min_disk_per_volume", "", omitempty=True)


@dataclass
class MinIOQuotaUpdate:
    buckets: str = go("buckets", "", omitempty=True)
    storage_per_bucket: str = go("storage_per_bucket", "", omitempty=True)


@dataclass
class QuotaUpdateRequest:
    """``volumes`` from v4.0.0 (the route is v3.7.0's ``quotaUpdateRequest`` before)."""

    cpu: str = go("cpu", "")
    memory: str = go("memory", "")
    ephemeral_storage: str = go("ephemeral_storage", "", since=V4_1)
    gpu: str = go("gpu", "", omitempty=True, since=V4_1)
    volumes: VolumeQuotaUpdate | None = go("volumes", omitempty=True, since=Release.of("v4.0.0"))
    minio: MinIOQuotaUpdate | None = go("minio", omitempty=True, since=V4_1)
