"""deployment.go (v4.0.0): ``/system/services/:serviceName/deployment[/logs]``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, text
from airflow_provider_oscar.local.rules import is_label_value, may_use
from airflow_provider_oscar.local.types.deployment import (
    DeploymentLogEntry,
    DeploymentLogStream,
)
from airflow_provider_oscar.local.types.service import Service

FORBIDDEN = "You do not have permission to access this service"


def register(app: FastAPI, ctx: Context) -> None:
    def authorized(name: str, request: Request) -> Service | Response:
        """validateServiceName, then getAuthorizedService; an unknown service is 403 too (its
        404 status is overwritten before anything is written)."""
        caller = ctx.system_caller(request)
        name = name.strip()
        if not name:
            return text("serviceName is required", 400)
        if not is_label_value(name):
            return text("invalid serviceName", 400)
        service = ctx.state.read_service(name)
        if service is None or not (caller.admin or may_use(service, caller.subject, ctx.profile)):
            return text(FORBIDDEN, 403)
        return service

    @app.get("/system/services/{name}/deployment")
    async def deployment(name: str, request: Request) -> Response:
        service = authorized(name, request)
        if isinstance(service, Response):
            return service
        return ctx.json(ctx.cluster.deployment(service))

    @app.get("/system/services/{name}/deployment/logs")
    async def deployment_logs(name: str, request: Request) -> Response:
        """MakeGetDeploymentLogsHandler: the Knative pods' container logs (the embedded pods
        print nothing before a request, unless a failing revision was injected)."""
        service = authorized(name, request)
        if isinstance(service, Response):
            return service
        status = ctx.cluster.deployment(service)
        stream = DeploymentLogStream(service.name, entries=[])
        lines = ctx.cluster.deployment_logs(service)
        if status.active_instances == 0:
            stream.message = "Deployment logs are unavailable for this service."
        elif not lines:
            stream.message = "Deployment logs are not yet available."
        else:
            stamps = request.query_params.get("timestamps", "").lower() in ("true", "1", "t")
            stamp = status.last_transition_time or "" if stamps else ""
            stream.available = True
            stream.entries = [DeploymentLogEntry(stamp, line) for line in lines[-1000:]]
        return ctx.json(stream)
