"""volumes.go (v4.0.0, with ``VOLUME_ENABLE``): ``/system/volumes`` CRUD of the caller's managed
volumes: the admin's in the services namespace, an OIDC user's in their own namespace, under
their volume quota."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import (
    VOLUME_NAME_RULE,
    VOLUME_SIZE_RULE,
    StateError,
    format_uid,
    is_dns_label,
    positive_quantity,
)
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER
from airflow_provider_oscar.local.types.volume import CREATION_API, ManagedVolumeCreateRequest
from airflow_provider_oscar.local.volumes import Attached, KubeAlreadyExists, KubeNotFound


def register(app: FastAPI, ctx: Context) -> None:
    volumes = ctx.cluster.volumes

    def caller_of(request: Request) -> tuple[str, str]:
        """``resolveVolumeCaller``: (namespace, owner); an OIDC caller's namespace is made."""
        caller = ctx.system_caller(request)
        if caller.admin:
            return volumes.services_namespace, DEFAULT_OWNER
        return volumes.ensure_namespace(caller.subject), caller.subject

    @app.get("/system/volumes")
    async def list_volumes(request: Request) -> Response:
        namespace, _ = caller_of(request)
        return ctx.json(volumes.listed(namespace))

    @app.post("/system/volumes")
    async def create_volume(request: Request) -> Response:
        ctx.system_caller(request)  # the /system group's auth middleware runs first
        wanted = await ctx.bind(
            request, ManagedVolumeCreateRequest, "The volume specification is not valid"
        )
        wanted.name, wanted.size = wanted.name.strip(), wanted.size.strip()
        if not is_dns_label(wanted.name):
            return text(VOLUME_NAME_RULE, 400)
        if not positive_quantity(wanted.size):
            return text(VOLUME_SIZE_RULE, 400)
        namespace, owner = caller_of(request)
        if owner != DEFAULT_OWNER:
            try:
                volumes.check_quota(format_uid(owner), namespace, wanted.size)
            except StateError as exc:  # any error of ValidateManagedVolumeQuota is a 400
                return text(exc.text, 400)
        try:
            volumes.create(namespace, owner, wanted.name, wanted.size, CREATION_API)
        except KubeAlreadyExists:
            return text("volume already exists in caller namespace", 409)
        return ctx.json(volumes.get(namespace, wanted.name), 201)

    @app.get("/system/volumes/{name}")
    async def read_volume(name: str, request: Request) -> Response:
        namespace, _ = caller_of(request)
        try:
            return ctx.json(volumes.get(namespace, name))
        except KubeNotFound:
            return empty(404)

    @app.delete("/system/volumes/{name}")
    async def delete_volume(name: str, request: Request) -> Response:
        """A volume a service attaches is refused; one that does not exist is no error."""
        namespace, _ = caller_of(request)
        try:
            volumes.delete(namespace, name, force=False)
        except Attached as exc:
            return text(exc.text, 400)
        return empty(204)
