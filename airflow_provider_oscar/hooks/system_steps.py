"""Buckets, system logs, metrics and federation as I/O-free steps over
:class:`~airflow_provider_oscar.hooks.api.OscarApi` (run by
:class:`~airflow_provider_oscar.hooks.system.OscarSystemMixin` with either driver).

Arguments are checked before any request, each error naming the field; a route the cluster's
release does not have raises :class:`OscarClientError` naming the release and the
feature, without a request to it. The routes and the releases that added them, from
``main.go`` of grycap/oscar at each tag:

* ``/system/buckets`` list, create, update, delete: v3.6.0; presign: v3.6.4; ``GET
  /system/buckets/{bucket}``: v3.6.5 (``pkg/handlers/buckets/*.go``);
* ``GET /system/logs``: v3.6.5 (``pkg/handlers/logs.go`` ``MakeGetSystemLogsHandler``);
* ``/system/metrics``, ``/breakdown``, ``/{service}``: v4.0.0 (``pkg/handlers/metrics.go``);
* ``/system/federation/{service}``: v4.1.0 (``pkg/handlers/federation.go``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks import names
from airflow_provider_oscar.hooks.api import OscarApi, RetryPolicy, Step
from airflow_provider_oscar.hooks.release import OscarRelease
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

__all__ = ["METRIC_KEYS", "VISIBILITIES", "Feature"]

VISIBILITIES = ("private", "restricted", "public")  # buckets/create_bucket.go
GROUP_BY = ("service", "user", "country")  # metrics/aggregators.go Aggregator.Breakdown
METRIC_KEYS = (  # pkg/types/metrics.go MetricKeySet (v4.0.0)
    "services-count",
    "cpu-hours",
    "gpu-hours",
    "requests-sync-per-service",
    "requests-async-per-service",
    "requests-exposed-per-service",
    "requests-per-user",
    "users-per-service",
    "countries-count",
    "countries-list",
)
MEMBER_TYPES = ("oscar", "endpoint")  # resourcemanager/delegate.go
PRESIGN_MAX = {False: 3600, True: 7 * 24 * 3600}  # presign_bucket.go: before/from v4.0.0
_FEDERATION_WARNING = "Updated with federation warnings"


@dataclass(frozen=True)
class Feature:
    """Routes a release added: what they are called in messages, and the first tag."""

    what: str
    route: str
    since: tuple[int, int, int]

    def check(self, api: OscarApi, release: OscarRelease) -> None:
        if not release.since(*self.since):
            first = "v" + ".".join(map(str, self.since))
            raise OscarClientError(
                f"OSCAR cluster {api.settings.name} runs {release.version}, which has no "
                f"{self.what} ({self.route} came with OSCAR {first}): upgrade the cluster",
                status_code=404,
            )


PRESIGN = Feature("presigned URLs", "POST /system/buckets/{bucket}/presign", (3, 6, 4))
BUCKET_READ = Feature("bucket reads", "GET /system/buckets/{bucket}", (3, 6, 5))
SYSTEM_LOGS = Feature("system logs", "GET /system/logs", (3, 6, 5))
METRICS = Feature("metrics", "/system/metrics", (4, 0, 0))
FEDERATION = Feature("federation API", "/system/federation/{service}", (4, 1, 0))


def _require(api: OscarApi, feature: Feature) -> Step[OscarRelease]:
    release = yield from api.release()
    feature.check(api, release)
    return release


def _bad(api: OscarApi, message: str) -> OscarClientError:
    return OscarClientError(f"OSCAR cluster {api.settings.name}: {message}")


def _oidc(api: OscarApi) -> bool:
    return bool(api.settings.oidc_token or api.settings.refresh_token)


# buckets --------------------------------------------------------------------------------------


def _check_visibility(
    api: OscarApi, visibility: object, allowed_users: Iterable[str] | None
) -> list[str]:
    if visibility not in VISIBILITIES:
        raise _bad(api, f"visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}")
    users = [] if allowed_users is None else list(allowed_users)
    if isinstance(allowed_users, str) or any(not isinstance(u, str) or not u for u in users):
        raise _bad(api, "allowed_users must be a list of user ids (non-empty strings)")
    if users and visibility != "restricted":
        raise _bad(api, f"allowed_users applies to restricted buckets only, not {visibility}")
    return users


def list_buckets(api: OscarApi) -> Step[list[Bucket]]:
    response = yield from api.system("GET", "/system/buckets")
    return [Bucket.from_api(row) for row in response.json() or []]


def get_bucket(api: OscarApi, name: str) -> Step[Bucket | None]:
    """The bucket, or ``None`` when it does not exist (get_bucket.go answers 500
    ``NoSuchBucket`` then)."""
    path = f"/system/buckets/{api.segment(names.bucket, name)}"
    yield from _require(api, BUCKET_READ)
    headers = yield from api.system_auth()
    response = yield api.request("GET", path, headers=headers, retry="logs")
    if response.status_code == 500 and "NoSuchBucket" in response.text:
        return None
    api.check(response)
    return Bucket.from_api(response.json())


def create_bucket(
    api: OscarApi, name: str, visibility: str, allowed_users: Iterable[str] | None
) -> Step[None]:
    """create_bucket.go: the bucket is tagged with its owner; policies (hence visibility) are
    set only for an OIDC caller, so the admin's buckets have none."""
    api.segment(names.bucket, name)
    users = _check_visibility(api, visibility, allowed_users)
    if not _oidc(api) and (visibility != "private" or users):
        raise _bad(
            api,
            f"visibility {visibility!r} cannot be given to a bucket the cluster admin creates: "
            "OSCAR sets bucket policies for OIDC users only (connect with an OIDC token)",
        )
    body = {"bucket_name": name, "visibility": visibility, "allowed_users": users}
    yield from api.system("POST", "/system/buckets", json=body, retry="invoke")


