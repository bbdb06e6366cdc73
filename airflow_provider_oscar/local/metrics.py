"""grycap/oscar ``pkg/metrics`` (v4.0.0): the metrics aggregator over the sources a cluster
without Loki has (``sources.go`` ``DefaultSources``).

- service inventory: the services (``BackendServiceInventorySource``);
- usage: Prometheus at its default address, which the embedded cluster does not run, so
  ``missing`` (``PrometheusUsageMetricsSource``);
- request logs: OSCAR's own pod log, its ``[GIN-EXECUTIONS-LOGGER]`` lines
  (``KubeRequestLogSource``, ``parseGinExecutionLog``); exposed-service logs: the ingress
  controller's pods, of which there are none;
- no user roster (membership ``unknown``), countries from the records (none: ``unknown``).

An OIDC caller's aggregator is scoped to the services it may use (``ScopeSources``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_provider_oscar.local.executions import PREFIX, go_time, parse_rfc3339
from airflow_provider_oscar.local.types.metrics import (
    CountryCount,
    MetricsSummaryResponse,
    MetricValueResponse,
    SourceStatus,
)

PROMETHEUS = "http://prometheus-server.monitoring.svc.cluster.local"
_UNREACHABLE = (
    f'Post "{PROMETHEUS}/api/v1/query": dial tcp: lookup prometheus-server.monitoring.svc'
    ".cluster.local: no such host"
)
UNSUPPORTED = "unsupported metric for value query"


class MetricsError(ValueError):
    """An aggregation request the aggregator refuses (``{"error": ...}`` with 400)."""


@dataclass(frozen=True)
class RequestRecord:
    """``metrics.RequestRecord`` of one ``/run`` or ``/job`` request."""

    service_id: str
    user_id: str
    type: str  # "sync" or "async"
    timestamp: datetime
    country: str = ""


@dataclass
class Group:
    """What a breakdown counts for one key."""

    executions: int = 0
    sync: int = 0
    async_: int = 0
    exposed: int = 0
    users: set[str] = field(default_factory=set)
    countries: dict[str, int] = field(default_factory=dict)
    membership: str = ""


def parse_gin_execution_log(line: str) -> RequestRecord | None:
    """``parseGinExecutionLog``: RFC 3339 times only, a client IP required."""
    at = line.find(PREFIX)
    payload = line[at + len(PREFIX) :].strip() if at >= 0 else line.strip()
    parts = payload.split("|")
    if len(parts) < 6:
        return None
    try:
        moment = parse_rfc3339(parts[0])
    except ValueError:
        return None
    fields = parts[4].split()
    path = fields[-1].strip('"').split("?", 1)[0] if len(fields) > 1 else ""
    if not path or not parts[3].strip():
        return None
    service, kind = "", ""
    for prefix, which in (("/job/", "async"), ("/run/", "sync")):
        if path.startswith(prefix):
            service, kind = path[len(prefix) :], which
    return RequestRecord(service, parts[5].strip(), kind, moment.astimezone(timezone.utc))


class Aggregator:
    """``metrics.Aggregator`` over one cluster's services and pod log.

    ``allowed`` scopes it to those services (an OIDC caller's); ``None`` sees everything.
    """

    def __init__(
        self, services: list[str], log_lines: list[str], allowed: set[str] | None = None
    ) -> None:
        self.allowed = allowed
        self.services = [s for s in services if allowed is None or s in allowed]
        self.log_lines = log_lines

    # sources --------------------------------------------------------------------------------

    def requests(self, start: datetime, end: datetime, service: str = "") -> list[RequestRecord]:
        found = []
        for line in self.log_lines:
            record = parse_gin_execution_log(line)
            if record is None or record.timestamp < start or record.timestamp > end:
                continue
            if service and record.service_id != service:
                continue
            if self.allowed is not None and record.service_id not in self.allowed:
                continue
            found.append(record)
        return found

    @staticmethod
    def _usage_status(start: datetime, end: datetime) -> SourceStatus:
        if (end - start).total_seconds() < 1:
            return SourceStatus("prometheus", "missing", notes="invalid time range")
        return SourceStatus("prometheus", "missing", notes=f"{_UNREACHABLE}; {_UNREACHABLE}")

    # aggregations ---------------------------------------------------------------------------

    def metric_value(
        self, start: datetime, end: datetime, service: str, metric: str
    ) -> MetricValueResponse:
        """``Aggregator.MetricValue``."""
        answer = MetricValueResponse(service, metric, go_time(start), go_time(end))
        if metric in ("cpu-hours", "gpu-hours"):
            answer.sources.append(self._usage_status(start, end))
            answer.unit = "hours"
        elif metric in (
            "requests-sync-per-service",
            "requests-async-per-service",
            "users-per-service",
        ):
            records = self.requests(start, end, service)
            answer.sources.append(SourceStatus("request-logs", "ok"))
            if metric == "users-per-service":
                answer.value = float(len({r.user_id for r in records if r.user_id}))
            else:
                kind = "sync" if "sync" in metric and "async" not in metric else "async"
                answer.value = float(sum(1 for r in records if r.type == kind))
        elif metric == "requests-exposed-per-service":
            answer.sources.append(SourceStatus("exposed-request-logs", "ok"))
        else:
            raise MetricsError(UNSUPPORTED)
        return answer

    def summary(self, start: datetime, end: datetime) -> MetricsSummaryResponse:
        """``Aggregator.Summary``."""
        answer = MetricsSummaryResponse(go_time(start), go_time(end))
        answer.sources.append(SourceStatus("service-inventory", "ok"))
        totals = answer.totals
        totals.services_count_active = len(self.services)
        if self.allowed is None or self.services:
            answer.sources.append(self._usage_status(start, end))
        else:
            answer.sources.append(SourceStatus("usage-metrics", "ok"))
        records = self.requests(start, end)
        answer.sources.append(SourceStatus("request-logs", "ok"))
        if records:
            totals.requests_count_total = len(records)
            totals.requests_count_sync = sum(1 for r in records if r.type == "sync")
            totals.requests_count_async = sum(1 for r in records if r.type == "async")
            users = sorted({r.user_id for r in records if r.user_id})
            totals.users_count, totals.users = len(users), users
            totals.countries_count, totals.countries = 0, []
            answer.sources.append(SourceStatus("country-attribution", "ok"))
        answer.sources.append(SourceStatus("exposed-request-logs", "ok"))
        totals.services_count_total = len({r.service_id for r in records if r.service_id})
        return answer

    def breakdown(self, start: datetime, end: datetime, group_by: str) -> dict[str, Group]:
        """``Aggregator.Breakdown``: the groups, keyed and sorted."""
        records = self.requests(start, end)
        groups: dict[str, Group] = {}
        how = group_by.lower()
        if how not in ("service", "user", "country"):
            raise MetricsError("unsupported group_by")
        for record in records:
            if how == "service":
                group = groups.setdefault(record.service_id, Group())
                group.sync += record.type == "sync"
                group.async_ += record.type == "async"
                if record.user_id:
                    group.users.add(record.user_id)
            elif how == "user":
                group = groups.setdefault(record.user_id, Group())
                group.membership = group.membership or "unknown"  # no roster, no auth method
            else:
                group = groups.setdefault(record.country or "unknown", Group())
                if record.user_id:
                    group.users.add(record.user_id)
            group.executions += 1
            if record.country and record.country.lower() != "unknown":
                group.countries[record.country] = group.countries.get(record.country, 0) + 1
        if how == "country":
            for key, group in groups.items():
                group.countries = {key: group.executions}
        return dict(sorted(groups.items()))


def countries(counts: dict[str, int]) -> list[CountryCount]:
    return [CountryCount(k, v) for k, v in sorted(counts.items())]


def parse_time_range(
    start: str, end: str, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """metrics.go ``parseTimeRange``: RFC 3339, the last 24 hours by default."""
    moment_end = now or datetime.now(timezone.utc)
    if end.strip():
        try:
            moment_end = parse_rfc3339(end)
        except ValueError:
            raise MetricsError("invalid end timestamp") from None
    moment_start = moment_end - timedelta(hours=24)
    if start.strip():
        try:
            moment_start = parse_rfc3339(start)
        except ValueError:
            raise MetricsError("invalid start timestamp") from None
    if moment_end < moment_start:
        raise MetricsError("end must be after start")
    return moment_start, moment_end
