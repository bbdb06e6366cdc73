"""pkg/handlers/buckets/*.go (v3.6.0; presign from v3.6.4): ``/system/buckets``.

The caller is the admin when its ``Authorization`` has no ``Bearer`` (the handlers split on
it); the admin is ``cfg.Name`` (``oscar``) in create, update and presign, ``cluster_admin`` in
get and delete, and has no uid at all in list. Visibility, owners and members are read back
from MinIO (:mod:`..minio`), never stored apart. Release differences: presign expiries up to
one hour before v4.0.0 and a week after; delete asks for the owner tag from v4.1.0 (before, the
caller's policy or a public bucket sufficed); quotas and usage in the answers from v4.1.0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.minio import (
    PRIVATE,
    PUBLIC,
    RESTRICTED,
    MinIOAdmin,
    MinIOError,
    format_storage,
)
from airflow_provider_oscar.local.minio import MinIOBucket as Bucket
from airflow_provider_oscar.local.rules import page_start
from airflow_provider_oscar.local.s3 import sigv4
from airflow_provider_oscar.local.service_buckets import ServiceBuckets
from airflow_provider_oscar.local.state import Caller
from airflow_provider_oscar.local.types.minio import (
    BucketListResponse,
    MinIOBucket,
    MinIOObject,
    MinIOQuota,
    MinIOUsage,
    PresignRequest,
    PresignResponse,
)
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER

T = TypeVar("T")
CONFIG_NAME = "oscar"  # cfg.Name


def register(app: FastAPI, ctx: Context) -> None:
    admin_client: MinIOAdmin = ctx.cluster.admin
    profile = ctx.profile

    async def blocking(call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    bind = ctx.bind

    def uid_of(caller: Caller, admin_uid: str) -> str:
        return admin_uid if caller.admin else caller.subject

    @app.get("/system/buckets")
    async def list_buckets(request: Request) -> Response:
        """list_bucket.go MakeListHandler: the admin lists every bucket, an OIDC user those
        its MinIO keys may list (none at all: ``[]``)."""
        caller = ctx.system_caller(request)
        uid = uid_of(caller, "")
        if caller.admin:
            names = await blocking(admin_client.bucket_names)
        else:
            keys = ctx.cluster.provisioning.user_keys(uid)
            iam = ctx.cluster.minio.iam
            names = [
                name
                for name in await blocking(admin_client.bucket_names)
                if keys is not None and iam.is_allowed(keys[0], "s3:ListBucket", name)
            ]
            if not names:
                return ctx.json([])
        buckets = [await blocking(_describe, admin_client, name, uid) for name in names]
        if profile.since("v4.1.0"):
            for bucket in buckets:
                await blocking(_enrich, admin_client, bucket)
        return ctx.json(buckets or None)

    @app.post("/system/buckets")
    async def create_bucket(request: Request) -> Response:
        """create_bucket.go MakeCreateHandler."""
        caller = ctx.system_caller(request)
        body = await bind(request, MinIOBucket, "The Bucket specification is not valid")
        uid = uid_of(caller, CONFIG_NAME)
        path = body.bucket_name.strip(" /").split("/", 1)
        try:
            await blocking(admin_client.create_s3_path, path, False)
        except MinIOError as exc:
            return text(f"Error creating bucket with name '{path[0]}': {exc}", 400)
        owner_name = "oscar" if caller.admin else ""  # the OIDC name claim (none here)
        try:
            await blocking(admin_client.set_tags, path[0], {"owner": uid, "owner_name": owner_name})
        except MinIOError as exc:
            return text(f"Error tagging bucket: {exc}", 400)
        bucket = Bucket(body.bucket_name, body.visibility or PRIVATE, body.allowed_users, uid)
        if uid != CONFIG_NAME:
            try:
                await blocking(admin_client.set_policies, bucket)
            except MinIOError as exc:
                return text(f"Error creating policies for bucket: {exc}", 500)
        return empty(201)

    @app.put("/system/buckets")
    async def update_bucket(request: Request) -> Response:
        """update_bucket.go MakeUpdateHandler: only a public bucket or one in the caller's
        policy changes; an absent visibility is neither private nor restricted, so public."""
        caller = ctx.system_caller(request)
        body = await bind(request, MinIOBucket, "The Bucket specification is not valid")
        uid = uid_of(caller, CONFIG_NAME)
        try:
            metadata = await blocking(admin_client.get_tagged_metadata, body.bucket_name)
        except MinIOError:
            return text("Missing bucket metadata: \n", 500)
        if metadata.get("service", "").lower() in ("1", "t", "true"):
            return text("Forbidden action: A bucket from a service can't be modified\n", 403)
        bucket = Bucket(body.bucket_name, body.visibility, body.allowed_users, uid)
        old = await blocking(admin_client.get_current_resource_visibility, bucket)
        if old and (
            old == PUBLIC
            or await blocking(admin_client.resource_in_policy, uid, bucket.bucket_name)
        ):
            try:
                if old != bucket.visibility:
                    previous = Bucket(bucket.bucket_name, old, None, uid)
                    await blocking(admin_client.unset_policies, previous)
                    await blocking(admin_client.set_policies, bucket)
                elif old == RESTRICTED:
                    await blocking(
                        admin_client.update_service_group,
                        bucket.bucket_name,
                        bucket.allowed_users or [],
                    )
            except MinIOError as exc:
                return text(f"error updating bucket: {exc}\n", 500)
        return empty(204)

    @app.get("/system/buckets/{bucket}")
    async def get_bucket(bucket: str, request: Request) -> Response:
        """get_bucket.go MakeGetHandler: a bucket with any visibility is listed to any OIDC
        user (only one without a policy is refused), 70 objects a page."""
        caller = ctx.system_caller(request)
        name = bucket.strip()
        requester = uid_of(caller, DEFAULT_OWNER)
        try:
            metadata = await blocking(admin_client.get_tagged_metadata, name)
        except MinIOError:
            metadata = {}
        owner = metadata.get("owner") or DEFAULT_OWNER
        visibility = await blocking(
            admin_client.get_current_resource_visibility, Bucket(name, owner=owner)
        )
        members = None
        if visibility == RESTRICTED:
            try:
                members = await blocking(admin_client.get_bucket_members, name)
            except MinIOError as exc:
                return text(f"Error retrieving bucket members: {exc}", 500)
        if not caller.admin and visibility == "":
            return text(f"User '{requester}' is not authorised", 403)
        if name not in await blocking(admin_client.bucket_names):
            message = "NoSuchBucket: The specified bucket does not exist"
            return text(f"Error listing objects in bucket '{name}': {message}", 500)
        objects = await blocking(ctx.cluster.store.list, name)
        start = page_start(request.query_params.get("page"))
        limit = ctx.config.job_listing_limit
        chunk = objects[start : start + limit]
        truncated = start + len(chunk) < len(objects)
        answer = BucketListResponse(
            name,
            visibility,
            members,
            owner,
            metadata,
            [MinIOObject(o.key, o.size, last_modified=_go_time(o.last_modified)) for o in chunk],
            next_page=str(start + len(chunk)) if truncated else "",
            is_truncated=truncated,
            returned_items=len(chunk),
        )
        if profile.since("v4.1.0"):
            usage = sum(o.size for o in objects), len(objects)
            answer.storage_quota, answer.storage_usage, answer.attribution = _quota_usage(usage)
        return ctx.json(answer)

    @app.delete("/system/buckets/{bucket}")
    async def delete_bucket(bucket: str, request: Request) -> Response:
        """delete_bucket.go MakeDeleteHandler."""
        caller = ctx.system_caller(request)
        uid = uid_of(caller, DEFAULT_OWNER)
        if bucket not in await blocking(admin_client.bucket_names):
            return text(f"The bucket '{bucket}' does not exist", 404)
        probe = Bucket(bucket, owner=uid)
        visibility = await blocking(admin_client.get_current_resource_visibility, probe)
        if profile.since("v4.1.0"):
            try:
                tags = await blocking(admin_client.get_tagged_metadata, bucket)
            except MinIOError:
                tags = {}
            allowed = uid == DEFAULT_OWNER or tags.get("owner", "").strip() == uid
        else:
            allowed = (
                uid == DEFAULT_OWNER
                or visibility == PUBLIC
                or await blocking(admin_client.resource_in_policy, uid, bucket)
            )
        if not allowed:
            return text(f"User '{uid}' is not authorised", 403)
        service_buckets: ServiceBuckets = ctx.cluster.buckets
        try:
            await blocking(
                service_buckets.delete_minio_bucket, Bucket(bucket, visibility, None, uid)
            )
        except MinIOError as exc:
            return text(f"{exc}\n", 500)
        return empty(204)

    @app.post("/system/buckets/{bucket}/presign")
    async def presign(bucket: str, request: Request) -> Response:
        """presign_bucket.go MakePresignHandler."""
        caller = ctx.system_caller(request)
        req = await bind(request, PresignRequest, "Invalid presign request")
        name = bucket.strip()
        key = req.object_key.strip().strip("/")
        if not key:
            return text("Object key cannot be empty", 400)
        operation = req.operation.strip().lower()
        if operation not in ("upload", "download"):
            return text(
                f"Unsupported operation '{req.operation}'. Allowed values are 'upload' or "
                "'download'",
                400,
            )
        expires = req.expires_in or 900
        longest = 7 * 24 * 3600 if profile.since("v4.0.0") else 3600
        if not 1 <= expires <= longest:
            return text(
                f"Invalid expiration requested: {expires}. Allowed range is 1-{longest} seconds",
                400,
            )
        if name not in await blocking(admin_client.bucket_names):
            return text(f"Bucket '{name}' not found", 404)
        requester = uid_of(caller, CONFIG_NAME)
        try:
            metadata = await blocking(admin_client.get_tagged_metadata, name)
        except MinIOError as exc:
            return text(f"Error retrieving metadata for bucket '{name}': {exc}", 500)
        owner = metadata.get("owner") or DEFAULT_OWNER
        visibility = await blocking(
            admin_client.get_current_resource_visibility, Bucket(name, owner=owner)
        )
        if not caller.admin:
            if not visibility:
                visibility = await blocking(
                    admin_client.get_current_resource_visibility, Bucket(name, owner=requester)
                )
            allowed = requester == owner or visibility == PUBLIC
            if not allowed:
                allowed = await blocking(admin_client.resource_in_policy, requester, name)
            if not allowed and visibility == RESTRICTED:
                try:
                    allowed = requester in await blocking(admin_client.get_bucket_members, name)
                except MinIOError as exc:
                    return text(f"Error retrieving bucket members: {exc}", 500)
            if not allowed:
                return text(
                    f"User '{requester}' is not authorised to generate presigned URLs for "
                    f"bucket '{name}'",
                    403,
                )
        query = []
        if operation == "download" and req.content_type:
            query.append(("response-content-type", req.content_type))
        headers = _signed_headers(operation, req.content_type, req.extra_headers or {})
        root = ctx.cluster.minio.root
        url = sigv4.presign(
            "PUT" if operation == "upload" else "GET",
            root.endpoint,
            f"/{quote(name)}/{quote(key, safe='/~')}",
            root.access_key,
            root.secret_key,
            root.region,
            expires,
            query,
            {k.lower(): v for k, v in headers.items()},
        )
        until = datetime.now(timezone.utc) + timedelta(seconds=expires)
        return ctx.json(
            PresignResponse(
                key,
                operation,
                "PUT" if operation == "upload" else "GET",
                url,
                until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                headers or None,
            )
        )


def _describe(admin: MinIOAdmin, name: str, uid: str) -> MinIOBucket:
    """One entry of list_bucket.go: the owner is the caller for a private bucket (it is in
    the caller's policy), else the owner tag."""
    visibility = admin.get_current_resource_visibility(Bucket(name, owner=uid))
    try:
        metadata = admin.get_tagged_metadata(name)
        tagged = True
    except MinIOError:
        metadata, tagged = {}, False
    owner = uid if visibility == PRIVATE else (metadata.get("owner", "") if tagged else "")
    members = None
    if visibility == RESTRICTED:
        try:
            members = admin.get_bucket_members(name)
        except MinIOError:
            members = None  # logged as a warning
    metadata.pop("owner", None)
    return MinIOBucket(name, visibility, members, owner, metadata)


def _enrich(admin: MinIOAdmin, bucket: MinIOBucket) -> None:
    """v4.1.0 ``EnrichBucketQuotaAndUsage`` (no quota is ever set here: ``unset``)."""
    objects = admin.store.list(bucket.bucket_name)
    usage = sum(o.size for o in objects), len(objects)
    bucket.storage_quota, bucket.storage_usage, bucket.attribution = _quota_usage(usage)


def _quota_usage(usage: tuple[int, int]) -> tuple[MinIOQuota, MinIOUsage, str]:
    size, count = usage
    return MinIOQuota(source="unset"), MinIOUsage(format_storage(size), size, count), "complete"


def _go_time(moment: datetime | None) -> str:
    """Go's ``time.Time.String`` of an S3 LastModified (UTC, milliseconds)."""
    if moment is None:
        return ""
    moment = moment.astimezone(timezone.utc)
    millis = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{millis}" if millis else "") + " +0000 UTC"


def _signed_headers(operation: str, content_type: str, extra: dict[str, str]) -> dict[str, str]:
    """presign_bucket.go ``buildSignedHeaders`` (canonical header names)."""
    headers: dict[str, str] = {}
    if operation == "upload" and content_type:
        headers["Content-Type"] = content_type
    for key, value in extra.items():
        headers["-".join(p[:1].upper() + p[1:].lower() for p in key.split("-"))] = value
    return headers
