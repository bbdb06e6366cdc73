"""``OscarHook``: one OSCAR cluster through an Airflow connection of type ``oscar``.

Every operation has a blocking form (``hook.list_jobs(svc)``) for operators and an awaitable
form (``await hook.alist_jobs(svc)``) for triggers; the async form reads the connection with
``aget_connection`` and talks through :class:`httpx.AsyncClient`, so it never blocks the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from airflow.sdk import BaseHook

from airflow_provider_oscar.connection_form import CONNECTION_FIELDS, UI_BEHAVIOUR
from airflow_provider_oscar.fdl import Service, load_fdl, parse_service
from airflow_provider_oscar.hooks.api import (
    ClusterSettings,
    JobInfo,
    OscarApi,
    RunResponse,
    Step,
)
from airflow_provider_oscar.hooks.connection import settings_from_connection, unverified_urls
from airflow_provider_oscar.hooks.release import OscarRelease
from airflow_provider_oscar.hooks.system import OscarSystemMixin
from airflow_provider_oscar.hooks.transport import AsyncDriver, Driver, RetryPolicy, client_options

if TYPE_CHECKING:
    from oscar_python.client import Client

T = TypeVar("T")
Input = bytes | str | Mapping[str, Any] | list[Any]


class OscarHook(OscarSystemMixin, BaseHook):
    """Talk to an OSCAR cluster: services, invocations, jobs, logs and buckets.

    :param oscar_conn_id: the Airflow connection (type ``oscar``) of the cluster.
    """

    conn_name_attr = "oscar_conn_id"
    default_conn_name = "oscar_default"
    conn_type = "oscar"
    hook_name = "OSCAR"

    def __init__(self, oscar_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.oscar_conn_id = oscar_conn_id

    # connection form ----------------------------------------------------------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (Airflow < 3.2 reads these)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, PasswordField, StringField

        widgets: dict[str, Any] = {}
        for key, spec in CONNECTION_FIELDS.items():
            label, description = lazy_gettext(spec["label"]), spec["description"]
            types = spec["schema"]["type"]
            if "boolean" in types:
                widgets[key] = BooleanField(label, description=description, default=True)
            elif spec["schema"].get("format") == "password":
                widgets[key] = PasswordField(
                    label, widget=BS3PasswordFieldWidget(), description=description
                )
            else:
                widgets[key] = StringField(
                    label, widget=BS3TextFieldWidget(), description=description
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and placeholder fields of the connection form."""
        return UI_BEHAVIOUR

    def test_connection(self) -> tuple[bool, str]:
        """Check ``/health`` and an authenticated ``/system/info``; never raises.

        One attempt each, without the retries: a button in the UI should answer at once.
        """
        try:
            settings = replace(self.settings, retries=0)
            driver = Driver(self.get_conn(), RetryPolicy(settings, self.log))
            api = OscarApi(settings, on_secret=_mask_value)
            if not driver(api.health()):
                return False, f"OSCAR at {settings.endpoint} is not healthy"
            info = driver(api.info())
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to OSCAR {info.get('version', '?')} at {self.settings.endpoint}"

    # settings and clients -----------------------------------------------------------------

    @cached_property
    def settings(self) -> ClusterSettings:
        conn = self.get_connection(self.oscar_conn_id)
        settings = settings_from_connection(conn)
        _mask(settings)
        self._warn_if_unverified(settings)
        return settings

    async def asettings(self) -> ClusterSettings:
        """The settings, read with the awaitable connection lookup (for triggers)."""
        conn = await self.aget_connection(self.oscar_conn_id)
        settings = settings_from_connection(conn)
        for secret in (settings.password, settings.oidc_token, settings.refresh_token):
            await _amask_value(secret)
        self._warn_if_unverified(settings)
        return settings

    def _warn_if_unverified(self, settings: ClusterSettings) -> None:
        """Say in the task log, once per hook, that TLS certificates go unchecked."""
        urls = unverified_urls(settings)
        if urls and not getattr(self, "_warned_unverified", False):
            self._warned_unverified = True
            self.log.warning(
                "OSCAR cluster %s: verify_ssl is false, so the TLS certificates of %s are not "
                "checked: anyone on the network path can impersonate them and read the "
                "credentials sent there. Use it for test clusters only.",
                settings.name,
                ", ".join(urls),
            )

    @cached_property
    def api(self) -> OscarApi:
        return OscarApi(self.settings, on_secret=_mask_value)

    def get_conn(self) -> httpx.Client:
        """The hook's HTTP client (created on first use, reused for its lifetime)."""
        return self._client

    @cached_property
    def _client(self) -> httpx.Client:
        return httpx.Client(**client_options(self.settings))

    def close(self) -> None:
        """Close the hook's HTTP client (a later call opens a new one)."""
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()

    def call(self, operation: Callable[[OscarApi], Step[T]]) -> T:
        """Run an API operation with the blocking client."""
        driver = Driver(self.get_conn(), RetryPolicy(self.settings, self.log))
        return driver(operation(self.api))

    async def acall(self, operation: Callable[[OscarApi], Step[T]]) -> T:
        """Run an API operation with an async client; the connection is read awaitably."""
        settings = await self.asettings()
        found: list[str] = []
        api = OscarApi(settings, on_secret=found.append)
        try:
            async with httpx.AsyncClient(**client_options(settings)) as client:
                return await AsyncDriver(client, RetryPolicy(settings, self.log))(operation(api))
        finally:
            for secret in found:
                await _amask_value(secret)

    @asynccontextmanager
    async def asession(
        self, *, settings: ClusterSettings | None = None, max_connections: int = 100
    ) -> AsyncIterator[OscarAsyncSession]:
        """Many awaitable operations over one HTTP client (connections are reused).

        ``async with hook.asession() as session: await session.arun_service(...)`` offers the
        hook's ``a*`` operations; ``settings`` (e.g. read once with :attr:`settings` before an
        event loop starts) skips the awaitable connection lookup.
        """
        settings = settings or await self.asettings()
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        async with httpx.AsyncClient(**client_options(settings), limits=limits) as client:
            yield OscarAsyncSession(settings, client, self.log)

    def get_oscar_client(self) -> Client:
        """An oscar-python ``Client`` configured from the same connection."""
        from oscar_python.client import Client

        settings = self.settings
        options: dict[str, Any] = {
            "cluster_id": settings.cluster_id or self.oscar_conn_id,
            "endpoint": settings.endpoint,
            "ssl": bool(settings.verify_ssl),
        }
        if settings.oidc_token or settings.refresh_token:
            options["oidc_token"] = settings.oidc_token
            if settings.refresh_token:
                options.update(
                    refresh_token=settings.refresh_token,
                    token_endpoint=settings.token_endpoint,
                    client_id=settings.client_id,
                    scopes=settings.scopes,
                )
        else:
            options.update(user=settings.user, password=settings.password or "")
        return Client(options)

    # cluster ------------------------------------------------------------------------------

    def get_info(self) -> dict[str, Any]:
        return self.call(lambda api: api.info())

    def release(self) -> OscarRelease:
        """The cluster's OSCAR release (read once per process and connection)."""
        return self.call(lambda api: api.release())

    async def arelease(self) -> OscarRelease:
        return await self.acall(lambda api: api.release())

    def get_config(self) -> dict[str, Any]:
        return self.call(lambda api: api.config())

    def get_status(self) -> dict[str, Any]:
        return self.call(lambda api: api.status())

    async def aget_status(self) -> dict[str, Any]:
        return await self.acall(lambda api: api.status())

    # services -----------------------------------------------------------------------------

    def list_services(self) -> list[Service]:
        return self.call(lambda api: api.list_services())

    def get_service(self, name: str) -> Service | None:
        return self.call(lambda api: api.get_service(name))

    def apply_service(
        self, definition: str | Path | Mapping[str, Any] | Service, cluster_id: str | None = None
    ) -> dict[str, str]:
        """Create or update services from an FDL file, FDL/YAML text, a mapping or a Service.

        A mapping with ``functions`` is an FDL document; any other mapping is one service.
        Returns ``{service name: "created" | "updated"}``.
        """
        services = self._services_of(definition, cluster_id)
        return {s.name: self.call(partial(OscarApi.apply_service, service=s)) for s in services}

    def delete_service(self, name: str) -> bool:
        return self.call(lambda api: api.delete_service(name))

    def get_deployment(self, name: str) -> dict[str, Any]:
        return self.call(lambda api: api.deployment(name))

    async def aget_deployment(self, name: str) -> dict[str, Any]:
        return await self.acall(lambda api: api.deployment(name))

    def get_readiness(self, name: str) -> dict[str, Any]:
        """The deployment status with ``readiness`` (see :meth:`OscarApi.readiness`)."""
        return self.call(lambda api: api.readiness(name))

    async def aget_readiness(self, name: str) -> dict[str, Any]:
        return await self.acall(lambda api: api.readiness(name))

    def get_deployment_logs(self, name: str) -> dict[str, Any]:
        return self.call(lambda api: api.deployment_logs(name))

    def get_service_token(self, name: str, *, refresh: bool = False) -> str:
        return self.call(lambda api: api.service_token(name, refresh=refresh))

    # invocations --------------------------------------------------------------------------

    def run_service(self, name: str, data: Input, *, timeout: float | None = None) -> RunResponse:
        """Invoke ``/run/{name}`` synchronously; the body is OSCAR's raw answer."""
        return self.call(lambda api: api.run(name, data, timeout))

    def submit_job(self, name: str, data: Input, *, job_name: str | None = None) -> bool:
        """Invoke ``/job/{name}``; whether a job was created.

        OSCAR answers without the job's name. From OSCAR 4.1 ``job_name`` names the job, and a
        job of that name that exists already is not submitted again (``False``); earlier
        releases ignore it (see :mod:`~airflow_provider_oscar.hooks.correlation`).
        """
        return self.call(lambda api: api.submit_job(name, data, job_name))

    # jobs ---------------------------------------------------------------------------------

    def list_jobs(self, name: str) -> dict[str, JobInfo]:
        return self.call(lambda api: api.list_jobs(name))

    async def alist_jobs(self, name: str) -> dict[str, JobInfo]:
        return await self.acall(lambda api: api.list_jobs(name))

    def get_job_logs(self, name: str, job: str, *, timestamps: bool = False) -> str | None:
        return self.call(lambda api: api.job_logs(name, job, timestamps=timestamps))

    async def aget_job_logs(self, name: str, job: str) -> str | None:
        return await self.acall(lambda api: api.job_logs(name, job))

    def delete_job(self, name: str, job: str) -> bool:
        return self.call(lambda api: api.delete_job(name, job))

    async def adelete_job(self, name: str, job: str) -> bool:
        return await self.acall(lambda api: api.delete_job(name, job))

    def delete_jobs(self, name: str, *, everything: bool = False) -> None:
        self.call(lambda api: api.delete_jobs(name, everything=everything))

    @staticmethod
    def _services_of(
        definition: str | Path | Mapping[str, Any] | Service, cluster_id: str | None
    ) -> list[Service]:
        if isinstance(definition, Service):
            return [definition]
        if isinstance(definition, Mapping) and "functions" not in definition:
            return [parse_service(dict(definition))]
        if isinstance(definition, Mapping):
            return load_fdl(dict(definition), cluster_id)
        return load_fdl(definition, cluster_id)


