"""federation.go (v4.1.0): ``/system/federation/:serviceName``, a service's replicas.

No check beyond the ``/system`` authentication: any caller reads and changes any service's
members. A change is stored as it is (the backend's ``UpdateService``, no bucket or token
work), then, when the service has members, propagated to them with the caller's credentials
(``ExpandFederation`` with PUT): failures answer 200 ``Updated with federation warnings``.
``delete: true`` also deletes the local services named like the removed members.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local import federation
from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import NotFound
from airflow_provider_oscar.local.types.federation import (
    Federation,
    FederationRequest,
    FederationResponse,
)
from airflow_provider_oscar.local.types.gojson import GoJSONError, decode, parse
from airflow_provider_oscar.local.types.replica import Replica
from airflow_provider_oscar.local.types.service import Service

Mutator = Callable[[Service, FederationRequest], None]


def register(app: FastAPI, ctx: Context) -> None:
    def answer(service: Service) -> Response:
        current = service.federation
        topology = current.topology if current and current.topology else "none"
        members = list(current.members) if current and current.members else None
        return ctx.json(FederationResponse(topology, members))

    async def change(name: str, request: Request, mutate: Mutator) -> Response:
        """``updateFederationFromRequest``."""
        caller = ctx.system_caller(request)
        try:
            raw = await ctx.body(request, ctx.settings.max_body_bytes)
            body = decode(FederationRequest, parse(raw), ctx.profile.release)
        except GoJSONError as exc:
            return text(f"Invalid payload: {exc}", 400)
        service = ctx.state.read_service(name)
        if service is None:
            return empty(404)
        if body.clusters is not None:
            service.clusters = {**(service.clusters or {}), **body.clusters}
        if body.storage_providers is not None:
            service.storage_providers = body.storage_providers
        if service.federation is None:
            service.federation = Federation()
        mutate(service, body)
        ctx.state.replace_service(service)
        if federation.members(service):
            refresh = ctx.cluster.provisioning.refresh_token(service)
            if not refresh:
                message = f'secrets "{service.name}" not found'
                if ctx.state.secrets_of(service.name):
                    message = 'refresh-token secret missing key "refresh_token"'
                return text(f"error reading refresh-token secret: {message}", 500)
            errors = await asyncio.to_thread(
                federation.expand,
                service,
                caller.authorization,
                "PUT",
                refresh,
                ctx.profile.release,
            )
            if errors:
                return text(
                    f"Updated with federation warnings: {federation.go_errors(errors)}", 200
                )
        return answer(service)

    @app.get("/system/federation/{name}")
    async def read(name: str, request: Request) -> Response:
        ctx.system_caller(request)
        service = ctx.state.read_service(name)
        return answer(service) if service is not None else empty(404)

    @app.post("/system/federation/{name}")
    async def add(name: str, request: Request) -> Response:
        def mutate(service: Service, body: FederationRequest) -> None:
            assert service.federation is not None
            service.federation.members = [
                *(service.federation.members or []),
                *(body.members or []),
            ]

        return await change(name, request, mutate)

    @app.put("/system/federation/{name}")
    async def update(name: str, request: Request) -> Response:
        def mutate(service: Service, body: FederationRequest) -> None:
            assert service.federation is not None
            current = service.federation.members or []
            for target in body.members or []:
                for i, replica in enumerate(current):
                    if _same(replica, target) and body.update:
                        current[i] = body.update[0]

        return await change(name, request, mutate)

    @app.delete("/system/federation/{name}")
    async def remove(name: str, request: Request) -> Response:
        def mutate(service: Service, body: FederationRequest) -> None:
            assert service.federation is not None
            if body.delete:
                for member in body.members or []:
                    if member.service_name:
                        with contextlib.suppress(NotFound):  # logged
                            ctx.state.remove_service(member.service_name)
            gone = body.members or []
            kept = [
                r for r in service.federation.members or [] if not any(_same(r, g) for g in gone)
            ]
            service.federation.members = kept or None

        return await change(name, request, mutate)


def _same(a: Replica, b: Replica) -> bool:
    """federation.go ``sameReplica``."""
    return (
        a.type.lower() == b.type.lower()
        and a.cluster_id == b.cluster_id
        and a.service_name == b.service_name
    )
