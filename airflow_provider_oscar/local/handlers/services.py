"""create.go, read.go, update.go, delete.go, list.go: ``/system/services``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import StateError, is_label_value, may_see
from airflow_provider_oscar.local.service_buckets import Written
from airflow_provider_oscar.local.types.deployment import ServiceDeploymentSummary
from airflow_provider_oscar.local.types.service import Service, ServiceVolumeStatus
from airflow_provider_oscar.local.types.volume import PHASE_ERROR, PHASE_PENDING
from airflow_provider_oscar.local.volumes import Volumes, volume_name


def register(app: FastAPI, ctx: Context) -> None:
    async def service_body(request: Request) -> Service:
        """c.ShouldBindJSON(&service): Go's decoding, then the ``binding`` rules."""
        return await ctx.bind(request, Service, "The service specification is not valid")

    def shown(service: Service, include: str | None) -> Service:
        """read.go/list.go (v4.0.0): setVolumeStatus, and the summary with ?include=deployment."""
        service.volume_status = volume_status(ctx.cluster.volumes, service)
        wanted = (part.strip().lower() for part in (include or "").split(","))
        if "deployment" in wanted:
            service.deployment = ServiceDeploymentSummary.of(ctx.cluster.deployment(service))
        return service

    @app.get("/system/services")
    async def list_services(request: Request) -> Response:
        caller = ctx.system_caller(request)
        include = request.query_params.get("include")
        return ctx.json([shown(s, include) for s in ctx.state.list_services(caller)])

    @app.post("/system/services")
    async def create_service(request: Request) -> Response:
        caller = ctx.system_caller(request)
        written = await ctx.cluster.create_service(await service_body(request), caller)
        return first_written(written, 201)

    @app.put("/system/services")
    async def update_service(request: Request) -> Response:
        caller = ctx.system_caller(request)
        written = await ctx.cluster.update_service(await service_body(request), caller)
        return first_written(written, 204)

    @app.get("/system/services/{name}")
    async def read_service(name: str, request: Request) -> Response:
        caller = ctx.system_caller(request)
        if ctx.profile.validates_service_name_param and not is_label_value(name.strip()):
            return text("invalid serviceName", 400)
        service = ctx.state.read_service(name.strip())
        if service is None:
            return empty(404)
        if caller.admin or may_see(service, caller.subject):
            return ctx.json(shown(service, request.query_params.get("include")))
        if ctx.profile.read_refuses_with_403 or service.visibility not in ("private", "restricted"):
            return text(f"User {caller.subject} doesn't have permision to get this service", 403)
        return empty(200)  # v3.x: the switch falls through and nothing is written

    @app.delete("/system/services/{name}")
    async def delete_service(name: str, request: Request) -> Response:
        written = await ctx.cluster.delete_service(name, ctx.system_caller(request))
        return first_written(written, 204)


def first_written(written: list[Written], status: int) -> Response:
    """Gin keeps the first answer a handler writes; later ones are dropped."""
    if written:
        return text(written[0].text, written[0].status)
    return empty(status)


def volume_status(volumes: Volumes, service: Service) -> ServiceVolumeStatus:
    """read.go ``setVolumeStatus``: the phase of the volume the service attaches."""
    if service.volume is None:
        return ServiceVolumeStatus(enabled=False)
    status = ServiceVolumeStatus(True, volume_name(service), PHASE_PENDING)
    if not service.namespace:
        return status
    try:
        status.phase = volumes.get(service.namespace, volume_name(service)).status.phase
    except StateError as exc:
        status.phase, status.error = PHASE_ERROR, exc.text
    return status
