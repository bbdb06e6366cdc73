"""job.go: ``POST /job/:serviceName`` creates a Kubernetes Job; 201 with an empty body."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.cluster import event_principal
from airflow_provider_oscar.local.handlers.common import Context, empty, invocation_target
from airflow_provider_oscar.local.rules import Forbidden, StateError, job_name

DELEGATION_HEADER = "X-Delegated-Job-ID"
ETCD_OBJECT_LIMIT = 1536 * 1024  # etcd's request limit (1.5 MiB): the Job carries the event


def register(app: FastAPI, ctx: Context) -> None:
    @app.post("/job/{name}")
    async def job(name: str, request: Request) -> Response:
        service, subject = await invocation_target(ctx, request, name)
        if (
            subject is not None
            and ctx.profile.oidc_job_needs_minio_user
            and not ctx.state.has_minio_user(subject)
        ):
            raise Forbidden(
                f"MinIO user not provisioned for {subject}; submit a direct request first"
            )
        event = await ctx.body(request, ctx.settings.max_job_body_bytes)
        if len(event) > ETCD_OBJECT_LIMIT:
            raise StateError("etcdserver: request is too large")
        delegated = request.headers.get(DELEGATION_HEADER) if ctx.profile.delegated_job_id else None
        owner = event_principal(event) or (subject[:62] if subject else None)
        ctx.cluster.submit(service, event, owner, delegated or job_name(service.name))
        return empty(201)
