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
from collections.abc import Callable, Generator, Mapping
from typing import Any, Literal, TypeVar

import httpx

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.fdl import Service, parse_service
from airflow_provider_oscar.hooks import names, tokens
from airflow_provider_oscar.hooks.bodies import (
    JOB_BODY_LIMIT,
    check_job_body,
    check_secrets,
    duplicate_service,
    encode_input,
    malformed_token,
    needs_minio_user,
    update_body,
)
from airflow_provider_oscar.hooks.models import JOB_STATUSES, ClusterSettings, JobInfo, RunResponse
from airflow_provider_oscar.hooks.release import OscarRelease, remember, remembered

__all__ = [
    "JOB_BODY_LIMIT",
    "JOB_STATUSES",
    "ClusterSettings",
    "JobInfo",
    "OscarApi",
    "RetryPolicy",
    "RunResponse",
    "Step",
    "encode_input",
    "malformed_token",
]

T = TypeVar("T")
Step = Generator[httpx.Request, httpx.Response, T]
RetryPolicy = Literal["idempotent", "logs", "invoke", "never"]


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
            token = yield from tokens.access_token(
                settings,
                lambda url, **kw: self.request("POST", url, follow_redirects=False, **kw),
                self._on_secret,
            )
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

    def release(self) -> Step[OscarRelease]:
        """The cluster's release, read from ``/system/info`` once per process and credentials.

        Releases before 3.6 raise :class:`OscarClientError`.
        """
        known = remembered(self.settings.key)
        if known is not None:
            return known
        info = yield from self.info()
        found = OscarRelease.parse(str(info.get("version") or ""))
        return remember(self.settings.key, found.check_supported(self.settings.name))

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

        An update sends back what the stored service has and the definition does not say (see
        :func:`update_body`): OSCAR's update.go stores what it is sent, so a field left out
        would be reset (an admin's update stores an empty owner, whose jobs then wait in a Kueue
        queue that does not exist) or refused (``volume`` cannot change). The create is sent
        once: a POST is not idempotent (a 500 is Kubernetes refusing the service, and is
        reported, not repeated).
        """
        existing = yield from self.get_service(service.name)
        timeout = max(60.0, self.settings.timeout)
        headers = yield from self.system_auth()
        if existing is None:
            check_secrets(service)
            response = yield self.request(
                "POST",
                "/system/services",
                headers=headers,
                json=update_body(service, None),
                timeout=timeout,
                retry="invoke",
            )
            if not duplicate_service(response):
                self.check(response, service.name)
                self.forget_token(service.name)
                return "created"
            existing = yield from self.get_service(service.name)  # created meanwhile
        response = yield self.request(
            "PUT",
            "/system/services",
            headers=headers,
            json=update_body(service, existing),
            timeout=timeout,
        )
        self.check(response, service.name)
        self.forget_token(service.name)
        return "updated"

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

    def readiness(self, name: str) -> Step[dict[str, Any]]:
        """The service's deployment status with ``readiness``: ``ready``, ``pending`` or
        ``failed`` (and ``readiness_note`` when it was not read from a deployment status).

        Before OSCAR 4.0 there is no deployment status: a service that exists counts as ready.
        A deployment OSCAR reports ``unavailable`` (no Knative service to observe) counts as
        ready too, rather than waited on for ever. A service that does not exist raises
        :class:`OscarClientError` (404), whatever the release answers (404, or 403 from v4.0).
        """
        release = yield from self.release()
        note = ""
        if release.has_deployment_status:
            path = f"/system/services/{self.segment(names.service, name)}/deployment"
            headers = yield from self.system_auth()
            response = yield self.request("GET", path, headers=headers)
            # deployment.go answers 403 for unknown and forbidden services alike
            if response.status_code == 403 and (yield from self.get_service(name)) is None:
                raise self._no_service(name)
            self.check(response, name)
            status: dict[str, Any] = response.json()
            state = status.get("state")
            if state != "unavailable":
                readiness = {"ready": "ready", "failed": "failed"}.get(str(state), "pending")
                return {**status, "readiness": readiness}
            note = (
                f"OSCAR reports the deployment of {name!r} unavailable (no Knative service to "
                "observe): the service exists, so it is taken as ready"
            )
        else:
            status = {"service_name": name, "state": "unknown"}
            note = (
                f"OSCAR {release.version} has no deployment status (it came with 4.0): the "
                f"service {name!r} exists, so it is taken as ready"
            )
        if (yield from self.get_service(name)) is None:
            raise self._no_service(name)
        return {**status, "readiness": "ready", "readiness_note": note}

    def _no_service(self, name: str) -> OscarClientError:
        return OscarClientError(
            f"OSCAR cluster {self.settings.name}: service {name!r} does not exist (or this "
            "connection may not see it)",
            status_code=404,
            service=name,
        )

    def deployment_logs(self, name: str) -> Step[dict[str, Any]]:
        path = f"/system/services/{self.segment(names.service, name)}/deployment/logs"
        return (yield from self.system("GET", path, name)).json()

    def service_token(self, name: str, *, refresh: bool = False) -> Step[str]:
        """The service's token for ``/run`` and ``/job``, cached per cluster and service."""
        if not refresh:
            cached = tokens.service_token(self._base, name)
            if cached:
                return cached
        service = yield from self.get_service(name)
        if service is None:
            raise self._no_service(name)
        return service.token

    def forget_token(self, name: str) -> None:
        tokens.forget_service_token(self._base, name)

    # invocations --------------------------------------------------------------------------

    def run(
        self,
        name: str,
        data: bytes | str | Mapping[str, Any] | list[Any],
        timeout: float | None = None,
    ) -> Step[RunResponse]:
        """``POST /run/{name}`` with the service token (re-read once on 401).

        A connection closed without an answer raises :class:`OscarRunCutError`: the run may
        have happened, so it is reported and never sent again.
        """
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
    ) -> Step[bool]:
        """``POST /job/{name}``; whether a job was created.

        ``job_name`` is asked for through ``X-Delegated-Job-ID`` (honoured from OSCAR 4.1);
        when a job of that name exists already, OSCAR answers 500 ``already exists`` and this
        returns ``False``: the job was submitted before, and is not submitted again. A body
        that cannot travel in the job's ``EVENT`` variable is refused before it is sent.
        """
        if job_name is not None:
            self.segment(names.job, job_name, name)
        body = encode_input(data)
        check_job_body(len(body), self.settings.name, name)
        headers = {"X-Delegated-Job-ID": job_name} if job_name else {}
        try:
            yield from self._invoke("job", name, body, headers, self.settings.timeout)
        except OscarApiError as exc:
            if job_name and exc.status_code == 500 and "already exists" in str(exc):
                return False
            raise
        return True

    def submit_event(self, name: str, event: Mapping[str, Any]) -> Step[None]:
        """``POST /job/{name}`` with a storage event (a JSON document, not base64)."""
        body = json.dumps(event, separators=(",", ":")).encode()
        check_job_body(len(body), self.settings.name, name)
        yield from self._invoke("job", name, body, {}, self.settings.timeout)

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
        for attempt in range(2):
            if own_token:
                authorization = yield from self.system_auth()
            else:
                token = yield from self.service_token(name, refresh=attempt > 0)
                authorization = {"Authorization": f"Bearer {token}"}
            request = self.request(
                "POST",
                path,
                headers={**headers, **authorization},
                content=body,
                retry="invoke",
                timeout=timeout,
            )
            request.extensions["oscar_invocation"] = route
            response = yield request
            if own_token and needs_minio_user(response) and attempt == 0:
                yield from self.info()  # any /system request provisions the MinIO user (v4.1)
                continue
            if response.status_code != 401 or own_token:
                break
        assert response is not None
        if malformed_token(response):
            raise OscarClientError(
                f"OSCAR cluster {settings.name}: POST {path} answered {response.status_code}: "
                f"{response.text.strip()[:300]} (OSCAR takes OIDC access tokens as JWTs only: "
                "the connection's token is not one)",
                status_code=response.status_code,
                service=name,
            )
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

    def _remember_token(self, name: str, token: str) -> None:
        if token:
            self._on_secret(token)
            tokens.remember_service_token(self._base, name, token)
