"""HTTP routes of the embedded OSCAR, with status codes and bodies as OSCAR v4.1 answers them.

Quirks kept on purpose (clients must survive them on real clusters): compact JSON in Go field
order with ``<>&`` escaped, plain-text errors, empty 404 bodies, 201 with an empty body on
create and ``/job``, Basic auth refused on ``/run``/``/job``, 500 with an empty body for the
logs of a job without a pod, Gin's ``404 page not found`` for unknown routes and methods.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
import weakref
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_provider_oscar import __version__
from airflow_provider_oscar.local.cluster import LocalCluster
from airflow_provider_oscar.local.faults import FAULT, RotateToken
from airflow_provider_oscar.local.state import (
    Caller,
    Forbidden,
    Invalid,
    JobStatus,
    NotFound,
    StateError,
    check_bucket_name,
    check_object_key,
    page_start,
)

OSCAR_VERSION = "v4.1.2"
_STATUS_OF = {Invalid: 400, Forbidden: 403, NotFound: 404}
_PRESIGN_MAX = 7 * 24 * 3600


def go_json(data: Any, status: int = 200) -> Response:
    """JSON as Gin's ``c.JSON`` writes it: compact, ``<``, ``>``, ``&``, U+2028/9 escaped."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Response(text, status, media_type="application/json; charset=utf-8")


def text(body: str, status: int) -> Response:
    return Response(body, status, media_type="text/plain; charset=utf-8")


def empty(status: int) -> Response:
    return Response(b"", status)


class _Unauthorized(Exception):
    def __init__(self, basic: bool) -> None:
        self.basic = basic


