"""job.go: ``POST /job/:serviceName`` creates a Kubernetes Job; 201 with an empty body.

The same handler takes MinIO's webhook deliveries (the cluster calls :func:`accept` in-process
with the token the webhook was registered with), so they are logged and counted alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import (
    Context,
    Origin,
    empty,
    invocation_target,
    logged,
)
from airflow_provider_oscar.local.rules import Forbidden, StateError, format_uid, job_name

DELEGATION_HEADER = "X-Delegated-Job-ID"
ETCD_OBJECT_LIMIT = 1536 * 1024  # etcd's request limit (1.5 MiB): the Job carries the event


def register(app: FastAPI, ctx: Context) -> None:
    async def accept(
        name: str,
        authorization: str,
        body: Callable[[], Awaitable[bytes]],
        delegated: str | None,
        origin: Origin,
    ) -> Response:
        service, subject = await invocation_target(ctx, authorization, name, origin)
        if subject is not None:
            origin.user = format_uid(subject)
            if ctx.profile.oidc_job_needs_minio_user and not ctx.cluster.minio.iam.user_exists(
                subject
            ):
                raise Forbidden(
                    f"MinIO user not provisioned for {subject}; submit a direct request first"
                )
        event = await body()
        if len(event) > ETCD_OBJECT_LIMIT:
            raise StateError("etcdserver: request is too large")
        decoded = decode_event(event)
        if decoded is None:
            origin.user = subject if subject is not None else "nil"
            owner, who = (format_uid(subject)[:62] if subject else None), subject or ""
        else:
            principal, origin.ip = decoded
            origin.user = principal
            owner, who = format_uid(principal)[:62], principal
        provisioning = ctx.cluster.provisioning
        store = provisioning.job_store(service, who)
        if ctx.profile.since("v4.1.0"):
            uid = origin.user or ""
            origin_store = await asyncio.to_thread(
                provisioning.origin_store, service, authorization, uid
            )
            store = origin_store or store
        if not ctx.profile.delegated_job_id:
            delegated = None
        name = delegated or job_name(service.name)
        if await ctx.cluster.delegated(service, event, name, authorization):
            return empty(201)  # a member cluster took it
        ctx.cluster.submit(service, event, owner, name, store)
        return empty(201)

    async def webhook(name: str, authorization: str, event: bytes) -> Response:
        origin = Origin()

        async def body() -> bytes:
            return event

        call = accept(name, authorization, body, None, origin)
        return await logged(ctx, f"/job/{name}", "127.0.0.1", origin, call)

    ctx.cluster.job_endpoint = webhook

    @app.post("/job/{name}")
    async def job(name: str, request: Request) -> Response:
        origin = Origin()
        client = request.client.host if request.client else ""

        async def body() -> bytes:
            return await ctx.body(request, ctx.settings.max_job_body_bytes)

        authorization = request.headers.get("authorization", "")
        delegated = request.headers.get(DELEGATION_HEADER)
        call = accept(name, authorization, body, delegated, origin)
        return await logged(ctx, f"/job/{name}", client, origin, call)


def decode_event(event: bytes) -> tuple[str, str] | None:
    """job.go ``decodeEventBytes``: the principal and source IP of a MinIO event, ``None``
    when the body is not a JSON object with a ``Records`` list. A record missing either
    (a type assertion panics; the deferred recover returns empty values) gives ``("", "")``."""
    try:
        decoded = json.loads(event)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("Records"), list):
        return None
    try:
        parameters = decoded["Records"][0]["requestParameters"]
        principal, source = parameters["principalId"], parameters["sourceIPAddress"]
    except (IndexError, KeyError, TypeError):
        return "", ""
    if not isinstance(principal, str):
        return "", ""
    return principal, source if isinstance(source, str) else ""
