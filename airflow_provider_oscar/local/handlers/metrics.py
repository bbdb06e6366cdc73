"""metrics.go (v4.0.0): ``/system/metrics``, ``/system/metrics/breakdown``,
``/system/metrics/:serviceName``, over :mod:`..metrics`.

Errors are JSON ``{"error": ...}``; an OIDC caller sees only the services it may use
(service_access.go ``listAuthorizedServicesForMetrics``). The value route reads the service
first (404, or 403 for an OIDC caller who may not use it): always at v4.0.0, for OIDC callers
only from v4.1.0. ``format=csv`` writes the breakdown as Go's ``encoding/csv`` does.
"""

from __future__ import annotations

import csv
import io

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.executions import go_time
from airflow_provider_oscar.local.handlers.common import Context, empty, struct_json
from airflow_provider_oscar.local.metrics import (
    Aggregator,
    Group,
    MetricsError,
    countries,
    parse_time_range,
)
from airflow_provider_oscar.local.rules import may_see
from airflow_provider_oscar.local.state import Caller
from airflow_provider_oscar.local.types.metrics import (
    METRIC_KEYS,
    SERVICE_METRICS,
    BreakdownItem,
    BreakdownResponse,
    ServiceBreakdownItem,
    ServiceMetricsResponse,
    ServiceMetricValue,
    UserBreakdownItem,
)


def register(app: FastAPI, ctx: Context) -> None:
    def aggregator(caller: Caller) -> Aggregator:
        services = ctx.state.list_services(Caller("", admin=True))
        allowed = None
        if not caller.admin:
            allowed = {s.name for s in services if may_see(s, caller.subject)}
        lines = [e.line(True) for e in ctx.cluster.executions.entries()]
        return Aggregator([s.name for s in services], lines, allowed)

    def error(text: str, status: int = 400) -> Response:
        return struct_json({"error": text}, status)

    @app.get("/system/metrics")
    async def summary(request: Request) -> Response:
        caller = ctx.system_caller(request)
        try:
            start, end = parse_time_range(_q(request, "start"), _q(request, "end"))
        except MetricsError as exc:
            return error(str(exc))
        return ctx.json(aggregator(caller).summary(start, end))

    @app.get("/system/metrics/breakdown")
    async def breakdown(request: Request) -> Response:
        caller = ctx.system_caller(request)
        try:
            start, end = parse_time_range(_q(request, "start"), _q(request, "end"))
        except MetricsError as exc:
            return error(str(exc))
        group_by = _q(request, "group_by").strip()
        if not group_by:
            return error("group_by is required")
        fmt = (request.query_params.get("format") or "json").strip().lower()
        if fmt not in ("json", "csv"):
            return error("invalid format")
        include_users = _q(request, "include_users", "false").strip().lower() == "true"
        try:
            groups = aggregator(caller).breakdown(start, end, group_by)
        except MetricsError as exc:
            return error(str(exc))
        how = group_by.lower()
        if fmt == "csv":
            if how == "service" and include_users:
                return error("include_users is not supported for csv")
            body = _csv(how, groups)
            return Response(body, 200, media_type="text/csv")
        answer = BreakdownResponse(go_time(start), go_time(end), group_by)
        answer.items = [_item(how, key, group, include_users) for key, group in groups.items()]
        return ctx.json(answer)

    @app.get("/system/metrics/{name}")
    async def value(name: str, request: Request) -> Response:
        caller = ctx.system_caller(request)
        name = name.strip()
        if not caller.admin or not ctx.profile.since("v4.1.0"):
            service = ctx.state.read_service(name)
            if service is None:
                return empty(404)
            if not caller.admin and not may_see(service, caller.subject):
                return empty(403)
        try:
            start, end = parse_time_range(_q(request, "start"), _q(request, "end"))
        except MetricsError as exc:
            return error(str(exc))
        metrics = aggregator(caller)
        metric = _q(request, "metric").strip()
        if not metric:
            answer = ServiceMetricsResponse(name, go_time(start), go_time(end))
            for key in SERVICE_METRICS:
                one = metrics.metric_value(start, end, name, key)
                answer.metrics.append(
                    ServiceMetricValue(one.metric, one.value, one.unit, one.sources)
                )
            return ctx.json(answer)
        if metric not in METRIC_KEYS:
            return error("invalid metric key")
        try:
            return ctx.json(metrics.metric_value(start, end, name, metric))
        except MetricsError as exc:
            return error(str(exc))


def _q(request: Request, name: str, default: str = "") -> str:
    return request.query_params.get(name, default)


def _item(how: str, key: str, group: Group, include_users: bool) -> object:
    if how == "user":
        return UserBreakdownItem(
            key, group.membership, group.executions, countries(group.countries)
        )
    if how == "service":
        return ServiceBreakdownItem(
            key,
            "",
            group.sync + group.async_,
            group.sync,
            group.async_,
            group.exposed,
            len(group.users),
            sorted(group.users) if include_users else None,
            countries(group.countries),
        )
    return BreakdownItem(
        key,
        executions_count=group.executions,
        unique_users_count=len(group.users),
        countries=countries(group.countries),
    )


def _csv(how: str, groups: dict[str, Group]) -> bytes:
    """metrics.go ``renderBreakdownCSV``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if how == "user":
        writer.writerow(["key", "membership", "executions_count", "countries"])
    elif how == "service":
        writer.writerow(
            [
                "key",
                "membership",
                "requests_count_total",
                "requests_count_sync",
                "requests_count_async",
                "requests_count_exposed",
                "unique_users_count",
                "countries",
            ]
        )
    else:
        writer.writerow(
            ["key", "membership", "executions_count", "unique_users_count", "countries"]
        )
    for key, group in groups.items():
        places = "|".join(f"{c.country}:{c.request_count}" for c in countries(group.countries))
        if how == "user":
            writer.writerow([key, group.membership, group.executions, places])
        elif how == "service":
            total = group.sync + group.async_
            row = [key, "", total, group.sync, group.async_, group.exposed, len(group.users)]
            writer.writerow([*row, places])
        else:
            writer.writerow([key, "", group.executions, len(group.users), places])
    return out.getvalue().encode()
