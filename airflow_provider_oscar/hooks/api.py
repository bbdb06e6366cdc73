"""OSCAR's REST API as I/O-free steps, shared by the hook's sync and async faces.

Each operation is a generator: it yields the :class:`httpx.Request` objects it needs, receives
their responses, and returns the decoded result. :class:`Driver` and :class:`AsyncDriver` send
the requests (with retries), so every OSCAR rule lives here once: authentication and OIDC
refresh, the service-token cache re-read on 401, both job-list shapes and their pages, the 500
OSCAR answers for the logs of a job without a pod, and error messages naming cluster and
service.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.fdl import Service, parse_service
from airflow_provider_oscar.hooks import names

T = TypeVar("T")
Step = Generator[httpx.Request, httpx.Response, T]
RetryPolicy = Literal["idempotent", "logs", "invoke", "never"]
JOB_STATUSES = ("Pending", "Running", "Succeeded", "Failed", "Suspended", "Unknown")


@dataclass(frozen=True)
class ClusterSettings:
    """Everything needed to talk to one OSCAR cluster, read from an Airflow connection."""

    endpoint: str
    user: str | None = None
    password: str | None = None
    oidc_token: str | None = None
    refresh_token: str | None = None
    token_endpoint: str = "https://aai.egi.eu/auth/realms/egi/protocol/openid-connect/token"
    client_id: str = "token-portal"
    scopes: str = "openid email profile voperson_id eduperson_entitlement"
    verify_ssl: bool = True
    timeout: float = 30.0
    run_timeout: float = 300.0
    retries: int = 5
    backoff: float = 0.5
    minio_endpoint: str | None = None
    cluster_id: str = ""

    @property
    def name(self) -> str:
        """How messages name this cluster."""
        return self.cluster_id or self.endpoint


@dataclass(frozen=True)
class JobInfo:
    """One row of ``GET /system/logs/{service}``."""

    name: str
    status: str
    creation_time: str | None = None
    start_time: str | None = None
    finish_time: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("Succeeded", "Failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "creation_time": self.creation_time,
            "start_time": self.start_time,
            "finish_time": self.finish_time,
        }


@dataclass(frozen=True)
class RunResponse:
    """The answer of a synchronous ``POST /run``: its status, body and content type."""

    status_code: int
    body: bytes
    content_type: str = ""


@dataclass
class _AccessToken:
    value: str
    expires_at: float


@dataclass
class _Tokens:
    """Process-wide caches, shared by every hook on the same cluster and credentials."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    services: dict[tuple[str, str], str] = field(default_factory=dict)
    access: dict[tuple[str, str], _AccessToken] = field(default_factory=dict)


_TOKENS = _Tokens()


def encode_input(data: bytes | str | Mapping[str, Any] | list[Any]) -> bytes:
    """The request body OSCAR's supervisor turns back into the input file.

    Everything is sent base64-encoded: bytes as they are, text as UTF-8, and JSON documents as
    their text (so keys such as ``event`` or ``Records`` are never mistaken for OSCAR events).
    """
    if isinstance(data, Mapping | list):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"input must be bytes, text or a JSON document, not {type(data).__name__}")
    return base64.b64encode(bytes(data))


