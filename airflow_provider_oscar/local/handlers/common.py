"""What every handler shares: Gin's responses, OSCAR's two authentications, request bodies.

- ``/system`` routes (auth.GetAuthMiddleware): Gin's BasicAuth with the admin's credentials; when
  OIDC is on (here: bearer tokens are configured) a ``Bearer`` header goes to the OIDC middleware
  instead, which also provisions the caller's MinIO user (auth/oidc.go getOIDCMiddleware).
- ``/run`` and ``/job``: a 64-character bearer token is a service token; anything else is an
  OIDC token (run.go, job.go).
- Bodies are read against a per-route limit and a budget shared by every request in flight.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from airflow_provider_oscar.local.cluster import LocalCluster
from airflow_provider_oscar.local.executions import Execution
from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.rules import Invalid, NotFound, StateError, may_use
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.local.state import Caller, ClusterState
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.gojson import (
    GoJSONError,
    binding_errors,
    decode,
    encode,
    go_json_text,
    parse,
)
from airflow_provider_oscar.local.types.service import Service

T = TypeVar("T")


@dataclass
class Context:
    """A handler module's view of the cluster it serves."""

    cluster: LocalCluster
    budget: RequestBudget

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    @property
    def state(self) -> ClusterState:
        return self.cluster.state

    @property
    def profile(self) -> Profile:
        return self.cluster.profile

    @property
    def config(self) -> Config:
        return self.cluster.config

    # responses ------------------------------------------------------------------------------

    def json(self, value: Any, status: int = 200) -> Response:
        """Gin's ``c.JSON``: the Go encoding of ``value`` at this release, compact."""
        text = go_json_text(encode(value, self.profile.release))
        return Response(text, status, media_type="application/json; charset=utf-8")

    # authentication -------------------------------------------------------------------------

    def system_caller(self, request: Request) -> Caller:
        """The caller of a ``/system`` route, or :class:`Unauthorized`."""
        settings = self.settings
        header = request.headers.get("authorization", "")
        if self.config.oidc_enable and header.startswith("Bearer "):
            subject = settings.bearer_tokens.get(header[len("Bearer ") :])
            if subject is None or not self.cluster.authorised(subject):
                raise Unauthorized(basic=False)
            self.cluster.provisioning.provision_user(subject)
            self.cluster.logged_in(subject)
            groups = tuple(self.cluster.groups_of(subject))
            return Caller(subject, admin=False, authorization=header, groups=groups)
        scheme, _, value = header.partition(" ")
        if scheme == "Basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized(basic=True) from None
            if secrets.compare_digest(user, settings.user) and secrets.compare_digest(
                password, settings.password
            ):
                return Caller(settings.user, admin=True, authorization=header)
        raise Unauthorized(basic=True)

    @staticmethod
    def bearer(authorization: str) -> str:
        """run.go/job.go: the token after ``Bearer ``, or 401 with an empty body."""
        parts = authorization.split("Bearer ")
        if len(parts) != 2:
            raise Unauthorized(basic=False)
        return parts[1].strip()

    def oidc_subject(self, token: str) -> str | None:
        return self.settings.bearer_tokens.get(token)

    # bodies ---------------------------------------------------------------------------------

    async def bind(self, request: Request, cls: type[T], prefix: str) -> T:
        """Gin's ``c.ShouldBindJSON``: Go's decoding, then the ``binding`` rules; a failure is
        400 ``<prefix>: <error>``."""
        raw = await self.body(request, self.settings.max_body_bytes)
        try:
            value = decode(cls, parse(raw), self.profile.release)
        except GoJSONError as exc:
            raise Invalid(f"{prefix}: {exc}") from None
        failures = binding_errors(value, self.profile.release)
        if failures:
            raise Invalid(f"{prefix}: {chr(10).join(failures)}")
        return value

    async def body(self, request: Request, limit: int) -> bytes:
        """The request body, refused past ``limit`` or past the shared memory budget."""
        declared = int(request.headers.get("content-length") or 0)
        if declared > limit:
            raise TooLarge(declared, limit)
        held = request.scope.setdefault("oscar.held", [0])
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise TooLarge(total, limit)
            self.budget.take(len(chunk))
            held[0] += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)


class RequestBudget:
    """Bytes of request bodies held at once, across every request (issue: bound memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            raise OutOfMemory(self.limit)
        self.used += size

    def give_back(self, size: int) -> None:
        self.used = max(0, self.used - size)


class Unauthorized(Exception):
    """401 with an empty body; Gin's BasicAuth adds its ``WWW-Authenticate`` challenge."""

    def __init__(self, basic: bool) -> None:
        self.basic = basic


