"""quotas.go: ``/system/quotas/user`` (the caller's own, OIDC only), ``/system/quotas/user/:userId``
(read and ``PUT`` by the admin). Every release from v3.7.0 registers them; from v4.0.0 only with
Kueue or volumes enabled (``main.go``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, text
from airflow_provider_oscar.local.quotas import has_volume_update
from airflow_provider_oscar.local.rules import Invalid
from airflow_provider_oscar.local.types.quotas import QuotaUpdateRequest


def register(app: FastAPI, ctx: Context) -> None:
    quotas = ctx.cluster.quotas
    profile = ctx.profile

    @app.get("/system/quotas/user")
    async def own_quota(request: Request) -> Response:
        caller = ctx.system_caller(request)
        if caller.admin:  # Basic auth sets no uidOrigin: auth.GetUIDFromContext fails
            return text("missing user identificator: missing user identificator", 401)
        return ctx.json(quotas.fetch(caller.subject))

    @app.get("/system/quotas/user/{user}")
    async def user_quota(user: str, request: Request) -> Response:
        if not ctx.system_caller(request).admin:  # c.GetString(gin.AuthUserKey) != cfg.Username
            return text("forbidden", 403)
        return ctx.json(quotas.fetch(user))

    @app.put("/system/quotas/user/{user}")
    async def update_quota(user: str, request: Request) -> Response:
        if not ctx.system_caller(request).admin:
            return text("forbidden", 403)
        try:
            wanted = await ctx.bind(request, QuotaUpdateRequest, "invalid payload")
        except Invalid as exc:
            if profile.quotas_as_quantities:  # v3.7.x's struct was handlers.quotaUpdateRequest
                old_name = exc.text.replace(" QuotaUpdateRequest.", " quotaUpdateRequest.")
                raise Invalid(old_name) from None
            raise
        volumes = wanted.volumes is not None and has_volume_update(wanted.volumes)
        minio = wanted.minio is not None and bool(
            wanted.minio.buckets or wanted.minio.storage_per_bucket
        )
        if not (wanted.cpu or wanted.memory or wanted.ephemeral_storage or volumes or minio):
            if profile.quota_storage_and_minio:
                needed = "cpu, memory, ephemeral_storage, volumes or minio"
            elif profile.quotas_as_quantities:
                needed = "cpu or memory"
            else:
                needed = "cpu, memory or volumes"
            return text(f"{needed} must be provided", 400)
        quotas.update(user, wanted)
        return ctx.json(quotas.fetch(user))
