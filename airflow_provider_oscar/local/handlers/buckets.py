"""buckets/*.go (v3.6.0; presign from v3.6.4): ``/system/buckets``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, struct_json, text
from airflow_provider_oscar.local.rules import (
    Invalid,
    check_bucket_name,
    check_object_key,
    page_start,
)
from airflow_provider_oscar.local.types.gojson import GoJSONError, parse

PRESIGN_MAX = 7 * 24 * 3600


def register(app: FastAPI, ctx: Context) -> None:
    async def json_body(request: Request) -> Any:
        try:
            return parse(await ctx.body(request, ctx.settings.max_body_bytes))
        except GoJSONError as exc:
            raise Invalid(f"Invalid request body: {exc}") from None

    @app.get("/system/buckets")
    async def list_buckets(request: Request) -> Response:
        ctx.system_caller(request)
        names = await asyncio.to_thread(ctx.cluster.store.bucket_names)
        return struct_json([ctx.state.bucket(n).to_api() for n in names])

    @app.post("/system/buckets")
    async def create_bucket(request: Request) -> Response:
        caller = ctx.system_caller(request)
        body = await json_body(request)
        name = body.get("bucket_name") if isinstance(body, dict) else None
        if isinstance(name, str) and name in await asyncio.to_thread(
            ctx.cluster.store.bucket_names
        ):
            raise Invalid(
                f"Error creating bucket with name '{name}': the bucket \"{name}\" already exists"
            )
        info = ctx.state.put_bucket(body, caller, create=True)
        await asyncio.to_thread(ctx.cluster.store.make_bucket, info.name)
        return empty(201)

    @app.put("/system/buckets")
    async def update_bucket(request: Request) -> Response:
        caller = ctx.system_caller(request)
        info = ctx.state.put_bucket(await json_body(request), caller, create=False)
        await asyncio.to_thread(ctx.cluster.store.make_bucket, info.name)
        return empty(204)

    @app.get("/system/buckets/{bucket}")
    async def get_bucket(bucket: str, request: Request) -> Response:
        ctx.system_caller(request)
        check_bucket_name(bucket)
        if bucket not in await asyncio.to_thread(ctx.cluster.store.bucket_names):
            message = "NoSuchBucket: The specified bucket does not exist"
            return text(f"Error listing objects in bucket '{bucket}': {message}", 500)
        objects = await asyncio.to_thread(ctx.cluster.store.list, bucket)
        start = page_start(request.query_params.get("page"))
        chunk = objects[start : start + 70]
        body: dict[str, Any] = ctx.state.bucket(bucket).to_api()
        body["objects"] = [
            {
                "object_name": o.key,
                "size_bytes": o.size,
                "last_modified": o.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ")
                if o.last_modified
                else "",
            }
            for o in chunk
        ]
        truncated = start + len(chunk) < len(objects)
        body["next_page"] = str(start + len(chunk)) if truncated else ""
        body["is_truncated"] = truncated
        body["returned_items"] = len(chunk)
        return struct_json(body)

    @app.delete("/system/buckets/{bucket}")
    async def delete_bucket(bucket: str, request: Request) -> Response:
        ctx.system_caller(request)
        check_bucket_name(bucket)
        if not await asyncio.to_thread(ctx.cluster.store.remove_bucket, bucket):
            return text(f"The bucket '{bucket}' does not exist", 404)
        ctx.state.drop_bucket(bucket)
        return empty(204)

    @app.post("/system/buckets/{bucket}/presign")
    async def presign(bucket: str, request: Request) -> Response:
        ctx.system_caller(request)
        check_bucket_name(bucket)
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("object_key"), str):
            raise Invalid("object_key is required")
        key = body["object_key"]
        check_object_key(key)
        operation = body.get("operation") or "download"
        if operation not in ("upload", "download"):
            raise Invalid(f"Unsupported operation '{operation}'")
        expires = body.get("expires_in") or 900
        if not isinstance(expires, int) or not 1 <= expires <= PRESIGN_MAX:
            raise Invalid(f"Invalid expiration requested: {expires} (1 s to 7 days)")
        if bucket not in await asyncio.to_thread(ctx.cluster.store.bucket_names):
            return text(f"Bucket '{bucket}' not found", 404)
        url = await asyncio.to_thread(
            ctx.cluster.store.presign, bucket, key, upload=operation == "upload", expires=expires
        )
        until = datetime.now(timezone.utc) + timedelta(seconds=expires)
        return struct_json(
            {
                "object_key": key,
                "operation": operation,
                "method": "PUT" if operation == "upload" else "GET",
                "url": url,
                "expires_at": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