class NotAuthorized(StateError):
    """401 with OSCAR's text (``c.String(http.StatusUnauthorized, ...)``)."""

    status = 401


class TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit


class OutOfMemory(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


class ConnectionCut(Response):
    """No response at all: the connection closes, as Go's http.Server does past WriteTimeout."""

    def __init__(self) -> None:
        super().__init__(b"", 500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut = scope.get("oscar.cut")
        if cut is None:  # not served by uvicorn: the closest a test client can see
            raise ConnectionAbortedError("the embedded OSCAR cut the connection")
        cut()


def struct_json(value: Any, status: int = 200) -> Response:
    """Gin's ``c.JSON`` of a struct built as a dict in field order (maps must be sorted)."""
    return Response(go_json_text(value), status, media_type="application/json; charset=utf-8")


def text(body: str, status: int) -> Response:
    """Gin's ``c.String``."""
    return Response(body, status, media_type="text/plain; charset=utf-8")


def empty(status: int) -> Response:
    """Gin's ``c.Status``: no body."""
    return Response(b"", status)


def refused(error: StateError) -> Response:
    return text(error.text, error.status) if error.text else empty(error.status)


@dataclass
class Origin:
    """What a ``/run`` or ``/job`` handler tells the execution logger: ``uidOrigin`` and the
    ``IPAddress`` of a MinIO event."""

    user: str | None = None
    ip: str | None = None
    run: bool = False  # a /run (else a /job)


async def invocation_target(
    ctx: Context, authorization: str, name: str, origin: Origin
) -> tuple[Service, str | None]:
    """run.go/job.go: the service a ``/run`` or ``/job`` reaches, and the OIDC subject calling.

    A service token (64 characters) must be the service's own; any other bearer token is an
    OIDC token, subject to the release's visibility and VO rules (see :class:`Profile`).
    """
    profile = ctx.profile
    service = ctx.state.read_service(name)
    if service is None and not profile.invocations_find_services_by_name:
        raise NotFound()  # ReadService fails before the token is looked at
    token = ctx.bearer(authorization)
    if len(token) == 64:  # tokenLength
        if service is None or not secrets.compare_digest(service.token, token):
            raise Unauthorized(basic=False)
        return service, None
    subject = ctx.oidc_subject(token)
    if subject is None:  # no OIDC manager knows the token's issuer
        raise _unknown_issuer(token)
    origin.user = subject
    authorised = ctx.cluster.authorised(subject)  # IsAuthorised: a group of the cluster's
    if profile.invocations_check_visibility:
        if not authorised and origin.run:
            raise NotFound()  # run.go answers 404 before it selects the service
        if service is None or not may_use(service, subject, profile):
            raise NotFound()  # selectService: errServiceNotFound
        if not authorised:
            raise Unauthorized(basic=False)
    elif not authorised:
        raise Unauthorized(basic=False)
    elif service is None or not service.vo or service.vo not in ctx.cluster.groups_of(subject):
        vo = service.vo if service else ""  # UserHasVO: the service's VO is one of the user's
        raise NotAuthorized(f"this user isn't enrrolled on the vo: {vo}")
    return service, subject


async def logged(
    ctx: Context, path: str, client_ip: str, origin: Origin, call: Awaitable[Response]
) -> Response:
    """auth.go GetLoggerMiddleware around a ``/run`` or ``/job`` handler."""
    started = time.monotonic_ns()
    status = 500
    try:
        response = await call
        status = response.status_code
        return response
    except StateError as exc:
        status = exc.status
        raise
    except Unauthorized:
        status = 401
        raise
    except TooLarge:
        status = 413
        raise
    except OutOfMemory:
        status = 503
        raise
    finally:
        ctx.cluster.executions.append(
            Execution(
                datetime.now(timezone.utc),
                status,
                time.monotonic_ns() - started,
                origin.ip or client_ip,
                "POST",
                path,
                origin.user if origin.user is not None else "oscar",
            )
        )


class BadGateway(StateError):
    status = 502


def _unknown_issuer(token: str) -> StateError:
    """run.go/job.go on a token no OIDC manager takes: GetIssuerFromToken's error is written
    with 502 and the handler goes on to append ``Error getting oidc manager for issuer ''``;
    a well-formed JWT of an unknown issuer gets only the latter, with 400."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("token contains an invalid number of segments")
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        issuer = str(claims.get("iss") or "") if isinstance(claims, dict) else ""
    except (ValueError, binascii.Error) as exc:
        reason = exc if "segments" in str(exc) else "could not JSON decode claim"
        return BadGateway(f"token is malformed: {reason}Error getting oidc manager for issuer ''")
    return Invalid(f"Error getting oidc manager for issuer '{issuer}'")