class OscarApi:
    """Builds OSCAR requests and interprets responses for one cluster."""

    def __init__(
        self, settings: ClusterSettings, on_secret: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._base = settings.endpoint.rstrip("/")
        self._on_secret = on_secret or (lambda _: None)

    # building blocks ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy = "idempotent",
        timeout: float | None = None,
        follow_redirects: bool = True,
        **kwargs: Any,
    ) -> httpx.Request:
        url = path if path.startswith(("http://", "https://")) else self._base + path
        request = httpx.Request(method, url, headers=headers, **kwargs)
        request.extensions["oscar_retry"] = retry
        request.extensions["oscar_follow_redirects"] = follow_redirects
        seconds = timeout or self.settings.timeout
        request.extensions["timeout"] = httpx.Timeout(seconds, connect=min(seconds, 10.0)).as_dict()
        return request

    def segment(self, check: Callable[[str], str], value: str, service: str | None = None) -> str:
        """``value`` as a URL path segment, once ``check`` (from :mod:`.names`) accepted it."""
        try:
            return check(value)
        except names.InvalidName as exc:
            raise OscarClientError(
                f"OSCAR cluster {self.settings.name}: {exc}", service=service
            ) from None

    def system_auth(self) -> Step[dict[str, str]]:
        """Headers for ``/system`` routes: Basic, or a (refreshed) OIDC access token."""
        settings = self.settings
        if settings.oidc_token or settings.refresh_token:
            token = yield from self._access_token()
            return {"Authorization": f"Bearer {token}"}
        if settings.user is not None:
            raw = f"{settings.user}:{settings.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        raise OscarClientError(
            f"OSCAR cluster {settings.name}: the connection has neither a login/password nor "
            "an OIDC token or refresh token"
        )

    def system(
        self, method: str, path: str, service: str | None = None, **kwargs: Any
    ) -> Step[httpx.Response]:
        """Send an authenticated ``/system`` request; non-2xx answers raise."""
        headers = yield from self.system_auth()
        response = yield self.request(method, path, headers=headers, **kwargs)
        self.check(response, service)
        return response

    def check(self, response: httpx.Response, service: str | None = None) -> None:
        """Raise :class:`OscarApiError` (4xx: :class:`OscarClientError`) for a failed answer."""
        if response.is_success:
            return
        reason = response.text.strip()[:500] or response.reason_phrase or "no reason given"
        what = f" service {service!r}:" if service else ""
        message = (
            f"OSCAR cluster {self.settings.name}:{what} {response.request.method} "
            f"{response.request.url.path} answered {response.status_code}: {reason}"
        )
        kind = OscarClientError if 400 <= response.status_code < 500 else OscarApiError
        raise kind(message, status_code=response.status_code, service=service)

    # cluster ------------------------------------------------------------------------------

    def health(self) -> Step[bool]:
        response = yield self.request("GET", "/health")
        return response.status_code == 200

    def info(self) -> Step[dict[str, Any]]:
        return (yield from self.system("GET", "/system/info")).json()

    def config(self) -> Step[dict[str, Any]]:
        return (yield from self.system("GET", "/system/config")).json()

    def status(self) -> Step[dict[str, Any]]:
        return (yield from self.system("GET", "/system/status")).json()

    # services -----------------------------------------------------------------------------

    def list_services(self) -> Step[list[Service]]:
        response = yield from self.system("GET", "/system/services")
        return [parse_service(item) for item in response.json() or []]

    def get_service(self, name: str) -> Step[Service | None]:
        """The service, or ``None`` when the cluster has none of that name."""
        path = f"/system/services/{self.segment(names.service, name)}"
        headers = yield from self.system_auth()
        response = yield self.request("GET", path, headers=headers)
        if response.status_code == 404:
            return None
        self.check(response, name)
        service = parse_service(response.json())
        self._remember_token(name, service.token)
        return service

    def apply_service(self, service: Service) -> Step[Literal["created", "updated"]]:
        """Create the service, or update it when it exists (oscar-cli's ``apply``).

        An update sends back what the stored service has and the definition does not say: its
        owner (OSCAR's update.go stores the owner an admin sends, and an empty owner puts the
        service's jobs in a Kueue queue that does not exist) and the fields OSCAR refuses to
        change or would drop (``volume``, ``kserve``, ``federation``).
        """
        existing = yield from self.get_service(service.name)
        body = service.model_dump(mode="json", exclude={"token"})
        body["input"] = [io.to_api() for io in service.input] if service.input else None
        body["output"] = [io.to_api() for io in service.output] if service.output else None
        if existing is not None:
            body["owner"] = existing.owner
            for key, value in (existing.model_extra or {}).items():
                if key in _KEPT_ON_UPDATE:
                    body.setdefault(key, value)
        timeout = max(60.0, self.settings.timeout)
        headers = yield from self.system_auth()
        method = "PUT" if existing else "POST"
        response = yield self.request(
            method, "/system/services", headers=headers, json=body, timeout=timeout
        )
        if method == "POST" and _duplicate(response):  # created meanwhile by someone else
            method = "PUT"
            response = yield self.request(
                method, "/system/services", headers=headers, json=body, timeout=timeout
            )
        self.check(response, service.name)
        self.forget_token(service.name)
        return "updated" if method == "PUT" else "created"

    def delete_service(self, name: str) -> Step[bool]:
        """Delete a service (and, as OSCAR does, its buckets); ``False`` if it did not exist."""
        path = f"/system/services/{self.segment(names.service, name)}"
        headers = yield from self.system_auth()
        response = yield self.request("DELETE", path, headers=headers)
        if response.status_code == 404:
            return False
        self.check(response, name)
        self.forget_token(name)
        return True

    def deployment(self, name: str) -> Step[dict[str, Any]]:
        path = f"/system/services/{self.segment(names.service, name)}/deployment"
        return (yield from self.system("GET", path, name)).json()

    def deployment_logs(self, name: str) -> Step[dict[str, Any]]:
        path = f"/system/services/{self.segment(names.service, name)}/deployment/logs"
        return (yield from self.system("GET", path, name)).json()

    def service_token(self, name: str, *, refresh: bool = False) -> Step[str]:
        """The service's token for ``/run`` and ``/job``, cached per cluster and service."""
        key = (self._base, name)
        if not refresh:
            with _TOKENS.lock:
                cached = _TOKENS.services.get(key)
            if cached:
                return cached
        service = yield from self.get_service(name)
        if service is None:
            raise OscarClientError(
                f"OSCAR cluster {self.settings.name}: service {name!r} does not exist",
                status_code=404,
                service=name,
            )
        return service.token

    def forget_token(self, name: str) -> None:
        with _TOKENS.lock:
            _TOKENS.services.pop((self._base, name), None)

    # invocations --------------------------------------------------------------------------

    def run(
        self,
        name: str,
        data: bytes | str | Mapping[str, Any] | list[Any],
        timeout: float | None = None,
    ) -> Step[RunResponse]:
        """``POST /run/{name}`` with the service token (re-read once on 401)."""
        body = encode_input(data)
        response = yield from self._invoke(
            "run", name, body, {}, timeout or self.settings.run_timeout
        )
        return RunResponse(
            response.status_code, response.content, response.headers.get("content-type", "")
        )

    def submit_job(
        self,
        name: str,
        data: bytes | str | Mapping[str, Any] | list[Any],
        job_name: str | None = None,
    ) -> Step[None]:
        """``POST /job/{name}``; ``job_name`` is asked for through ``X-Delegated-Job-ID``."""
        if job_name is not None:
            self.segment(names.job, job_name, name)
        headers = {"X-Delegated-Job-ID": job_name} if job_name else {}
        yield from self._invoke("job", name, encode_input(data), headers, self.settings.timeout)

    def _invoke(
        self, route: str, name: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> Step[httpx.Response]:
        path = f"/{route}/{self.segment(names.service, name)}"
        response: httpx.Response | None = None
        settings = self.settings
        # OSCAR gives a job no owner when a service token starts it, and shows OIDC users only
        # the jobs they own: an OIDC connection submits jobs with its own token, or it could
        # never find them again.
        own_token = route == "job" and bool(settings.oidc_token or settings.refresh_token)
        for attempt in range(1 if own_token else 2):
            if own_token:
                authorization = yield from self.system_auth()
            else:
                token = yield from self.service_token(name, refresh=attempt > 0)
                authorization = {"Authorization": f"Bearer {token}"}
            response = yield self.request(
                "POST",
                path,
                headers={**headers, **authorization},
                content=body,
                retry="invoke",
                timeout=timeout,
            )
            if response.status_code != 401:
                break
        assert response is not None
        self.check(response, name)
        return response

    # jobs ---------------------------------------------------------------------------------

    def list_jobs(self, name: str) -> Step[dict[str, JobInfo]]:
        """Every job of a service, following ``next_page``; both response shapes accepted."""
        path = f"/system/logs/{self.segment(names.service, name)}"
        jobs: dict[str, JobInfo] = {}
        page: str | None = None
        while True:
            params = {"page": page} if page else None
            response = yield from self.system("GET", path, name, params=params)
            if not response.content.strip():
                return jobs  # OSCAR's answer to an OIDC user without permission
            document = response.json()
            rows = document.get("jobs") if "jobs" in document else document
            for job_name, row in (rows or {}).items():
                row = row or {}
                jobs[job_name] = JobInfo(
                    job_name,
                    row.get("status") or "Unknown",
                    row.get("creation_time"),
                    row.get("start_time"),
                    row.get("finish_time"),
                )
            page = document.get("next_page") if "jobs" in document else None
            if not page:
                return jobs

    def job_logs(self, name: str, job: str, *, timestamps: bool = False) -> Step[str | None]:
        """The job's log text, or ``None`` while it has no pod (OSCAR answers 500 then)."""
        path = self._job_path(name, job)
        headers = yield from self.system_auth()
        params = {"timestamps": "true"} if timestamps else None
        response = yield self.request("GET", path, headers=headers, params=params, retry="logs")
        if response.status_code in (404, 500) and not response.content:
            return None
        self.check(response, name)
        return response.text

    def delete_job(self, name: str, job: str) -> Step[bool]:
        path = self._job_path(name, job)
        headers = yield from self.system_auth()
        response = yield self.request("DELETE", path, headers=headers)
        if response.status_code == 404:
            return False
        self.check(response, name)
        return True

    def delete_jobs(self, name: str, *, everything: bool = False) -> Step[None]:
        path = f"/system/logs/{self.segment(names.service, name)}"
        params = {"all": "true"} if everything else None
        yield from self.system("DELETE", path, name, params=params)

    def _job_path(self, name: str, job: str) -> str:
        return (
            f"/system/logs/{self.segment(names.service, name)}/{self.segment(names.job, job, name)}"
        )

    # buckets ------------------------------------------------------------------------------

    def presign(
        self,
        bucket: str,
        key: str,
        *,
        operation: Literal["upload", "download"] = "download",
        expires: int = 900,
    ) -> Step[dict[str, Any]]:
        path = f"/system/buckets/{self.segment(names.bucket, bucket)}/presign"
        key = self.segment(names.key, key)
        body = {"object_key": key, "operation": operation, "expires_in": expires}
        response = yield from self.system("POST", path, json=body)
        return response.json()

    # OIDC ---------------------------------------------------------------------------------

    def _access_token(self) -> Step[str]:
        settings = self.settings
        if not settings.refresh_token:
            assert settings.oidc_token
            return settings.oidc_token
        key = (settings.token_endpoint, settings.refresh_token)
        with _TOKENS.lock:
            cached = _TOKENS.access.get(key)
        if cached and cached.expires_at - 60 > time.time():
            return cached.value
        if (
            settings.oidc_token
            and not cached
            and _jwt_expiry(settings.oidc_token) - 60 > time.time()
        ):
            return settings.oidc_token
        # A redirect would carry the refresh token on to wherever it points (307 and 308 keep
        # the body, to any host): it is reported instead of followed.
        response = yield self.request(
            "POST",
            settings.token_endpoint,
            data={
                "grant_type": "refresh_token",
                "refresh_token": settings.refresh_token,
                "client_id": settings.client_id,
                "scope": settings.scopes,
            },
            follow_redirects=False,
        )
        if response.is_redirect:
            raise OscarClientError(
                f"OSCAR cluster {settings.name}: the OIDC token endpoint "
                f"{settings.token_endpoint} answered {response.status_code} with a redirect to "
                f"{response.headers.get('location', '?')!r}; the refresh token is not sent on "
                "to another address: set the connection's 'token_endpoint' to the final URL",
                status_code=response.status_code,
            )
        if not response.is_success:
            raise OscarClientError(
                f"OSCAR cluster {settings.name}: refreshing the OIDC token at "
                f"{settings.token_endpoint} failed with {response.status_code}: "
                f"{response.text.strip()[:300]}",
                status_code=response.status_code,
            )
        try:
            payload = response.json()
            token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError):
            raise OscarClientError(
                f"OSCAR cluster {settings.name}: the OIDC token endpoint "
                f"{settings.token_endpoint} answered without an access token: "
                f"{response.text.strip()[:200]}",
                status_code=response.status_code,
            ) from None
        self._on_secret(token)
        expires = time.time() + float(payload.get("expires_in") or 300)
        with _TOKENS.lock:
            _TOKENS.access[key] = _AccessToken(token, min(expires, _jwt_expiry(token)))
        return token

    def _remember_token(self, name: str, token: str) -> None:
        if token:
            self._on_secret(token)
            with _TOKENS.lock:
                _TOKENS.services[(self._base, name)] = token


_KEPT_ON_UPDATE = ("volume", "kserve", "federation")


def _duplicate(response: httpx.Response) -> bool:
    """OSCAR's refusal of a POST for an existing name: 409 up to v4.0, 400 from v4.1."""
    return response.status_code in (400, 409) and (
        "service with the provided name already exists" in response.text
    )


def _jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (not verified: the server does that), or +inf."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return float("inf")