class OscarAsyncSession:
    """The hook's awaitable operations over one open :class:`httpx.AsyncClient`.

    Made by :meth:`OscarHook.asession`; valid inside its ``async with`` block. Secrets met on the
    way (service tokens, refreshed OIDC tokens) are masked in the task log.
    """

    def __init__(self, settings: ClusterSettings, client: httpx.AsyncClient, log: Any) -> None:
        self.settings = settings
        self._found: list[str] = []
        self.api = OscarApi(settings, on_secret=self._found.append)
        self._driver = AsyncDriver(client, RetryPolicy(settings, log))

    async def acall(self, operation: Callable[[OscarApi], Step[T]]) -> T:
        """Run an API operation over the session's client."""
        try:
            return await self._driver(operation(self.api))
        finally:
            while self._found:
                await _amask_value(self._found.pop())

    async def aget_status(self) -> dict[str, Any]:
        return await self.acall(lambda api: api.status())

    async def aget_config(self) -> dict[str, Any]:
        return await self.acall(lambda api: api.config())

    async def aget_service(self, name: str) -> Service | None:
        return await self.acall(lambda api: api.get_service(name))

    async def aget_deployment(self, name: str) -> dict[str, Any]:
        return await self.acall(lambda api: api.deployment(name))

    async def arun_service(
        self, name: str, data: Input, *, timeout: float | None = None
    ) -> RunResponse:
        """``POST /run/{name}`` (see :meth:`OscarHook.run_service`)."""
        return await self.acall(lambda api: api.run(name, data, timeout))

    async def asubmit_job(self, name: str, data: Input, *, job_name: str | None = None) -> bool:
        """``POST /job/{name}`` (see :meth:`OscarHook.submit_job`)."""
        return await self.acall(lambda api: api.submit_job(name, data, job_name))

    async def arelease(self) -> OscarRelease:
        return await self.acall(lambda api: api.release())

    async def alist_jobs(self, name: str) -> dict[str, JobInfo]:
        return await self.acall(lambda api: api.list_jobs(name))

    async def aget_job_logs(self, name: str, job: str) -> str | None:
        return await self.acall(lambda api: api.job_logs(name, job))

    async def adelete_job(self, name: str, job: str) -> bool:
        return await self.acall(lambda api: api.delete_job(name, job))


def _mask_value(value: str | None) -> None:
    if value:
        from airflow.sdk.log import mask_secret

        mask_secret(value)


async def _amask_value(value: str | None) -> None:
    """Mask a secret from async code without blocking the loop (Airflow 3.2+ has a coroutine)."""
    if value:
        from airflow.sdk import log

        masker = getattr(log, "amask_secret", None)
        if masker is None:
            log.mask_secret(value)
        else:
            await masker(value)


def _mask(settings: ClusterSettings) -> None:
    for secret in (settings.password, settings.oidc_token, settings.refresh_token):
        _mask_value(secret)