def set_bucket_visibility(
    api: OscarApi, name: str, visibility: str, allowed_users: Iterable[str] | None
) -> Step[Bucket]:
    """update_bucket.go, then a read-back: OSCAR answers 204 without a change for a bucket
    that is neither public nor in the caller's policy, and for a service's bucket 403."""
    api.segment(names.bucket, name)
    users = _check_visibility(api, visibility, allowed_users)
    body = {"bucket_name": name, "visibility": visibility, "allowed_users": users}
    yield from api.system("PUT", "/system/buckets", json=body)
    buckets = yield from list_buckets(api)
    found = next((b for b in buckets if b.name == name), None)
    if (
        found is None
        or found.visibility != visibility
        or not set(users) <= set(found.allowed_users)
    ):
        now = f"{found.visibility or 'no policy'}" if found else "not listed to this connection"
        raise OscarClientError(
            f"OSCAR cluster {api.settings.name}: bucket {name!r} is still {now} after OSCAR "
            f"accepted visibility {visibility!r}: OSCAR changes only public buckets and those "
            "in the caller's own policy (buckets of an OIDC user, changed with that user's "
            "token)",
            status_code=403,
        )
    return found


def delete_bucket(api: OscarApi, name: str) -> Step[bool]:
    path = f"/system/buckets/{api.segment(names.bucket, name)}"
    headers = yield from api.system_auth()
    response = yield api.request("DELETE", path, headers=headers)
    if response.status_code == 404:
        return False
    api.check(response)
    return True


def presign(
    api: OscarApi,
    bucket: str,
    key: str,
    operation: str,
    expires: int,
    content_type: str,
    extra_headers: Mapping[str, str] | None,
) -> Step[PresignedUrl]:
    path = f"/system/buckets/{api.segment(names.bucket, bucket)}/presign"
    key = api.segment(names.key, key)
    if operation not in ("upload", "download"):
        raise _bad(api, f"operation {operation!r} must be 'upload' or 'download'")
    longest = PRESIGN_MAX[True]
    if isinstance(expires, bool) or not isinstance(expires, int) or not 1 <= expires <= longest:
        raise _bad(api, f"expires {expires!r} must be whole seconds from 1 to {longest}")
    headers = dict(extra_headers or {})
    if not isinstance(content_type, str) or any(
        not isinstance(k, str) or not isinstance(v, str) for k, v in headers.items()
    ):
        raise _bad(api, "content_type and extra_headers must be strings")
    release = yield from _require(api, PRESIGN)
    longest = PRESIGN_MAX[release.since(4, 0)]
    if expires > longest:
        raise _bad(
            api, f"expires {expires} is over {longest} s, the longest {release.version} signs"
        )
    body = {
        "object_key": key,
        "operation": operation,
        "expires_in": expires,
        "content_type": content_type,
        "extra_headers": headers,
    }
    response = yield from api.system("POST", path, json=body)
    return PresignedUrl.from_api(response.json())


# system logs ----------------------------------------------------------------------------------


def system_logs(api: OscarApi, timestamps: bool) -> Step[list[ExecutionLogEntry]]:
    """logs.go ``MakeGetSystemLogsHandler``: the cluster admin's (or a ``USERS_ADMIN``
    OIDC user's) view of the ``/run`` and ``/job`` requests OSCAR served."""
    yield from _require(api, SYSTEM_LOGS)
    params = {"timestamps": "true"} if timestamps else None
    response = yield from api.system("GET", "/system/logs", params=params)
    return [ExecutionLogEntry.from_api(row) for row in (response.json() or {}).get("logs") or []]