def create_app(cluster: LocalCluster) -> FastAPI:
    """The ASGI application of one embedded OSCAR."""
    settings = cluster.settings
    state = cluster.state
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def system_caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value in settings.bearer_tokens:
            return Caller(settings.bearer_tokens[value], admin=False)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _Unauthorized(basic=True) from None
            if secrets.compare_digest(user, settings.user) and secrets.compare_digest(
                password, settings.password
            ):
                return Caller(settings.user, admin=True)
        raise _Unauthorized(basic=scheme.lower() != "bearer")

    def invoke_caller(request: Request, name: str) -> tuple[Any, Caller | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise _Unauthorized(basic=False)
        if len(token) == 64:
            service = state.service_by_token(name, token)
            if service is None:
                raise _Unauthorized(basic=False)
            return service, None
        subject = settings.bearer_tokens.get(token)
        if subject is None:
            raise _Unauthorized(basic=False)
        caller = Caller(subject, admin=False)
        service = state.service_for_subject(name, caller)
        if service is None:
            raise NotFound("")
        return service, caller

    async def body_of(request: Request, limit: int) -> bytes:
        size = int(request.headers.get("content-length") or 0)
        if size > limit:
            raise _TooLarge(size, limit)
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _TooLarge(total, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(request: Request) -> Any:
        raw = await body_of(request, settings.max_body_bytes)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Invalid(f"The service specification is not valid: {exc}") from None

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_: Request, exc: _Unauthorized) -> Response:
        response = empty(401)
        if exc.basic:
            response.headers["WWW-Authenticate"] = 'Basic realm="Authorization Required"'
        return response

    @app.exception_handler(StateError)
    async def _refused(_: Request, exc: StateError) -> Response:
        status = next(code for kind, code in _STATUS_OF.items() if isinstance(exc, kind))
        return text(str(exc), status) if str(exc) else empty(status)

    @app.exception_handler(StarletteHTTPException)
    async def _gin_not_found(_: Request, exc: StarletteHTTPException) -> Response:
        return text("404 page not found", 404)

    # health and cluster ------------------------------------------------------------------

    @app.get("/health")
    async def health() -> Response:
        return text("Ok", 200)

    @app.get("/ui")
    async def dashboard() -> Response:
        """Where OSCAR serves its dashboard; the embedded OSCAR says it has none."""
        return Response(_DASHBOARD_STUB, 200, media_type="text/html; charset=utf-8")

    @app.get("/system/info")
    async def info(request: Request) -> Response:
        system_caller(request)
        return go_json(
            {
                "version": OSCAR_VERSION,
                "git_commit": f"oscar-local-{__version__}",
                "architecture": "amd64",
                "kubernetes_version": "v1.33.0-oscar-local",
                "serverless_backend": {"name": "Knative", "version": "v1.18.0-oscar-local"},
            }
        )

    @app.get("/system/config")
    async def config(request: Request) -> Response:
        system_caller(request)
        return go_json(
            {
                "config": {
                    "name": "oscar",
                    "namespace": "oscar",
                    "services_namespace": "oscar-svc",
                    "controller_service_account": "oscar-sa",
                    "gpu_available": False,
                    "interLink_available": False,
                    "serverless_backend": "knative",
                    "yunikorn_enable": False,
                    "kueue_enable": False,
                    "volume_enable": False,
                    "oidc_groups": [],
                    "minio_quota_enabled": False,
                },
                "minio_provider": cluster.store.settings.minio_provider(),
                "allowed_image_repositories": [],
            }
        )

    @app.get("/system/status")
    async def status(request: Request) -> Response:
        caller = system_caller(request)
        return go_json(await asyncio.to_thread(_status, cluster, caller.admin))

    # services -----------------------------------------------------------------------------

    @app.get("/system/services")
    async def list_services(request: Request) -> Response:
        caller = system_caller(request)
        return go_json([s.to_api() for s in state.list_services(caller)])

    @app.post("/system/services")
    async def create_service(request: Request) -> Response:
        caller = system_caller(request)
        await cluster.create_service(await json_body(request), caller)
        return empty(201)

    @app.put("/system/services")
    async def update_service(request: Request) -> Response:
        caller = system_caller(request)
        await cluster.update_service(await json_body(request), caller)
        return empty(204)

    @app.get("/system/services/{name}")
    async def get_service(name: str, request: Request) -> Response:
        return go_json(state.get_service(name, system_caller(request)).to_api())

    @app.delete("/system/services/{name}")
    async def delete_service(name: str, request: Request) -> Response:
        await cluster.delete_service(name, system_caller(request))
        return empty(204)

    @app.get("/system/services/{name}/deployment")
    async def deployment(name: str, request: Request) -> Response:
        return go_json(cluster.deployment(name, system_caller(request)))

    @app.get("/system/services/{name}/deployment/logs")
    async def deployment_logs(name: str, request: Request) -> Response:
        status = cluster.deployment(name, system_caller(request))
        created = status["last_transition_time"]
        entries = [{"timestamp": created, "message": f"Created knative service {name}"}]
        if status["state"] == "ready":
            entries.append({"timestamp": created, "message": "Revision is ready"})
        return go_json({"service_name": name, "available": True, "entries": entries})

    # invocations --------------------------------------------------------------------------

    @app.post("/run/{name}")
    async def run(name: str, request: Request) -> Response:
        service, _ = invoke_caller(request, name)
        event = await body_of(request, settings.max_body_bytes)
        outcome = await cluster.run_sync(service, event)
        if outcome.timed_out:
            return text(outcome.body.decode(errors="replace"), 504)
        if outcome.failed:
            return text(outcome.body.decode(errors="replace"), 500)
        media = request.headers.get("content-type") or "text/plain; charset=utf-8"
        return Response(outcome.body, 200, media_type=media)

    @app.post("/job/{name}")
    async def job(name: str, request: Request) -> Response:
        service, caller = invoke_caller(request, name)
        event = await body_of(request, settings.max_job_body_bytes)
        delegated = request.headers.get("x-delegated-job-id") or None
        cluster.submit(service.name, event, caller.subject if caller else None, delegated)
        return empty(201)

    # jobs ---------------------------------------------------------------------------------

    @app.get("/system/logs/{name}")
    async def list_jobs(name: str, request: Request) -> Response:
        caller = system_caller(request)
        return go_json(state.job_page(name, caller, request.query_params.get("page")))

    @app.delete("/system/logs/{name}")
    async def delete_jobs(name: str, request: Request) -> Response:
        everything = request.query_params.get("all", "").lower() == "true"
        for job in state.remove_jobs(name, system_caller(request), everything=everything):
            cluster.cancel(job)
        return empty(204)

    @app.get("/system/logs/{name}/{job_name}")
    async def job_logs(name: str, job_name: str, request: Request) -> Response:
        job = state.get_job(name, job_name, system_caller(request))
        if job is None or not job.has_pod:
            return empty(500)
        body = job.logs
        if request.query_params.get("timestamps", "").lower() == "true":
            stamp = (job.started or job.created).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
            body = "".join(f"{stamp} {line}" for line in body.splitlines(keepends=True))
        return text(body, 200)

    @app.delete("/system/logs/{name}/{job_name}")
    async def delete_job(name: str, job_name: str, request: Request) -> Response:
        cluster.cancel(state.remove_job(name, job_name, system_caller(request)))
        return empty(204)

    # buckets ------------------------------------------------------------------------------

    @app.get("/system/buckets")
    async def list_buckets(request: Request) -> Response:
        system_caller(request)
        names = await asyncio.to_thread(cluster.store.bucket_names)
        return go_json([state.bucket(n).to_api() for n in names])

    @app.post("/system/buckets")
    async def create_bucket(request: Request) -> Response:
        caller = system_caller(request)
        body = await json_body(request)
        name = body.get("bucket_name") if isinstance(body, dict) else None
        if isinstance(name, str) and name in await asyncio.to_thread(cluster.store.bucket_names):
            raise Invalid(
                f"Error creating bucket with name '{name}': the bucket \"{name}\" already exists"
            )
        info = state.put_bucket(body, caller, create=True)
        await asyncio.to_thread(cluster.store.make_bucket, info.name)
        return empty(201)

    @app.put("/system/buckets")
    async def update_bucket(request: Request) -> Response:
        caller = system_caller(request)
        info = state.put_bucket(await json_body(request), caller, create=False)
        await asyncio.to_thread(cluster.store.make_bucket, info.name)
        return empty(204)

    @app.get("/system/buckets/{bucket}")
    async def get_bucket(bucket: str, request: Request) -> Response:
        system_caller(request)
        check_bucket_name(bucket)
        if bucket not in await asyncio.to_thread(cluster.store.bucket_names):
            message = "NoSuchBucket: The specified bucket does not exist"
            return text(f"Error listing objects in bucket '{bucket}': {message}", 500)
        objects = await asyncio.to_thread(cluster.store.list, bucket)
        start = page_start(request.query_params.get("page"))
        chunk = objects[start : start + 70]
        body: dict[str, Any] = state.bucket(bucket).to_api()
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
        return go_json(body)

    @app.delete("/system/buckets/{bucket}")
    async def delete_bucket(bucket: str, request: Request) -> Response:
        system_caller(request)
        check_bucket_name(bucket)
        if not await asyncio.to_thread(cluster.store.remove_bucket, bucket):
            return text(f"The bucket '{bucket}' does not exist", 404)
        state.drop_bucket(bucket)
        return empty(204)

    @app.post("/system/buckets/{bucket}/presign")
    async def presign(bucket: str, request: Request) -> Response:
        system_caller(request)
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
        if not isinstance(expires, int) or not 1 <= expires <= _PRESIGN_MAX:
            raise Invalid(f"Invalid expiration requested: {expires} (1 s to 7 days)")
        if bucket not in await asyncio.to_thread(cluster.store.bucket_names):
            return text(f"Bucket '{bucket}' not found", 404)
        url = await asyncio.to_thread(
            cluster.store.presign, bucket, key, upload=operation == "upload", expires=expires
        )
        until = datetime.now(timezone.utc) + timedelta(seconds=expires)
        return go_json(
            {
                "object_key": key,
                "operation": operation,
                "method": "PUT" if operation == "upload" else "GET",
                "url": url,
                "expires_at": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    # fault injection (not an OSCAR route) ---------------------------------------------------

    @app.get("/local/faults")
    async def list_faults(request: Request) -> Response:
        system_caller(request)
        return go_json(cluster.faults.active())

    @app.post("/local/faults")
    async def add_fault(request: Request) -> Response:
        system_caller(request)
        try:
            fault = FAULT.validate_python(await json_body(request))
        except ValidationError as exc:
            return text(f"invalid fault: {exc.errors()[0]['msg']}", 400)
        if isinstance(fault, RotateToken):
            state.rotate_token(fault.service)
        else:
            cluster.faults.add(fault)
        return empty(201)

    @app.get("/local/counts")
    async def execution_counts(request: Request) -> Response:
        """Runs and jobs per service and input, and requests per route (admin, read-only)."""
        if not system_caller(request).admin:
            return empty(403)
        return go_json({**cluster.counts.to_api(), "requests": dict(request_counts(cluster))})

    @app.post("/local/oidc/token")
    async def oidc_token(request: Request) -> Response:
        """A stand-in OIDC token endpoint: refresh tokens become short-lived bearer tokens."""
        form = parse_qs((await body_of(request, 65536)).decode(errors="replace"))
        refresh = (form.get("refresh_token") or [""])[0]
        grant = (form.get("grant_type") or [""])[0]
        subject = settings.refresh_tokens.get(refresh)
        if grant != "refresh_token" or subject is None:
            return go_json({"error": "invalid_grant"}, 400)
        lifetime = settings.access_token_lifetime
        token = _unsigned_jwt(subject, time.time() + lifetime)
        settings.bearer_tokens[token] = subject
        return go_json({"access_token": token, "expires_in": int(lifetime), "token_type": "Bearer"})

    @app.delete("/local/faults")
    async def clear_faults(request: Request) -> Response:
        system_caller(request)
        cluster.faults.clear()
        return empty(204)

    @app.exception_handler(_TooLarge)
    async def _too_large(_: Request, exc: _TooLarge) -> Response:
        return text(f"request body too large: {exc.size} bytes (limit {exc.limit})", 413)

    return FaultMiddleware(app, cluster)  # type: ignore[return-value]


_DASHBOARD_STUB = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OSCAR dashboard (not emulated)</title></head>
<body style="font: 15px system-ui, sans-serif; margin: 40px; max-width: 640px">
<h1>OSCAR dashboard</h1>
<p>This is the <b>embedded OSCAR</b> (oscar-local): it does not serve OSCAR's dashboard. On a real
cluster this address opens the dashboard at the page below.</p>
<p>Dashboard page: <code id="route">(none)</code></p>
<script>document.getElementById("route").textContent = location.hash || "(none)";</script>
</body></html>
"""


def _unsigned_jwt(subject: str, expires: float) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": subject, "exp": int(expires), "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class _TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit


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
    """Applies the fault plan (latency, error bursts, drops) before OSCAR's routes."""

    def __init__(self, app: ASGIApp, cluster: LocalCluster) -> None:
        self.app = app
        self.cluster = cluster
        self.counts = request_counts(cluster)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/local/"):
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        paged = b"page=" in scope.get("query_string", b"")
        self.counts[f"{scope['method']} {path}{'?page' if paged else ''}"] += 1
        if path != "/" and path.endswith("/"):
            return await _redirect(scope, send, path.rstrip("/"))
        faults = self.cluster.faults
        delay = faults.delay(path)
        if delay:
            await asyncio.sleep(delay)
        if faults.drops(path):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64")],
                }
            )
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


async def _redirect(scope: Scope, send: Send, location: str) -> None:
    """Gin's RedirectTrailingSlash: 301 for GET, 307 for other methods."""
    query = scope.get("query_string", b"")
    target = location.encode() + (b"?" + query if query else b"")
    status = 301 if scope["method"] in ("GET", "HEAD") else 307
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"location", target)]}
    )
    await send({"type": "http.response.body", "body": b""})


