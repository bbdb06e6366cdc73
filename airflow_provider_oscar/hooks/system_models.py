"""Typed answers of OSCAR's bucket, system-log, metrics and federation routes.

Shapes from grycap/oscar: ``utils.MinIOBucket`` (``pkg/utils/minio.go``) and
``buckets.PresignResponse`` (``pkg/handlers/buckets/presign_bucket.go``), ``executionLogEntry``
(``pkg/handlers/logs.go``, v3.6.5), ``pkg/types/metrics.go`` (v4.0.0), ``types.Replica`` and
``types.FederationResponse`` (``pkg/types/replica.go``, v4.1.0). Every ``from_api`` reads what
the cluster sent leniently (a missing field is empty), so a newer release's extra fields pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "BreakdownRow",
    "Bucket",
    "ExecutionLogEntry",
    "Federation",
    "FederationMember",
    "MetricSource",
    "MetricValue",
    "MetricsBreakdown",
    "MetricsSummary",
    "PresignedUrl",
    "ServiceMetrics",
    "go_time",
]

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def go_time(value: Any) -> datetime | None:
    """A Go ``time.Time`` as JSON (RFC 3339, up to nanoseconds) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00"), count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _mapping(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a JSON list (anything else: none)."""
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# buckets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """A bucket as ``/system/buckets`` describes it.

    ``visibility`` is ``private``, ``restricted``, ``public``, or ``""`` when the bucket has no
    OSCAR policy (buckets the admin creates, and buckets made outside OSCAR). ``used_bytes`` and
    ``object_count`` come from OSCAR 4.1 on (``None`` before).
    """

    name: str
    visibility: str
    allowed_users: tuple[str, ...] = ()
    owner: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    used_bytes: int | None = None
    object_count: int | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Bucket:
        has_usage = isinstance(data.get("storage_usage"), Mapping)
        usage = _object(data.get("storage_usage"))
        return cls(
            str(data.get("bucket_name") or ""),
            str(data.get("visibility") or ""),
            _strings(data.get("allowed_users")),
            str(data.get("owner") or ""),
            _mapping(data.get("metadata")),
            _int(usage.get("used_bytes")) if has_usage else None,
            _int(usage.get("objects")) if has_usage else None,
        )


@dataclass(frozen=True)
class PresignedUrl:
    """``POST /system/buckets/{bucket}/presign``'s answer: send ``method`` to ``url`` (with
    ``headers``, which are part of the signature) before ``expires_at``."""

    object_key: str
    operation: str
    method: str
    url: str
    expires_at: datetime | None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> PresignedUrl:
        return cls(
            str(data.get("object_key") or ""),
            str(data.get("operation") or ""),
            str(data.get("method") or ""),
            str(data.get("url") or ""),
            go_time(data.get("expires_at")),
            _mapping(data.get("headers")),
        )


# system logs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionLogEntry:
    """One ``/run`` or ``/job`` request of OSCAR's own log (``GET /system/logs``)."""

    timestamp: str
    status: int
    latency: str
    client_ip: str
    method: str
    path: str
    user: str
    raw: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExecutionLogEntry:
        text = {k: str(data.get(k) or "") for k in ("timestamp", "latency", "client_ip")}
        return cls(
            text["timestamp"],
            _int(data.get("status")),
            text["latency"],
            text["client_ip"],
            str(data.get("method") or ""),
            str(data.get("path") or ""),
            str(data.get("user") or ""),
            str(data.get("raw") or ""),
        )


# metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSource:
    """Where a figure came from and whether that source answered (``ok``, ``missing`` ...)."""

    name: str
    status: str
    notes: str = ""

    @classmethod
    def all_from(cls, value: Any) -> tuple[MetricSource, ...]:
        return tuple(
            cls(str(r.get("name") or ""), str(r.get("status") or ""), str(r.get("notes") or ""))
            for r in _rows(value)
        )


