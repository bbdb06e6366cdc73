"""lifecycle.go (v4.1.0): ``POST /system/services/:serviceName/{stop,start,restart}`` of an
exposed service; the answer is its Deployment's state (``stopped`` once stopped)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import is_label_value
from airflow_provider_oscar.local.types.service import Service


def register(app: FastAPI, ctx: Context) -> None:
    deployments = ctx.cluster.exposed

    def lifecycle(name: str, request: Request, action: Callable[[Service], None]) -> Response:
        caller = ctx.system_caller(request)
        name = name.strip()
        if not name:
            return text("serviceName is required", 400)
        if not is_label_value(name):
            return text("invalid serviceName", 400)
        service = ctx.state.read_service(name)
        if service is None:
            return empty(404)
        if not caller.admin and service.owner != caller.subject:
            denied = f"User {caller.subject} doesn't have permission to manage this service"
            return text(denied, 403)
        if not service.expose.api_ports:
            return text(f'service "{service.name}" is not exposed', 400)
        action(service)
        namespace = service.namespace or ctx.config.services_namespace
        return ctx.json(deployments.status(service, namespace))

    @app.post("/system/services/{name}/stop")
    async def stop(name: str, request: Request) -> Response:
        return lifecycle(name, request, deployments.stop)

    @app.post("/system/services/{name}/start")
    async def start(name: str, request: Request) -> Response:
        return lifecycle(name, request, deployments.start)

    @app.post("/system/services/{name}/restart")
    async def restart(name: str, request: Request) -> Response:
        return lifecycle(name, request, deployments.restart)