def _status(cluster: LocalCluster, admin: bool) -> dict[str, Any]:
    settings = cluster.settings
    jobs = list(cluster.state.all_jobs())
    running = sum(1 for j in jobs if j.status is JobStatus.RUNNING)
    pending = sum(1 for j in jobs if j.status is JobStatus.PENDING)
    free_cpu = max(0.0, settings.total_cpu - cluster.used_cpu)
    total_memory = settings.total_memory_bytes
    used_memory = cluster.used_memory
    buckets = cluster.store.bucket_names()
    objects = sum(len(cluster.store.list(b)) for b in buckets)
    oscar: dict[str, Any] = {
        "deployment_name": "oscar-local",
        "ready": True,
        "deployment": {
            "available_replicas": 1,
            "ready_replicas": 1,
            "replicas": 1,
            "creation_timestamp": "",
            "strategy": "RollingUpdate",
            "labels": {"app": "oscar"},
        },
    }
    if admin:
        oscar["jobs_count"] = len(jobs)
        oscar["pods"] = {
            "total": running + pending + cluster.sync_running,
            "states": {"Running": running + cluster.sync_running, "Pending": pending},
        }
    oscar["oidc"] = {"enabled": bool(settings.bearer_tokens), "issuers": [], "groups": []}
    return {
        "cluster": {
            "nodes_count": 1,
            "metrics": {
                "cpu": {
                    "total_free_cores": round(free_cpu, 3),
                    "max_free_on_node_cores": round(free_cpu, 3),
                    "total_schedulable_cores": settings.total_cpu,
                    "total_schedulable_on_node_cores": settings.total_cpu,
                },
                "memory": {
                    "total_free_bytes": total_memory - used_memory,
                    "max_free_on_node_bytes": total_memory - used_memory,
                    "total_schedulable_bytes": total_memory,
                    "max_schedulable_on_node_bytes": total_memory,
                },
                "gpu": {"total_gpu": 0},
            },
            "nodes": [
                {
                    "name": "oscar-local",
                    "cpu": {
                        "capacity_cores": settings.total_cpu,
                        "usage_cores": round(cluster.used_cpu, 3),
                        "request_cores": round(cluster.used_cpu, 3),
                    },
                    "memory": {
                        "capacity_bytes": total_memory,
                        "usage_bytes": used_memory,
                        "request_bytes": used_memory,
                    },
                    "gpu": 0,
                    "is_interlink": False,
                    "status": "Ready",
                    "conditions": [{"type": "Ready", "status": True}],
                }
            ],
        },
        "oscar": oscar,
        "minio": {"buckets_count": len(buckets), "total_objects": objects},
    }