@dataclass(frozen=True)
class MetricValue:
    """One metric of one service over the time range."""

    metric: str
    value: float
    unit: str = ""
    sources: tuple[MetricSource, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MetricValue:
        return cls(
            str(data.get("metric") or ""),
            _float(data.get("value")),
            str(data.get("unit") or ""),
            MetricSource.all_from(data.get("sources")),
        )


@dataclass(frozen=True)
class MetricsSummary:
    """``GET /system/metrics``: the cluster's totals over ``start`` .. ``end``.

    ``countries`` maps a country to its request count.
    """

    start: datetime | None
    end: datetime | None
    services_active: int
    services_total: int
    cpu_hours: float
    gpu_hours: float
    requests_total: int
    requests_sync: int
    requests_async: int
    requests_exposed: int
    users: tuple[str, ...]
    users_count: int
    countries: dict[str, int]
    sources: tuple[MetricSource, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MetricsSummary:
        totals = _object(data.get("totals"))
        return cls(
            go_time(data.get("start")),
            go_time(data.get("end")),
            _int(totals.get("services_count_active")),
            _int(totals.get("services_count_total")),
            _float(totals.get("cpu_hours_total")),
            _float(totals.get("gpu_hours_total")),
            _int(totals.get("requests_count_total")),
            _int(totals.get("requests_count_sync")),
            _int(totals.get("requests_count_async")),
            _int(totals.get("requests_count_exposed")),
            _strings(totals.get("users")),
            _int(totals.get("users_count")),
            _countries(totals.get("countries")),
            MetricSource.all_from(data.get("sources")),
        )


def _countries(value: Any) -> dict[str, int]:
    return {str(r.get("country") or ""): _int(r.get("request_count")) for r in _rows(value)}


@dataclass(frozen=True)
class BreakdownRow:
    """One item of ``GET /system/metrics/breakdown``: a service, user or country.

    ``executions`` counts a user's or country's executions; the ``requests_*`` figures are a
    service's; ``users`` is filled only when asked for (services, JSON).
    """

    key: str
    membership: str = ""
    executions: int = 0
    requests_total: int = 0
    requests_sync: int = 0
    requests_async: int = 0
    requests_exposed: int = 0
    unique_users: int = 0
    users: tuple[str, ...] = ()
    countries: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BreakdownRow:
        return cls(
            str(data.get("key") or ""),
            str(data.get("membership") or ""),
            _int(data.get("executions_count")),
            _int(data.get("requests_count_total")),
            _int(data.get("requests_count_sync")),
            _int(data.get("requests_count_async")),
            _int(data.get("requests_count_exposed")),
            _int(data.get("unique_users_count")),
            _strings(data.get("users")),
            _countries(data.get("countries")),
        )


@dataclass(frozen=True)
class MetricsBreakdown:
    """``GET /system/metrics/breakdown`` as JSON."""

    start: datetime | None
    end: datetime | None
    group_by: str
    rows: tuple[BreakdownRow, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MetricsBreakdown:
        return cls(
            go_time(data.get("start")),
            go_time(data.get("end")),
            str(data.get("group_by") or ""),
            tuple(BreakdownRow.from_api(i) for i in _rows(data.get("items"))),
        )


@dataclass(frozen=True)
class ServiceMetrics:
    """``GET /system/metrics/{service}``: every per-service metric, by metric key."""

    service: str
    start: datetime | None
    end: datetime | None
    metrics: dict[str, MetricValue]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ServiceMetrics:
        values = [MetricValue.from_api(r) for r in _rows(data.get("metrics"))]
        return cls(
            str(data.get("service_name") or ""),
            go_time(data.get("start")),
            go_time(data.get("end")),
            {v.metric: v for v in values},
        )


# federation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FederationMember:
    """A replica of a service (``types.Replica``): where OSCAR delegates jobs it cannot run.

    ``type`` ``oscar`` is the service ``service_name`` on the cluster ``cluster_id`` (a key of
    the service's ``clusters``); ``endpoint`` is any ``url`` that takes the job's event.
    Members are tried by ``priority``, lowest first; 101 and above is never delegated to.
    """

    type: str = "oscar"
    cluster_id: str = ""
    service_name: str = ""
    url: str = ""
    ssl_verify: bool = True
    priority: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FederationMember:
        return cls(
            str(data.get("type") or ""),
            str(data.get("cluster_id") or ""),
            str(data.get("service_name") or ""),
            str(data.get("url") or ""),
            bool(data.get("ssl_verify")),
            _int(data.get("priority")),
            _mapping(data.get("headers")),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "cluster_id": self.cluster_id,
            "service_name": self.service_name,
            "url": self.url,
            "ssl_verify": self.ssl_verify,
            "priority": self.priority,
            "headers": dict(self.headers) or None,
        }

    def same_as(self, other: FederationMember) -> bool:
        """federation.go ``sameReplica``: type (any case), cluster and service name."""
        return (
            self.type.lower() == other.type.lower()
            and self.cluster_id == other.cluster_id
            and self.service_name == other.service_name
        )

    def describe(self) -> str:
        where = self.url if self.type.lower() == "endpoint" else f"{self.cluster_id}"
        return f"{self.type} member {self.service_name or '-'}@{where}"


@dataclass(frozen=True)
class Federation:
    """A service's federation: ``topology`` (``none``, ``star``, ``mesh``) and its members.

    ``warnings`` holds what OSCAR said when the change was stored but could not be propagated
    to every member (``Updated with federation warnings: ...``).
    """

    topology: str
    members: tuple[FederationMember, ...] = ()
    warnings: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Federation:
        return cls(
            str(data.get("topology") or "none"),
            tuple(FederationMember.from_api(r) for r in _rows(data.get("members"))),
        )
