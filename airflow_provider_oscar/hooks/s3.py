"""An awaitable S3 session on a cluster's MinIO: one HTTP client, credentials read once.

Requests are signed locally (presigned path-style URLs) and sent with one
:class:`httpx.AsyncClient`, so a trigger or a batch keeps a single client for its whole run and
reads ``/system/config`` once. Conditional writes (``If-None-Match: *``, ``If-Match``) come back
as ``None`` when the condition failed; 401 and 403 raise :class:`OscarClientError` naming the
object, so callers can stop instead of retrying what no retry fixes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit, urlunsplit

import httpx

from airflow_provider_oscar.errors import OscarApiError, OscarClientError

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class ObjectInfo:
    """What a bucket listing or a ``stat`` tells about one object."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
        }


@dataclass(frozen=True)
class Stored:
    """An object read with its metadata, and the server's clock when it answered."""

    data: bytes
    info: ObjectInfo
    server_time: datetime | None

    @property
    def age(self) -> float | None:
        """Seconds since the object was written, by the server's own clock."""
        if self.server_time is None or self.info.last_modified is None:
            return None
        return (self.server_time - self.info.last_modified).total_seconds()


class Signer:
    """Presigns S3 requests locally (path-style) with a MinIO provider's keys."""

    def __init__(self, provider: dict[str, Any]) -> None:
        from minio.credentials import Credentials

        endpoint = str(provider["endpoint"])
        self.base = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        self.region = provider.get("region") or "us-east-1"
        self.credentials = Credentials(
            str(provider.get("access_key") or ""), str(provider.get("secret_key") or "")
        )

    def url(self, method: str, bucket: str, key: str, query: dict[str, str] | None = None) -> str:
        from minio.signer import presign_v4

        path = f"/{bucket}/{quote(key, safe='/')}" if key else f"/{bucket}/"
        target = SplitResult(self.base.scheme, self.base.netloc, path, urlencode(query or {}), "")
        signed = presign_v4(
            method=method,
            url=target,
            region=self.region,
            credentials=self.credentials,
            date=datetime.now(timezone.utc).replace(tzinfo=None),
            expires=300,
        )
        return urlunsplit(signed)


class S3Session:
    """Awaitable object operations over one :class:`httpx.AsyncClient`."""

    def __init__(self, signer: Signer, client: httpx.AsyncClient) -> None:
        self.signer = signer
        self.client = client

    async def get(self, bucket: str, key: str) -> Stored | None:
        """The object, or ``None`` when it does not exist."""
        response = await self.client.get(self.signer.url("GET", bucket, key))
        if response.status_code == 404:
            return None
        _check(response, "GET", bucket, key)
        return Stored(response.content, _info(bucket, key, response), _date(response))

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        response = await self.client.head(self.signer.url("HEAD", bucket, key))
        if response.status_code == 404:
            return None
        _check(response, "HEAD", bucket, key)
        return _info(bucket, key, response)

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Write the object; its ETag, or ``None`` when the write's condition failed.

        ``if_match`` (an ETag) writes only over that version, ``if_none_match`` only when
        there is no object yet.
        """
        headers = {"Content-Type": content_type}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        if if_none_match:
            headers["If-None-Match"] = "*"
        url = self.signer.url("PUT", bucket, key)
        response = await self.client.put(url, content=data, headers=headers)
        if response.status_code in (409, 412) or (if_match and response.status_code == 404):
            return None  # somebody else wrote (or deleted) the object first
        _check(response, "PUT", bucket, key)
        return response.headers.get("etag", "").strip('"')

    async def delete(self, bucket: str, key: str) -> None:
        response = await self.client.delete(self.signer.url("DELETE", bucket, key))
        if response.status_code != 404:
            _check(response, "DELETE", bucket, key)

    async def list(
        self, bucket: str, prefix: str = "", *, start_after: str = ""
    ) -> list[ObjectInfo]:
        """Objects under ``prefix`` (every page), folder markers left out; ``[]`` without
        the bucket."""
        found: list[ObjectInfo] = []
        token = ""
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if start_after:
                params["start-after"] = start_after
            if token:
                params["continuation-token"] = token
            response = await self.client.get(self.signer.url("GET", bucket, "", params))
            if response.status_code == 404:
                return found
            _check(response, "list", bucket, prefix)
            root = ElementTree.fromstring(response.content)
            for item in root.iter(f"{_S3_NS}Contents"):
                key = item.findtext(f"{_S3_NS}Key") or ""
                if key.endswith("/"):
                    continue
                modified = item.findtext(f"{_S3_NS}LastModified")
                found.append(
                    ObjectInfo(
                        bucket,
                        key,
                        int(item.findtext(f"{_S3_NS}Size") or 0),
                        (item.findtext(f"{_S3_NS}ETag") or "").strip('"'),
                        datetime.fromisoformat(modified.replace("Z", "+00:00"))
                        if modified
                        else None,
                    )
                )
            token = root.findtext(f"{_S3_NS}NextContinuationToken") or ""
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return found


def _check(response: httpx.Response, what: str, bucket: str, key: str) -> None:
    if response.is_success:
        return
    target = f"S3 {what} {bucket}/{key}"
    if response.status_code in (401, 403):
        raise OscarClientError(
            f"{target} answered {response.status_code}: the connection's MinIO credentials "
            "(from /system/config) may not do this here",
            status_code=response.status_code,
        )
    kind = OscarClientError if 400 <= response.status_code < 500 else OscarApiError
    raise kind(f"{target} answered {response.status_code}", status_code=response.status_code)


def _info(bucket: str, key: str, response: httpx.Response) -> ObjectInfo:
    modified = response.headers.get("last-modified")
    size = response.headers.get("content-length")
    return ObjectInfo(
        bucket,
        key,
        int(size) if size is not None else len(response.content),
        response.headers.get("etag", "").strip('"'),
        parsedate_to_datetime(modified) if modified else None,
    )


def _date(response: httpx.Response) -> datetime | None:
    date = response.headers.get("date")
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
