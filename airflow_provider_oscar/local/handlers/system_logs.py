"""logs.go ``MakeGetSystemLogsHandler`` (v3.6.5): ``GET /system/logs``, the ``/run`` and
``/job`` requests of OSCAR's own pod log (:mod:`..executions`) as JSON.

Basic auth only: an OIDC caller is refused unless listed in ``USERS_ADMIN``. The log is read as
``kubectl logs`` reads it: ``timestamps=true`` prefixes each line with the time Kubernetes
received it (which ``parseExecutionLogs`` then reads as part of the line), ``previous=true``
asks for a previous container, which the OSCAR pod never had.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.executions import parse_execution_logs, rfc3339_nano
from airflow_provider_oscar.local.handlers.common import Context, struct_json, text

POD = "oscar-7c9f8d6b54-q2kzt"  # the OSCAR pod the handler reads (the newest with app=oscar)


def register(app: FastAPI, ctx: Context) -> None:
    @app.get("/system/logs")
    async def system_logs(request: Request) -> Response:
        caller = ctx.system_caller(request)
        if not caller.admin and caller.subject not in ctx.config.users_admin:
            return text("OIDC tokens are not allowed for system logs", 403)
        timestamps = go_bool(request.query_params.get("timestamps", "false"))
        if go_bool(request.query_params.get("previous", "false")):
            container = ctx.config.name
            return text(
                f'previous terminated container "{container}" in pod "{POD}" not found', 400
            )
        rfc3339 = ctx.profile.since("v4.0.0")
        lines = []
        for execution in ctx.cluster.executions.entries():
            line = execution.line(rfc3339)
            lines.append(f"{rfc3339_nano(execution.end)} {line}" if timestamps else line)
        entries = parse_execution_logs(lines, rfc3339)
        return struct_json({"logs": [entry.to_api() for entry in entries]})


def go_bool(value: str) -> bool:
    """strconv.ParseBool, a failure read as false."""
    return value in ("1", "t", "T", "TRUE", "true", "True")
