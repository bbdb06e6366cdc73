"""run.go: ``POST /run/:serviceName``, proxied to the service's Knative pod (registered only
when the cluster has a serverless backend, main.go)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import (
    ConnectionCut,
    Context,
    invocation_target,
    text,
)


def register(app: FastAPI, ctx: Context) -> None:
    @app.post("/run/{name}")
    async def run(name: str, request: Request) -> Response:
        service, _ = await invocation_target(ctx, request, name)
        if ctx.cluster.kueue_suspends(service) and not await ctx.cluster.workload_admitted(service):
            return text(
                "invalid workload: try to reduce the service resource (cpu, memory, etc.)", 400
            )
        event = await ctx.body(request, ctx.settings.max_body_bytes)
        result = await ctx.cluster.run_sync(service, event)
        if result.cut or result.outcome is None:
            return ConnectionCut()  # http.Server WriteTimeout: nothing reaches the client
        outcome = result.outcome
        if outcome.failed:
            return text(outcome.body.decode(errors="replace"), 500)
        media = request.headers.get("content-type") or "text/plain; charset=utf-8"
        return Response(outcome.body, 200, media_type=media)