# metrics --------------------------------------------------------------------------------------


def _time_range(api: OscarApi, start: datetime | None, end: datetime | None) -> dict[str, str]:
    """metrics.go ``parseTimeRange`` takes RFC 3339 (default: the last 24 hours)."""
    params: dict[str, str] = {}
    for field, moment in (("start", start), ("end", end)):
        if moment is None:
            continue
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise _bad(api, f"{field} must be a timezone-aware datetime, not {moment!r}")
        params[field] = moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if start is not None and end is not None and end < start:
        raise _bad(api, f"end {end.isoformat()} is before start {start.isoformat()}")
    return params


def metrics_summary(
    api: OscarApi, start: datetime | None, end: datetime | None
) -> Step[MetricsSummary]:
    params = _time_range(api, start, end)
    yield from _require(api, METRICS)
    response = yield from api.system("GET", "/system/metrics", params=params)
    return MetricsSummary.from_api(response.json())


def _breakdown_params(
    api: OscarApi, group_by: str, start: datetime | None, end: datetime | None
) -> dict[str, str]:
    if group_by not in GROUP_BY:
        raise _bad(api, f"group_by {group_by!r} is not one of {', '.join(GROUP_BY)}")
    return {**_time_range(api, start, end), "group_by": group_by}


def metrics_breakdown(
    api: OscarApi,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    include_users: bool,
) -> Step[MetricsBreakdown]:
    params = _breakdown_params(api, group_by, start, end)
    if include_users:
        params["include_users"] = "true"
    yield from _require(api, METRICS)
    response = yield from api.system("GET", "/system/metrics/breakdown", params=params)
    return MetricsBreakdown.from_api(response.json())


def metrics_breakdown_csv(
    api: OscarApi, group_by: str, start: datetime | None, end: datetime | None
) -> Step[str]:
    """The breakdown as OSCAR writes it in CSV (``renderBreakdownCSV``), header first."""
    params = {**_breakdown_params(api, group_by, start, end), "format": "csv"}
    yield from _require(api, METRICS)
    response = yield from api.system("GET", "/system/metrics/breakdown", params=params)
    return response.text


def service_metrics(
    api: OscarApi, service: str, start: datetime | None, end: datetime | None
) -> Step[ServiceMetrics]:
    path = f"/system/metrics/{api.segment(names.service, service)}"
    params = _time_range(api, start, end)
    yield from _require(api, METRICS)
    response = yield from api.system("GET", path, service, params=params)
    return ServiceMetrics.from_api(response.json())


def service_metric(
    api: OscarApi, service: str, metric: str, start: datetime | None, end: datetime | None
) -> Step[MetricValue]:
    path = f"/system/metrics/{api.segment(names.service, service)}"
    if metric not in METRIC_KEYS:
        raise _bad(api, f"metric {metric!r} is not one of {', '.join(METRIC_KEYS)}")
    params = {**_time_range(api, start, end), "metric": metric}
    yield from _require(api, METRICS)
    response = yield from api.system("GET", path, service, params=params)
    return MetricValue.from_api(response.json())


# federation -----------------------------------------------------------------------------------


def _check_members(api: OscarApi, members: Iterable[FederationMember]) -> list[FederationMember]:
    listed = list(members)
    if not listed:
        raise _bad(api, "members is empty: name at least one federation member")
    for index, member in enumerate(listed):
        where = f"members[{index}]"
        if not isinstance(member, FederationMember):
            raise _bad(api, f"{where} must be a FederationMember, not {type(member).__name__}")
        kind = member.type.lower()
        if kind not in MEMBER_TYPES:
            raise _bad(api, f"{where}.type {member.type!r} is not one of {', '.join(MEMBER_TYPES)}")
        if isinstance(member.priority, bool) or not isinstance(member.priority, int):
            raise _bad(api, f"{where}.priority must be a whole number")
        if member.priority < 0:
            raise _bad(api, f"{where}.priority {member.priority} is negative")
        if kind == "oscar":
            if not member.cluster_id:
                raise _bad(api, f"{where}.cluster_id is empty: an oscar member names its cluster")
            api.segment(names.service, member.service_name)
        elif not member.url.startswith(("http://", "https://")):
            raise _bad(api, f"{where}.url {member.url!r} is not an http(s) URL")
    return listed


def _federation_path(api: OscarApi, service: str) -> str:
    return f"/system/federation/{api.segment(names.service, service)}"


