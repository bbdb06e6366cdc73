"""pkg/types/metrics.go (v4.0.0) and the breakdown shapes of pkg/handlers/metrics.go."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go

METRIC_KEYS = (
    "services-count",
    "cpu-hours",
    "gpu-hours",
    "requests-sync-per-service",
    "requests-async-per-service",
    "requests-exposed-per-service",
    "requests-per-user",
    "users-per-service",
    "countries-count",
    "countries-list",
)
SERVICE_METRICS = (  # metrics.go loadAllServiceMetrics
    "cpu-hours",
    "gpu-hours",
    "requests-sync-per-service",
    "requests-async-per-service",
    "requests-exposed-per-service",
    "users-per-service",
)


@dataclass
class SourceStatus:
    name: str = go("name", "")
    status: str = go("status", "")
    last_updated: str | None = go("last_updated", omitempty=True)
    notes: str = go("notes", "", omitempty=True)


@dataclass
class CountryCount:
    country: str = go("country", "")
    request_count: int = go("request_count", 0)


@dataclass
class MetricValueResponse:
    service_id: str = go("service_id", "")
    metric: str = go("metric", "")
    start: str = go("start", "")
    end: str = go("end", "")
    value: float = go("value", 0.0)
    unit: str = go("unit", "", omitempty=True)
    sources: list[SourceStatus] = go("sources", factory=list)


@dataclass
class ServiceMetricValue:
    metric: str = go("metric", "")
    value: float = go("value", 0.0)
    unit: str = go("unit", "", omitempty=True)
    sources: list[SourceStatus] = go("sources", factory=list)


@dataclass
class ServiceMetricsResponse:
    service_name: str = go("service_name", "")
    start: str = go("start", "")
    end: str = go("end", "")
    metrics: list[ServiceMetricValue] = go("metrics", factory=list)


@dataclass
class SummaryTotals:
    services_count_active: int = go("services_count_active", 0)
    services_count_total: int = go("services_count_total", 0)
    cpu_hours_total: float = go("cpu_hours_total", 0.0)
    gpu_hours_total: float = go("gpu_hours_total", 0.0)
    requests_count_total: int = go("requests_count_total", 0)
    requests_count_sync: int = go("requests_count_sync", 0)
    requests_count_async: int = go("requests_count_async", 0)
    requests_count_exposed: int = go("requests_count_exposed", 0)
    countries_count: int = go("countries_count", 0)
    countries: list[CountryCount] | None = go("countries")
    users_count: int = go("users_count", 0)
    users: list[str] | None = go("users")


@dataclass
class MetricsSummaryResponse:
    start: str = go("start", "")
    end: str = go("end", "")
    totals: SummaryTotals = go("totals", factory=SummaryTotals)
    sources: list[SourceStatus] = go("sources", factory=list)


@dataclass
class BreakdownItem:
    """``types.BreakdownItem`` (the ``country`` breakdown's items)."""

    key: str = go("key", "")
    membership: str = go("membership", "", omitempty=True)
    executions_count: int = go("executions_count", 0, omitempty=True)
    requests_count_total: int = go("requests_count_total", 0, omitempty=True)
    requests_count_sync: int = go("requests_count_sync", 0, omitempty=True)
    requests_count_async: int = go("requests_count_async", 0, omitempty=True)
    requests_count_exposed: int = go("requests_count_exposed", 0, omitempty=True)
    unique_users_count: int = go("unique_users_count", 0)
    users: list[str] | None = go("users", omitempty=True)
    countries: list[CountryCount] = go("countries", factory=list)


@dataclass
class UserBreakdownItem:
    key: str = go("key", "")
    membership: str = go("membership", "", omitempty=True)
    executions_count: int = go("executions_count", 0)
    countries: list[CountryCount] = go("countries", factory=list)


@dataclass
class ServiceBreakdownItem:
    key: str = go("key", "")
    membership: str = go("membership", "", omitempty=True)
    requests_count_total: int = go("requests_count_total", 0)
    requests_count_sync: int = go("requests_count_sync", 0)
    requests_count_async: int = go("requests_count_async", 0)
    requests_count_exposed: int = go("requests_count_exposed", 0)
    unique_users_count: int = go("unique_users_count", 0)
    users: list[str] | None = go("users", omitempty=True)
    countries: list[CountryCount] = go("countries", factory=list)


@dataclass
class BreakdownResponse:
    start: str = go("start", "")
    end: str = go("end", "")
    group_by: str = go("group_by", "")
    items: list[object] = go("items", factory=list)
