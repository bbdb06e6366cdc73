"""The embedded OSCAR's ASGI application: the handler modules its release registers, Gin's
behaviour around them, and the fault plan in front.

Gin's ways kept on purpose: ``404 page not found`` for unknown routes and for known paths with
another method (no 405), RedirectTrailingSlash (301 for GET, 307 otherwise), plain-text errors,
empty bodies where a handler only sets a status.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_oscar.local.cluster import LocalCluster
from airflow_provider_oscar.local.handlers import MODULES
from airflow_provider_oscar.local.handlers import local as local_routes
from airflow_provider_oscar.local.handlers.common import (
    Context,
    OutOfMemory,
    RequestBudget,
    TooLarge,
    Unauthorized,
    empty,
    refused,
    text,
)
from airflow_provider_oscar.local.rules import StateError


def create_app(cluster: LocalCluster) -> ASGIApp:
    """The ASGI application of one embedded OSCAR."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    budget = RequestBudget(cluster.settings.max_request_memory)
    ctx = Context(cluster, budget)
    local_routes.register(app, ctx)
    for family in cluster.profile.route_families(cluster.config.flags()):
        module = MODULES.get(family)
        if module is not None:
            module.register(app, ctx)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> Response:
        response = empty(401)
        if exc.basic:
            response.headers["WWW-Authenticate"] = 'Basic realm="Authorization Required"'
        return response

    @app.exception_handler(StateError)
    async def _refused(_: Request, exc: StateError) -> Response:
        return refused(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _gin_not_found(_: Request, exc: StarletteHTTPException) -> Response:
        return text("404 page not found", 404)

    @app.exception_handler(TooLarge)
    async def _too_large(_: Request, exc: TooLarge) -> Response:
        return text(f"request body too large: {exc.size} bytes (limit {exc.limit})", 413)

    @app.exception_handler(OutOfMemory)
    async def _out_of_memory(_: Request, exc: OutOfMemory) -> Response:
        response = text(
            f"the embedded OSCAR holds {exc.limit} bytes of request bodies at most; retry later",
            503,
        )
        response.headers["Retry-After"] = "1"
        return response

    return FaultMiddleware(app, cluster, budget)


_REQUEST_COUNTS: weakref.WeakKeyDictionary[LocalCluster, Counter[str]] = weakref.WeakKeyDictionary()


def request_counts(cluster: LocalCluster) -> Counter[str]:
    """Requests the cluster received, by ``"METHOD /path"`` (tests and benchmarks read it).

    Requests with a ``page`` query parameter (later pages of a listing) count under
    ``"METHOD /path?page"``, so ``"GET /system/logs/svc"`` counts whole listings.
    """
    counts = _REQUEST_COUNTS.get(cluster)
    if counts is None:
        counts = _REQUEST_COUNTS[cluster] = Counter()
    return counts


class FaultMiddleware:
    """Outermost layer: counts requests, applies the fault plan (latency, error bursts, drops)
    before OSCAR's routes, lets a handler cut the connection, frees request memory."""

    def __init__(self, app: ASGIApp, cluster: LocalCluster, budget: RequestBudget) -> None:
        self.app = app
        self.cluster = cluster
        self.budget = budget
        self.counts = request_counts(cluster)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["oscar.cut"] = _closer(send)
        held = scope["oscar.held"] = [0]
        try:
            await self._serve(scope, receive, send)
        finally:
            self.budget.give_back(held[0])

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/local/"):
            return await self.app(scope, receive, send)
        paged = b"page=" in scope.get("query_string", b"")
        self.counts[f"{scope['method']} {path}{'?page' if paged else ''}"] += 1
        if path != "/" and path.endswith("/"):
            return await _redirect(scope, send, path.rstrip("/"))
        faults = self.cluster.faults
        delay = faults.delay(path)
        if delay:
            await asyncio.sleep(delay)
        if faults.drops(path):
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"64")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionResetError("connection dropped by fault injection")
        status = faults.error_status(path)
        if status:
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            if status == 429:
                headers.append((b"retry-after", b"1"))
            body = f"injected fault: HTTP {status}".encode()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return None
        return await self.app(scope, receive, send)


def _closer(send: Send) -> object:
    """Closes the client connection under uvicorn (whose ``send`` is its request cycle's)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return None

    def cut() -> None:
        cycle.disconnected = True  # type: ignore[union-attr]  # no 500 after the app returns
        transport.close()

    return cut


async def _redirect(scope: Scope, send: Send, location: str) -> None:
    """Gin's RedirectTrailingSlash: 301 for GET, 307 for other methods."""
    query = scope.get("query_string", b"")
    target = location.encode() + (b"?" + query if query else b"")
    status = 301 if scope["method"] in ("GET", "HEAD") else 307
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"location", target)]}
    )
    await send({"type": "http.response.body", "body": b""})
