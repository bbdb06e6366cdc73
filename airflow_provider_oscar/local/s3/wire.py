"""The embedded MinIO's wire: what the front reads of an ASGI request and how it relays the
store's answers (streamed when nobody needs to look at them), MinIO's object-name rules, the
notification stream's lines and ``aws-chunked`` bodies."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from airflow_provider_oscar.local.s3.errors import SERVER, s3_error

MAX_BODY = 5 * 1024**3
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "server", "date"}


class ClientGone(Exception):
    """The client closed the connection before its request's body was whole."""


class Request:
    """What the front needs of an ASGI request."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope, self.receive = scope, receive
        self.method: str = scope["method"]
        self.raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        self.raw_path = self.raw_path.split("?", 1)[0]
        self.path = unquote(self.raw_path)
        self.raw_query: str = scope.get("query_string", b"").decode("latin-1")
        self.query_lists: dict[str, list[str]] = {}
        for key, value in parse_qsl(self.raw_query, keep_blank_values=True):
            self.query_lists.setdefault(key, []).append(value)
        self.query = {k: v[0] for k, v in self.query_lists.items()}
        self.headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            self.headers.setdefault(name.decode("latin-1").lower(), []).append(
                value.decode("latin-1")
            )
        bucket, _, key = self.path.lstrip("/").partition("/")
        self.bucket, self.key = bucket, key
        client = scope.get("client") or ("127.0.0.1", 0)
        self.client_host, self.client_port = str(client[0]), str(client[1])
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        return (self.headers.get(name) or [""])[0]

    async def body(self) -> bytes:
        """The whole body; :class:`ClientGone` when the client left before sending it all.

        MinIO stores nothing of a cut upload (the object's hash reader meets an early EOF:
        ``IncompleteBody``, minio/minio ``cmd/api-errors.go``), so neither does the front.
        """
        if self._body is None:
            chunks, total = [], 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone(self.path)
                chunk = message.get("body", b"")
                total += len(chunk)
                if total <= MAX_BODY + 1:
                    chunks.append(chunk)
                if not message.get("more_body"):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def disconnected(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def error(self, code: str, message: str | None = None) -> Response:
        return s3_error(code, self.method, self.path, message, self.bucket, self.key)


def object_name_refusal(key: str) -> tuple[str, str] | None:
    """minio ``IsValidObjectPrefix`` and ``checkObjectNameForLengthAndSlash``: the S3 error
    for an object name MinIO refuses, ``None`` for a valid one."""
    if len(key.encode()) > 1024:
        return "KeyTooLongError", "Your key is too long"
    if key.startswith("/"):
        return "XMinioInvalidObjectName", "Object name contains a leading slash."
    bad = any(p.strip() in (".", "..") for p in key.strip().split("/"))
    if bad or "//" in key or "\x00" in key:
        return "XMinioInvalidObjectName", "Object name contains unsupported characters."
    return None


def relay(upstream: httpx.Response, body: bytes) -> Response:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
    headers.pop("content-length", None)
    response = Response(body, upstream.status_code, headers=headers)
    if upstream.request.method == "HEAD":
        response.headers["content-length"] = upstream.headers.get("content-length", "0")
    return response


async def stream_back(upstream: httpx.Response, send: Send) -> None:
    """Relay a store answer as it arrives (large downloads are never held whole)."""
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in upstream.headers.items()
        if k.lower() not in HOP
    ]
    headers.append((b"server", SERVER.encode()))
    try:
        await send(
            {"type": "http.response.start", "status": upstream.status_code, "headers": headers}
        )
        async for chunk in upstream.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await upstream.aclose()


async def stream_events(queue: asyncio.Queue[dict[str, Any]], send: Send, ping: int | None) -> None:
    """One JSON line per event; keep-alives as MinIO writes them."""
    interval = float(ping) if ping else 0.5
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), interval)
        except asyncio.TimeoutError:
            chunk = b'{"Records":null}\n' if ping else b" "
        else:
            chunk = json.dumps({"Records": [event]}, separators=(",", ":")).encode() + b"\n"
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


def decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body (signed or unsigned chunks, trailers dropped)."""
    out, at = bytearray(), 0
    while at < len(body):
        end = body.find(b"\r\n", at)
        if end < 0:
            break
        size = int(body[at:end].split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2
    return bytes(out)
