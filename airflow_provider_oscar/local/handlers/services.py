"""create.go, read.go, update.go, delete.go, list.go: ``/system/services``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import Invalid, is_label_value, may_see
from airflow_provider_oscar.local.types.deployment import ServiceDeploymentSummary
from airflow_provider_oscar.local.types.gojson import GoJSONError, binding_errors, decode, parse
from airflow_provider_oscar.local.types.service import Service, ServiceVolumeStatus


def register(app: FastAPI, ctx: Context) -> None:
    async def service_body(request: Request) -> Service:
        """c.ShouldBindJSON(&service): Go's decoding, then the ``binding`` rules."""
        raw = await ctx.body(request, ctx.settings.max_body_bytes)
        try:
            service = decode(Service, parse(raw), ctx.profile.release)
        except GoJSONError as exc:
            raise Invalid(f"The service specification is not valid: {exc}") from None
        failures = binding_errors(service, ctx.profile.release)
        if failures:
            raise Invalid(f"The service specification is not valid: {chr(10).join(failures)}")
        return service

    def shown(service: Service, include: str | None) -> Service:
        """read.go/list.go (v4.0.0): setVolumeStatus, and the summary with ?include=deployment."""
        service.volume_status = ServiceVolumeStatus(enabled=service.volume is not None)
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
        await ctx.cluster.create_service(await service_body(request), caller)
        return empty(201)

    @app.put("/system/services")
    async def update_service(request: Request) -> Response:
        caller = ctx.system_caller(request)
        await ctx.cluster.update_service(await service_body(request), caller)
        return empty(204)

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
        await ctx.cluster.delete_service(name, ctx.system_caller(request))
        return empty(204)
