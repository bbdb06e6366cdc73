"""``OscarHook``'s buckets, system logs, metrics and federation (:class:`OscarSystemMixin`).

Blocking methods for operators, ``a``-prefixed awaitable ones for the reads a trigger needs.
The steps, the rules they check and the releases they need are in :mod:`.system_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from airflow_provider_oscar.hooks import system_steps as steps
from airflow_provider_oscar.hooks.system_models import (
    Bucket,
    ExecutionLogEntry,
    Federation,
    FederationMember,
    MetricsBreakdown,
    MetricsSummary,
    MetricValue,
    PresignedUrl,
    ServiceMetrics,
)

if TYPE_CHECKING:
    from airflow_provider_oscar.hooks.api import OscarApi, Step

T = TypeVar("T")
Visibility = Literal["private", "restricted", "public"]
GroupBy = Literal["service", "user", "country"]


class OscarSystemMixin:
    """Buckets, system logs, metrics and federation members of the hook's cluster."""

    if TYPE_CHECKING:
        log: Any

        def call(self, operation: Callable[[OscarApi], Step[T]]) -> T: ...

        async def acall(self, operation: Callable[[OscarApi], Step[T]]) -> T: ...

    # buckets ----------------------------------------------------------------------------------

    def list_buckets(self) -> list[Bucket]:
        """The buckets the connection's user may list (the admin: all of them)."""
        return self.call(steps.list_buckets)

    async def alist_buckets(self) -> list[Bucket]:
        return await self.acall(steps.list_buckets)

    def get_bucket(self, name: str) -> Bucket | None:
        """The bucket (OSCAR 3.6.5 and later), or ``None`` when it does not exist.

        OSCAR refuses an OIDC user a bucket without a policy (403) before it looks the bucket
        up, so for OIDC connections a missing bucket raises :class:`OscarClientError` instead.
        """
        return self.call(partial(steps.get_bucket, name=name))

    def create_bucket(
        self,
        name: str,
        *,
        visibility: Visibility = "private",
        allowed_users: Iterable[str] | None = None,
    ) -> None:
        """Create a bucket owned by the connection's user.

        ``allowed_users`` (user ids) go with ``visibility="restricted"``. OSCAR gives buckets
        a visibility only when an OIDC user creates them; the cluster admin's have no policy,
        so asking the admin's connection for another visibility is refused.
        """
        self.call(
            partial(
                steps.create_bucket, name=name, visibility=visibility, allowed_users=allowed_users
            )
        )

    def set_bucket_visibility(
        self, name: str, visibility: Visibility, *, allowed_users: Iterable[str] | None = None
    ) -> Bucket:
        """Make a bucket private, restricted (to ``allowed_users``) or public; the bucket as
        read back. Raises when OSCAR accepted the change but did not make it (the bucket is
        not public and not in the caller's policy, as with the admin's own buckets)."""
        return self.call(
            partial(
                steps.set_bucket_visibility,
                name=name,
                visibility=visibility,
                allowed_users=allowed_users,
            )
        )

    def delete_bucket(self, name: str) -> bool:
        """Delete a bucket and its objects; ``False`` when there was none of that name."""
        return self.call(partial(steps.delete_bucket, name=name))

    def presign(
        self,
        bucket: str,
        key: str,
        *,
        operation: Literal["upload", "download"],
        expires: int = 900,
        content_type: str = "",
        extra_headers: Mapping[str, str] | None = None,
    ) -> PresignedUrl:
        """A presigned URL from OSCAR to ``upload`` or ``download`` ``key`` of ``bucket``.

        ``expires`` in seconds: at most one hour before OSCAR 4.0, seven days from 4.0.
        ``content_type`` (and ``extra_headers``) are signed: send them with the upload.
        """
        return self.call(
            partial(
                steps.presign,
                bucket=bucket,
                key=key,
                operation=operation,
                expires=expires,
                content_type=content_type,
                extra_headers=extra_headers,
            )
        )

    # system logs ------------------------------------------------------------------------------

    def get_system_logs(self, *, timestamps: bool = False) -> list[ExecutionLogEntry]:
        """The ``/run`` and ``/job`` requests OSCAR logged (the admin, or OIDC users listed
        in the cluster's ``USERS_ADMIN``; others get 403)."""
        return self.call(partial(steps.system_logs, timestamps=timestamps))

    async def aget_system_logs(self, *, timestamps: bool = False) -> list[ExecutionLogEntry]:
        return await self.acall(partial(steps.system_logs, timestamps=timestamps))

    # metrics (OSCAR 4.0 and later) ------------------------------------------------------------

    def get_metrics_summary(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> MetricsSummary:
        """The cluster's totals from ``start`` to ``end`` (aware datetimes; OSCAR's default:
        the last 24 hours). An OIDC user's figures cover the services it may use."""
        return self.call(partial(steps.metrics_summary, start=start, end=end))

    async def aget_metrics_summary(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> MetricsSummary:
        return await self.acall(partial(steps.metrics_summary, start=start, end=end))

    def get_metrics_breakdown(
        self,
        group_by: GroupBy,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        include_users: bool = False,
    ) -> MetricsBreakdown:
        """The figures per service, user or country (``include_users``: each service's users)."""
        return self.call(
            partial(
                steps.metrics_breakdown,
                group_by=group_by,
                start=start,
                end=end,
                include_users=include_users,
            )
        )

    def get_metrics_breakdown_csv(
        self, group_by: GroupBy, *, start: datetime | None = None, end: datetime | None = None
    ) -> str:
        """The breakdown as OSCAR exports it in CSV (header line first)."""
        return self.call(
            partial(steps.metrics_breakdown_csv, group_by=group_by, start=start, end=end)
        )

    def get_service_metrics(
        self, service: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> ServiceMetrics:
        """Every per-service metric of ``service`` (CPU and GPU hours, requests, users)."""
        return self.call(partial(steps.service_metrics, service=service, start=start, end=end))

    async def aget_service_metrics(
        self, service: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> ServiceMetrics:
        return await self.acall(
            partial(steps.service_metrics, service=service, start=start, end=end)
        )

    def get_service_metric(
        self,
        service: str,
        metric: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> MetricValue:
        """One metric (a key of :data:`~.system_steps.METRIC_KEYS`) of ``service``."""
        return self.call(
            partial(steps.service_metric, service=service, metric=metric, start=start, end=end)
        )

    # federation (OSCAR 4.1 and later) --------------------------------------------------------

    def get_federation(self, service: str) -> Federation:
        """The service's federation topology and members."""
        return self.call(partial(steps.get_federation, service=service))

    async def aget_federation(self, service: str) -> Federation:
        return await self.acall(partial(steps.get_federation, service=service))

    def add_federation_members(
        self,
        service: str,
        members: Iterable[FederationMember],
        *,
        clusters: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Federation:
        """Add members; ``clusters`` adds cluster definitions (``{"id": {"endpoint": ...,
        "auth_user": ..., "auth_password": ..., "ssl_verify": ...}}``) the members name."""
        return self._warned(
            self.call(
                partial(
                    steps.add_federation_members,
                    service=service,
                    members=members,
                    clusters=clusters,
                )
            )
        )

    def update_federation_member(
        self, service: str, member: FederationMember, replacement: FederationMember
    ) -> Federation:
        """Replace ``member`` (found by type, cluster and service name) with ``replacement``:
        e.g. ``dataclasses.replace(member, priority=5)``."""
        return self._warned(
            self.call(
                partial(
                    steps.update_federation_member,
                    service=service,
                    member=member,
                    replacement=replacement,
                )
            )
        )

    def remove_federation_members(
        self, service: str, members: Iterable[FederationMember]
    ) -> Federation:
        """Remove members from the service's federation (the remote services stay)."""
        return self._warned(
            self.call(partial(steps.remove_federation_members, service=service, members=members))
        )

    def _warned(self, federation: Federation) -> Federation:
        if federation.warnings:
            self.log.warning("OSCAR stored the federation change: %s", federation.warnings)
        return federation
