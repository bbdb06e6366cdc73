"""Routes of the embedded OSCAR that are not OSCAR's: fault injection, what ran (counts), a
stand-in OIDC token endpoint, and a page where OSCAR's dashboard would be."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from airflow_provider_oscar.local.faults import FAULT, RotateToken
from airflow_provider_oscar.local.handlers.common import Context, empty, struct_json, text
from airflow_provider_oscar.local.rules import Forbidden
from airflow_provider_oscar.local.state import Caller
from airflow_provider_oscar.local.types.gojson import GoJSONError, parse


def register(app: FastAPI, ctx: Context) -> None:
    @app.get("/ui")
    async def dashboard() -> Response:
        """Where OSCAR serves its dashboard; the embedded OSCAR says it has none."""
        return Response(_DASHBOARD_STUB, 200, media_type="text/html; charset=utf-8")

    @app.post("/local/oidc/token")
    @app.post("/local/oidc/protocol/openid-connect/token")  # where OSCAR's delegation looks
    async def oidc_token(request: Request) -> Response:
        """Refresh tokens become short-lived bearer tokens (an OIDC provider's token endpoint;
        also at Keycloak's path under the issuer ``<endpoint>/local/oidc``, which
        resourcemanager/delegate.go ``exchangeRefreshToken`` calls)."""
        settings = ctx.settings
        form = parse_qs((await ctx.body(request, 65536)).decode(errors="replace"))
        refresh = (form.get("refresh_token") or [""])[0]
        grant = (form.get("grant_type") or [""])[0]
        subject = settings.refresh_tokens.get(refresh)
        if grant != "refresh_token" or subject is None:
            return struct_json({"error": "invalid_grant"}, 400)
        lifetime = settings.access_token_lifetime
        token = _unsigned_jwt(subject, time.time() + lifetime)
        settings.bearer_tokens[token] = subject
        return struct_json(
            {"access_token": token, "expires_in": int(lifetime), "token_type": "Bearer"}
        )

    @app.get("/local/counts")
    async def execution_counts(request: Request) -> Response:
        """Runs and jobs per service and input, and requests per route (admin, read-only)."""
        from airflow_provider_oscar.local.api import request_counts  # the app's middleware

        if not ctx.system_caller(request).admin:
            raise Forbidden("the counts are for the admin only")
        counts = ctx.cluster.counts.to_api()
        return struct_json({**counts, "requests": dict(request_counts(ctx.cluster))})

    if not ctx.settings.faults_enabled:
        return

    def admin(request: Request) -> Caller:
        caller = ctx.system_caller(request)
        if not caller.admin:
            raise Forbidden("fault injection is for the admin only")
        return caller

    @app.get("/local/faults")
    async def list_faults(request: Request) -> Response:
        admin(request)
        return struct_json(ctx.cluster.faults.active())

    @app.post("/local/faults")
    async def add_fault(request: Request) -> Response:
        admin(request)
        try:
            fault = FAULT.validate_python(parse(await ctx.body(request, 65536)))
        except GoJSONError as exc:
            return text(f"invalid fault: {exc}", 400)
        except ValidationError as exc:
            return text(f"invalid fault: {exc.errors()[0]['msg']}", 400)
        if isinstance(fault, RotateToken):
            ctx.state.rotate_token(fault.service)
        else:
            ctx.cluster.faults.add(fault)
        return empty(201)

    @app.delete("/local/faults")
    async def clear_faults(request: Request) -> Response:
        admin(request)
        ctx.cluster.faults.clear()
        return empty(204)


def _unsigned_jwt(subject: str, expires: float) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": subject, "exp": int(expires), "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


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
