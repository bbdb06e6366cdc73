"""``OscarStorageHook``: the buckets of an OSCAR cluster, through its MinIO credentials.

Credentials come from the cluster's ``/system/config`` (``minio_provider``); the connection's
``minio_endpoint`` extra replaces the endpoint there, which is often only reachable inside the
cluster. Blocking operations use the minio client; the awaitable ones (for triggers) sign
requests locally and send them with :class:`httpx.AsyncClient`, so they never block the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks import names
from airflow_provider_oscar.hooks.api import ClusterSettings
from airflow_provider_oscar.hooks.oscar import OscarHook, _mask_value
from airflow_provider_oscar.hooks.s3 import ObjectInfo, S3Session, Signer

if TYPE_CHECKING:  # the minio SDK is imported when first used (it takes ~0.5 s to import)
    from minio import Minio

_MISSING = ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound")
_SIGNING_MODULES = ("minio.credentials", "minio.signer")

__all__ = ["ObjectInfo", "OscarStorageHook", "S3Session", "split_path"]


def split_path(path: str) -> tuple[str, str]:
    """``"bucket/some/key"`` → ``("bucket", "some/key")``; refuses paths without a bucket.

    A trailing ``/`` stays on the key, so ``"bucket/in/"`` lists the folder ``in/`` and not
    ``incoming/`` too. Bucket names and keys are checked (:mod:`.names`): a key cannot climb
    out of its bucket with ``..``.
    """
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        raise OscarClientError(f"storage path {path!r} names no bucket ('bucket/key')")
    try:
        names.bucket(bucket)
        names.key(key, prefix=True)
    except names.InvalidName as exc:
        raise OscarClientError(f"storage path {path!r}: {exc}") from None
    return bucket, key


class OscarStorageHook(OscarHook):
    """Upload, download, list and check objects in the cluster's MinIO."""

    hook_name = "OSCAR storage"

    @cached_property
    def minio_provider(self) -> dict[str, Any]:
        provider = dict(self.get_config().get("minio_provider") or {})
        return self._provider(provider, self.settings)

    def _provider(self, provider: dict[str, Any], settings: ClusterSettings) -> dict[str, Any]:
        if not provider.get("endpoint") and not settings.minio_endpoint:
            raise OscarApiError(
                f"OSCAR cluster {settings.name}: /system/config has no MinIO endpoint; set the "
                "connection's 'minio_endpoint' extra"
            )
        if settings.minio_endpoint:
            provider["endpoint"] = settings.minio_endpoint
        _mask_value(provider.get("secret_key"))
        return provider

    def get_client(self) -> Minio:
        """A minio client with the cluster's credentials."""
        return self._minio

    @cached_property
    def _minio(self) -> Minio:
        return _client(self.minio_provider, self.settings)

    # blocking -----------------------------------------------------------------------------

    def upload_bytes(
        self,
        path: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        create_bucket: bool = False,
    ) -> None:
        """Write ``data`` to ``bucket/key`` (creating the bucket first when asked)."""
        bucket, key = split_path(path)
        client = self.get_client()
        if create_bucket and not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.put_object(bucket, key, io.BytesIO(data), len(data), content_type)

    def upload_file(self, path: str, local_path: str | Path) -> None:
        bucket, key = split_path(path)
        self.get_client().fput_object(bucket, key, str(local_path))

    def download_bytes(self, path: str) -> bytes:
        from minio.error import S3Error

        bucket, key = split_path(path)
        try:
            response = self.get_client().get_object(bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise OscarClientError(f"object {path!r} does not exist ({exc.code})") from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def download_file(self, path: str, local_path: str | Path) -> Path:
        bucket, key = split_path(path)
        self.get_client().fget_object(bucket, key, str(local_path))
        return Path(local_path)

    def list_objects(self, path: str) -> list[ObjectInfo]:
        """Objects under ``bucket/prefix`` (recursively), folder markers left out.

        A bucket that does not exist (yet) holds nothing: the list is empty.
        """
        bucket, prefix = split_path(path)
        if not self.get_client().bucket_exists(bucket):
            return []
        return [
            ObjectInfo(
                bucket, o.object_name or "", o.size or 0, (o.etag or "").strip('"'), o.last_modified
            )
            for o in self.get_client().list_objects(bucket, prefix=prefix, recursive=True)
            if o.object_name and not o.object_name.endswith("/")
        ]

    def stat(self, path: str) -> ObjectInfo | None:
        """The object's metadata, or ``None`` when it does not exist (no waiting)."""
        from minio.error import S3Error

        bucket, key = split_path(path)
        try:
            info = self.get_client().stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise
        return ObjectInfo(
            bucket, key, info.size or 0, (info.etag or "").strip('"'), info.last_modified
        )

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def delete(self, path: str) -> None:
        bucket, key = split_path(path)
        self.get_client().remove_object(bucket, key)

    def presigned_url(self, path: str, *, method: str = "GET", expires: int = 3600) -> str:
        """A URL signed locally with the cluster's keys (no request to OSCAR)."""
        bucket, key = split_path(path)
        return self.get_client().get_presigned_url(method, bucket, key, timedelta(seconds=expires))

    # awaitable ----------------------------------------------------------------------------

    async def _asigner(self) -> tuple[Signer, ClusterSettings]:
        settings = await self.asettings()
        config = await self.acall(lambda api: api.config())
        provider = self._provider(dict(config.get("minio_provider") or {}), settings)
        for module in _SIGNING_MODULES:  # a first import takes ~0.5 s: not on the event loop
            if module not in sys.modules:
                await asyncio.to_thread(importlib.import_module, module)
        return Signer(provider), settings

    @asynccontextmanager
    async def as3(self) -> AsyncIterator[S3Session]:
        """One S3 session (one client, credentials read once) for many awaitable operations."""
        signer, settings = await self._asigner()
        async with httpx.AsyncClient(verify=settings.verify_ssl, timeout=settings.timeout) as http:
            yield S3Session(signer, http)

    async def astat(self, path: str) -> ObjectInfo | None:
        """Like :meth:`stat`, without blocking the event loop."""
        bucket, key = split_path(path)
        async with self.as3() as s3:
            return await s3.stat(bucket, key)

    async def alist_objects(self, path: str, *, start_after: str = "") -> list[ObjectInfo]:
        """Like :meth:`list_objects` (all pages), without blocking the event loop."""
        bucket, prefix = split_path(path)
        async with self.as3() as s3:
            return await s3.list(bucket, prefix, start_after=start_after)

    async def aget_object(self, path: str) -> tuple[bytes, ObjectInfo] | None:
        """An object's content and metadata, or ``None`` when it does not exist (no waiting)."""
        bucket, key = split_path(path)
        async with self.as3() as s3:
            found = await s3.get(bucket, key)
        return (found.data, found.info) if found else None

    async def aput_bytes(
        self,
        path: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Write ``data`` to ``bucket/key`` without blocking the event loop; returns its ETag.

        ``if_match`` (an ETag) writes only over that version of the object, ``if_none_match``
        only when no object exists: a conditional write that lost the race returns ``None``.
        """
        bucket, key = split_path(path)
        async with self.as3() as s3:
            return await s3.put(
                bucket, key, data, content_type, if_match=if_match, if_none_match=if_none_match
            )

    async def alisten(
        self, path: str, *, event: str = "s3:ObjectCreated:*"
    ) -> AsyncIterator[dict[str, Any]]:
        """MinIO's bucket-notification stream under ``bucket/prefix``: one record per event.

        MinIO's ``ListenBucketNotification`` extension holds one HTTP response open and writes a
        JSON document per event. Other S3 servers have no such stream: when the answer does not
        come from MinIO, this raises :class:`OscarApiError` at once (never re-sending in a loop).
        The stream ends when the server closes it; callers reconnect.
        """
        bucket, prefix = split_path(path)
        signer, settings = await self._asigner()
        url = signer.url("GET", bucket, "", {"prefix": prefix, "suffix": "", "events": event})
        timeout = httpx.Timeout(settings.timeout, read=None)
        async with (
            httpx.AsyncClient(verify=settings.verify_ssl, timeout=timeout) as http,
            http.stream("GET", url) as response,
        ):
            server = response.headers.get("server", "")
            if not response.is_success or not server.lower().startswith("minio"):
                raise OscarApiError(
                    f"{bucket}: no bucket-notification stream (S3 server {server or '?'} "
                    f"answered {response.status_code})"
                )
            async for line in response.aiter_lines():
                if line.strip():
                    for record in json.loads(line).get("Records") or []:
                        yield record


def _client(provider: dict[str, Any], settings: ClusterSettings) -> Minio:
    from minio import Minio

    endpoint = str(provider["endpoint"])
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    secure = parts.scheme == "https"
    return Minio(
        parts.netloc,
        access_key=provider.get("access_key"),
        secret_key=provider.get("secret_key"),
        secure=secure,
        region=provider.get("region") or "us-east-1",
        cert_check=bool(provider.get("verify", True)) and settings.verify_ssl,
    )
