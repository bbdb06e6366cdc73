"""The embedded MinIO's S3 endpoint (ASGI): authenticate, authorise, answer MinIO's own calls,
forward the rest to the object store.

Per request, as MinIO does (minio/minio ``cmd/auth-handler.go`` ``checkRequestAuthType``):
the SigV4 signature is checked against the signer's secret (an unknown key is
``InvalidAccessKeyId``), then the signer's policies decide (:mod:`.iam`); anonymous requests
are refused (OSCAR sets no bucket policy). ``ListBuckets`` shows only the buckets the user may
list (``ListBucketsHandler``). Bucket tags and notification configurations are MinIO's bucket
metadata, kept here; ``GET /bucket?events=...`` is ``ListenBucketNotification``. Successful
writes, deletes and reads become events (:mod:`.events`). Paths under ``/minio/`` are MinIO's
admin and health APIs: health answers, the rest is ``NotImplemented``. Nothing reaches the
store unsigned by the front, and its own routes (moto's ``/moto-api``) are never forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from airflow_provider_oscar.local.s3 import sigv4
from airflow_provider_oscar.local.s3.actions import Operation, classify
from airflow_provider_oscar.local.s3.errors import SERVER
from airflow_provider_oscar.local.s3.events import (
    NotificationError,
    ObjectInfo,
    Rule,
    check_filter_value,
    configuration_xml,
    expand,
    parse_configuration,
    record,
)
from airflow_provider_oscar.local.s3.server import MinIOServer
from airflow_provider_oscar.local.s3.wire import (
    HOP,
    MAX_BODY,
    ClientGone,
    Request,
    decode_aws_chunked,
    object_name_refusal,
    relay,
    stream_back,
    stream_events,
)

_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
RESERVED = "moto-api"  # the store's own routes: never a bucket
_BUCKET_BLOCK = re.compile(rb"<Bucket>.*?</Bucket>", re.S)
_NAME = re.compile(rb"<Name>(.*?)</Name>", re.S)
_DELETE_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)
_TAG = re.compile(r"<Tag>\s*<Key>(.*?)</Key>\s*<Value>(.*?)</Value>\s*</Tag>", re.S)


class S3Front:
    """The ASGI application of the embedded MinIO."""

    def __init__(self, minio: MinIOServer) -> None:
        self.minio = minio
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
            self._client = httpx.AsyncClient(
                base_url=self.minio.backend.endpoint, limits=limits, timeout=None
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._handle(request, send)
        except sigv4.AuthFailure as failure:
            response = request.error(failure.code, failure.message)
        except ClientGone:
            return  # nobody to answer, and nothing of the cut body was stored
        if response is not None:
            response.headers.setdefault("Server", SERVER)
            await response(scope, receive, send)

    # dispatch ------------------------------------------------------------------------------

    async def _handle(self, request: Request, send: Send) -> Response | None:
        if request.path.startswith("/minio/"):
            if request.path in ("/minio/health/live", "/minio/health/ready"):
                return Response(b"", 200)
            return request.error(
                "NotImplemented", "MinIO's admin API is not emulated by the embedded OSCAR"
            )
        verified = sigv4.verify(
            request.method,
            request.raw_path,
            request.raw_query,
            request.headers,
            self.minio.iam.secret_key,
        )
        who = verified.access_key
        if who is None:
            return request.error("AccessDenied")
        op = classify(request.method, request.bucket, request.key, request.query)
        if op.name == "Unknown":
            return request.error("NotImplemented")
        if request.bucket == RESERVED:
            code = "InvalidBucketName" if op.name == "CreateBucket" else "NoSuchBucket"
            return request.error(code)
        if op.name == "ListBuckets":
            return await self._list_buckets(request, who, verified)
        if request.key:
            refusal = object_name_refusal(request.key)
            if refusal:
                return request.error(*refusal)
        if not self._allowed(request, who, op):
            return request.error("AccessDenied")
        if op.name in ("ListenBucketNotification", "ListenNotification"):
            return await self._listen(request, send, op)
        if "tagging" in request.query and not request.key:
            return await self._bucket_tagging(request)
        if "notification" in request.query and not request.key:
            return await self._bucket_notification(request)
        return await self._forward(request, who, verified, op, send)

    def _allowed(self, request: Request, who: str, op: Operation) -> bool:
        iam = self.minio.iam
        if not iam.is_allowed(who, op.action, op.bucket, op.key):
            return False
        source = request.headers.get("x-amz-copy-source")
        if op.name == "PutObject" and source:
            bucket, _, key = unquote(source[0]).lstrip("/").partition("/")
            return iam.is_allowed(who, "s3:GetObject", bucket, key.split("?")[0])
        return True

    # MinIO's own answers ---------------------------------------------------------------------

    async def _list_buckets(self, request: Request, who: str, verified: sigv4.Verified) -> Response:
        upstream = await self._send(request, verified, b"")
        body = await upstream.aread()
        if upstream.status_code != 200 or self.minio.iam.is_allowed(
            who, "s3:ListAllMyBuckets", "", ""
        ):
            return relay(upstream, body)
        iam = self.minio.iam

        def keep(match: re.Match[bytes]) -> bytes:
            name = _NAME.search(match.group(0))
            bucket = unquote(name.group(1).decode()) if name else ""
            return match.group(0) if iam.is_allowed(who, "s3:ListBucket", bucket) else b""

        filtered = _BUCKET_BLOCK.sub(keep, body)
        if not _BUCKET_BLOCK.search(filtered):
            return request.error("AccessDenied")
        return relay(upstream, filtered)

    async def _bucket_tagging(self, request: Request) -> Response:
        if not await self._bucket_exists(request.bucket):
            return request.error("NoSuchBucket")
        bucket = request.bucket
        if request.method == "GET":
            tags = self.minio.tags(bucket)
            if tags is None:
                return request.error("NoSuchTagSet")
            items = "".join(
                f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>"
                for k, v in tags.items()
            )
            body = f"{_XML}<Tagging><TagSet>{items}</TagSet></Tagging>"
            return Response(body.encode(), 200, media_type="application/xml")
        if request.method == "PUT":
            text = (await request.body()).decode("utf-8", "replace")
            self.minio.set_tags(bucket, {k: v for k, v in _TAG.findall(text)})
            return Response(b"", 200)
        self.minio.drop_tags(bucket)
        return Response(b"", 204)

    async def _bucket_notification(self, request: Request) -> Response:
        if not await self._bucket_exists(request.bucket):
            return request.error("NoSuchBucket")
        notifications = self.minio.notifications
        if request.method == "GET":
            body = configuration_xml(notifications.configuration(request.bucket))
            return Response(body, 200, media_type="application/xml")
        if request.method != "PUT":
            return request.error("NotImplemented")
        try:
            configs = parse_configuration(await request.body())
            notifications.set_configuration(request.bucket, configs)
        except NotificationError as exc:
            return request.error("InvalidArgument", str(exc))
        return Response(b"", 200)

    async def _listen(self, request: Request, send: Send, op: Operation) -> Response | None:
        """``ListenNotificationHandler``: validated filters, then the stream until the client
        goes away."""
        query = request.query_lists
        for name in ("prefix", "suffix"):
            if len(query.get(name, [])) > 1:
                return request.error("InvalidArgument", f"only one {name} filter is allowed")
        prefix = (query.get("prefix") or [""])[0]
        suffix = (query.get("suffix") or [""])[0]
        try:
            for value in (prefix, suffix):
                if value:
                    check_filter_value(value)
            names = expand(query.get("events", []))
        except NotificationError as exc:
            return request.error("InvalidArgument", str(exc))
        ping: int | None = None
        if "ping" in request.query:
            try:
                ping = int(request.query["ping"])
            except ValueError:
                ping = 0
            if ping < 1:
                return request.error("AuthorizationQueryParametersError")
        bucket = op.bucket or None
        if bucket is not None and not await self._bucket_exists(bucket):
            return request.error("NoSuchBucket")
        rule = Rule(frozenset(names), prefix, suffix)
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"server", SERVER.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with self.minio.notifications.listening(bucket, rule) as listener:
            stream = asyncio.ensure_future(stream_events(listener.queue, send, ping))
            gone = asyncio.ensure_future(request.disconnected())
            await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stream, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return None

    # forwarding ------------------------------------------------------------------------------

    async def _forward(
        self,
        request: Request,
        who: str,
        verified: sigv4.Verified,
        op: Operation,
        send: Send,
    ) -> Response | None:
        body = await request.body()
        if len(body) > MAX_BODY:
            return request.error("EntityTooLarge")
        declared = verified.payload_hash
        if re.fullmatch(r"[0-9a-f]{64}", declared) and hashlib.sha256(body).hexdigest() != declared:
            return request.error("XAmzContentSHA256Mismatch")
        if declared.startswith("STREAMING-") or "aws-chunked" in request.header("content-encoding"):
            body = decode_aws_chunked(body)
        if op.name == "DeleteObjects":
            keys = [unquote(k.decode()) for k in _DELETE_KEY.findall(body)]
            iam = self.minio.iam
            if not all(iam.is_allowed(who, "s3:DeleteObject", op.bucket, k) for k in keys):
                return request.error("AccessDenied")
        events = self._events_of(request, op)
        if not events and op.name not in ("DeleteBucket", "CompleteMultipartUpload"):
            upstream = await self._send(request, verified, body, stream=True)
            await stream_back(upstream, send)
            return None
        upstream = await self._send(request, verified, body)
        answer = await upstream.aread()
        if upstream.is_success and b"<Error>" not in answer[:512]:
            if op.name == "DeleteBucket":
                self.minio.forget_bucket(op.bucket)
            if events:
                await self._publish(request, who, verified, op, events, body, upstream, answer)
        return relay(upstream, answer)

    def _events_of(self, request: Request, op: Operation) -> list[str]:
        """The event names a successful ``op`` would give, where someone wants them."""
        if op.name == "PutObject":
            names = [
                "s3:ObjectCreated:Copy"
                if request.header("x-amz-copy-source")
                else "s3:ObjectCreated:Put"
            ]
        elif op.name == "CompleteMultipartUpload":
            names = ["s3:ObjectCreated:CompleteMultipartUpload"]
        elif op.name == "DeleteObject":
            names = ["s3:ObjectRemoved:Delete"]
        elif op.name == "DeleteObjects":
            return ["s3:ObjectRemoved:Delete"]  # keys known from the answer
        elif op.name in ("GetObject", "HeadObject"):
            names = [f"s3:ObjectAccessed:{op.name[:3].title()}"]
        else:
            return []
        wanted = self.minio.notifications.wanted
        return [n for n in names if wanted(op.bucket, op.key, n)]

    async def _publish(
        self,
        request: Request,
        who: str,
        verified: sigv4.Verified,
        op: Operation,
        names: list[str],
        body: bytes,
        upstream: httpx.Response,
        answer: bytes,
    ) -> None:
        notifications = self.minio.notifications
        source = (request.client_host, request.client_port, request.header("user-agent"))
        if op.name == "DeleteObjects":
            deleted = re.findall(rb"<Deleted>.*?<Key>(.*?)</Key>", answer, re.S)
            for raw in deleted:
                key = unquote(raw.decode())
                if notifications.wanted(op.bucket, key, names[0]):
                    event = record(names[0], op.bucket, ObjectInfo(key), who, source)
                    notifications.publish(op.bucket, key, event)
            return
        if op.name == "PutObject" and not request.header("x-amz-copy-source"):
            content_type = request.header("content-type") or "application/octet-stream"
            obj = ObjectInfo(op.key, len(body), upstream.headers.get("etag", ""), content_type)
        elif op.name in ("GetObject", "HeadObject"):
            size = int(upstream.headers.get("content-length") or 0)
            etag = upstream.headers.get("etag", "")
            obj = ObjectInfo(op.key, size, etag, upstream.headers.get("content-type", ""))
        elif names[0].startswith("s3:ObjectRemoved"):
            obj = ObjectInfo(op.key)
        else:
            obj = await self._head(op.bucket, op.key)
        for name in names:
            event = record(name, op.bucket, obj, who, source, self.minio.region)
            notifications.publish(op.bucket, op.key, event)

    async def _head(self, bucket: str, key: str) -> ObjectInfo:
        path = f"/{quote(bucket)}/{quote(key, safe='/~')}"
        response = await self._signed("HEAD", path, [], {}, b"")
        return ObjectInfo(
            key,
            int(response.headers.get("content-length") or 0),
            response.headers.get("etag", ""),
            response.headers.get("content-type", "application/octet-stream"),
        )

    async def _bucket_exists(self, bucket: str) -> bool:
        response = await self._signed("HEAD", f"/{quote(bucket)}", [], {}, b"")
        return response.status_code == 200

    async def _send(
        self, request: Request, verified: sigv4.Verified, body: bytes, stream: bool = False
    ) -> httpx.Response:
        query = [
            (k, v)
            for k, v in parse_qsl(request.raw_query, keep_blank_values=True)
            if not k.startswith("X-Amz-")
        ]
        headers = {
            name: values[0]
            for name, values in request.headers.items()
            if name not in HOP
            and name not in ("host", "authorization", "content-length", "expect")
            and not name.startswith("x-amz-content-sha256")
            and name not in ("x-amz-date", "x-amz-decoded-content-length", "x-amz-trailer")
        }
        if "aws-chunked" in headers.get("content-encoding", ""):
            encodings = [
                e for e in headers.pop("content-encoding").split(",") if "aws-chunked" not in e
            ]
            if any(e.strip() for e in encodings):
                headers["content-encoding"] = ",".join(encodings)
        return await self._signed(request.method, request.raw_path, query, headers, body, stream)

    async def _signed(
        self,
        method: str,
        raw_path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes,
        stream: bool = False,
    ) -> httpx.Response:
        """A request to the store, signed with its keys (only host and the x-amz ones)."""
        backend = self.minio.backend
        now = datetime.now(timezone.utc)
        signed = {
            "host": urlsplit(backend.endpoint).netloc,
            "x-amz-date": sigv4.amz_date(now),
            "x-amz-content-sha256": sigv4.UNSIGNED,
        }
        signed["authorization"] = sigv4.sign(
            method,
            raw_path,
            query,
            signed,
            backend.access_key,
            backend.secret_key,
            backend.region,
            sigv4.UNSIGNED,
            now,
        )
        query_string = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query)
        url = f"{backend.endpoint}{raw_path}" + (f"?{query_string}" if query_string else "")
        outgoing = self.client.build_request(
            method, url, headers={**headers, **signed}, content=body if body else None
        )
        return await self.client.send(outgoing, stream=stream)