def _no_service(api: OscarApi, service: str) -> OscarClientError:
    return OscarClientError(
        f"OSCAR cluster {api.settings.name}: service {service!r} does not exist",
        status_code=404,
        service=service,
    )


def get_federation(api: OscarApi, service: str) -> Step[Federation]:
    path = _federation_path(api, service)
    yield from _require(api, FEDERATION)
    headers = yield from api.system_auth()
    response = yield api.request("GET", path, headers=headers)
    if response.status_code == 404:
        raise _no_service(api, service)
    api.check(response, service)
    return Federation.from_api(response.json())


def _change_federation(
    api: OscarApi, method: str, service: str, body: dict[str, Any]
) -> Step[Federation]:
    """Send a change; federation.go answers the new federation, or 200 with a text of
    warnings when it was stored but not propagated to every member (read back then)."""
    path = _federation_path(api, service)
    headers = yield from api.system_auth()
    retry: RetryPolicy = "invoke" if method == "POST" else "idempotent"
    response = yield api.request(method, path, headers=headers, json=body, retry=retry)
    if response.status_code == 404:
        raise _no_service(api, service)
    api.check(response, service)
    if response.text.startswith(_FEDERATION_WARNING):
        stored = yield from get_federation(api, service)
        return Federation(stored.topology, stored.members, response.text.strip())
    return Federation.from_api(response.json())


def add_federation_members(
    api: OscarApi,
    service: str,
    members: Iterable[FederationMember],
    clusters: Mapping[str, Mapping[str, Any]] | None,
) -> Step[Federation]:
    """federation.go ``MakeFederationPostHandler`` appends the members as sent: a member
    already there (same type, cluster and service) is refused here, as is an ``oscar``
    member whose cluster the service does not know (delegate.go skips it: "Cluster not
    defined")."""
    api.segment(names.service, service)
    added = _check_members(api, members)
    known_clusters = dict(clusters or {})
    if any(not isinstance(v, Mapping) or not v.get("endpoint") for v in known_clusters.values()):
        raise _bad(api, "clusters must map cluster ids to mappings with an 'endpoint'")
    yield from _require(api, FEDERATION)
    stored = yield from api.get_service(service)
    if stored is None:
        raise _no_service(api, service)
    current = Federation.from_api(stored.federation or {}).members
    known = set(stored.clusters or {}) | set(known_clusters)
    for index, member in enumerate(added):
        if any(member.same_as(m) for m in (*current, *added[:index])):
            raise _bad(api, f"members[{index}]: {member.describe()} is already a member")
        if member.type.lower() == "oscar" and member.cluster_id not in known:
            raise _bad(
                api,
                f"members[{index}].cluster_id {member.cluster_id!r} is not among the clusters "
                f"of service {service!r}: pass it in clusters={{...}}",
            )
    body: dict[str, Any] = {"members": [m.to_api() for m in added]}
    if known_clusters:
        body["clusters"] = {k: dict(v) for k, v in known_clusters.items()}
    return (yield from _change_federation(api, "POST", service, body))


def _existing(api: OscarApi, service: str, members: list[FederationMember]) -> Step[Federation]:
    current = yield from get_federation(api, service)
    for index, member in enumerate(members):
        if not any(member.same_as(m) for m in current.members):
            raise _bad(api, f"members[{index}]: {member.describe()} is not a member of {service!r}")
    return current


def update_federation_member(
    api: OscarApi, service: str, member: FederationMember, replacement: FederationMember
) -> Step[Federation]:
    """federation.go ``MakeFederationPutHandler``: the member is replaced by ``replacement``
    (its priority changed, say)."""
    (target,) = _check_members(api, [member])
    (new,) = _check_members(api, [replacement])
    api.segment(names.service, service)
    yield from _require(api, FEDERATION)
    yield from _existing(api, service, [target])
    body = {"members": [target.to_api()], "update": [new.to_api()]}
    return (yield from _change_federation(api, "PUT", service, body))


def remove_federation_members(
    api: OscarApi, service: str, members: Iterable[FederationMember]
) -> Step[Federation]:
    """federation.go ``MakeFederationDeleteHandler`` without ``delete``: only the service's
    member list changes (with ``delete: true`` OSCAR would also delete the *local* services
    named like the members, usually the service itself, so it is never sent)."""
    removed = _check_members(api, members)
    api.segment(names.service, service)
    yield from _require(api, FEDERATION)
    yield from _existing(api, service, removed)
    body = {"members": [m.to_api() for m in removed]}
    return (yield from _change_federation(api, "DELETE", service, body))
