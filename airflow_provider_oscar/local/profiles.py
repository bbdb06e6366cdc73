"""The OSCAR releases the embedded OSCAR plays, and every difference between them, named once.

Each difference is a property of :class:`Profile` whose docstring cites grycap/oscar (file,
function) and the tag that introduced it; handlers ask the profile, never the version. Struct
fields that come and go between releases are tagged in ``local/types`` (``since``/``until``), and
the routes each release registers (``main.go``) are the :data:`ROUTE_FAMILIES` below: a handler
module under ``local/handlers`` is served when its family exists at the release and the cluster
configuration enables it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["DEFAULT_VERSION", "PROFILES", "Profile", "Release", "RouteFamily", "profile_for"]


class Release(NamedTuple):
    """An OSCAR release tag, ordered (``Release.of("v4.1.0") < Release.of("v4.1.2")``)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def of(cls, tag: str) -> Release:
        match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", tag)
        if not match:
            raise ValueError(f"{tag!r} is not a release tag like v4.1.2")
        return cls(*(int(part) for part in match.groups()))

    @property
    def tag(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class RouteFamily:
    """Routes ``main.go`` registers together, served by ``local/handlers/<module>.py``.

    They exist from ``since`` (until ``until``), and only when one of ``flags`` (attributes of
    the cluster's ``types.config.Config``) is true, when flags are given.
    """

    module: str
    since: Release
    until: Release | None = None
    flags: tuple[str, ...] = ()


_R = Release.of

#: main.go at v3.6.5, v3.7.1, v4.0.0 and v4.1.2 (first tag found by reading every tag since v3.6.0).
ROUTE_FAMILIES = (
    RouteFamily("system", _R("v3.0.0")),  # /health, /system/info, /system/config, /system/status
    RouteFamily("services", _R("v3.0.0")),  # /system/services CRUD
    RouteFamily("job", _R("v3.0.0")),  # POST /job/:serviceName
    RouteFamily("run", _R("v3.0.0"), flags=("serverless_backend",)),  # only with a backend
    RouteFamily("logs", _R("v3.0.0")),  # /system/logs/:serviceName[/:jobName]
    RouteFamily("buckets", _R("v3.6.0")),  # /system/buckets CRUD (presign from v3.6.4)
    RouteFamily("system_logs", _R("v3.6.5")),  # GET /system/logs (execution log JSON)
    RouteFamily("quotas", _R("v3.7.0"), until=_R("v4.0.0")),  # /system/quotas/user[/:userId]
    RouteFamily("quotas", _R("v4.0.0"), flags=("kueue_enable", "volume_enable")),
    RouteFamily("deployment", _R("v4.0.0")),  # /system/services/:name/deployment[/logs]
    RouteFamily("metrics", _R("v4.0.0")),  # /system/metrics, /breakdown, /:serviceName
    RouteFamily("volumes", _R("v4.0.0"), flags=("volume_enable",)),  # /system/volumes CRUD
    RouteFamily("config_update", _R("v4.0.0")),  # PUT /system/config
    RouteFamily("federation", _R("v4.1.0")),  # /system/federation/:serviceName CRUD
    RouteFamily("lifecycle", _R("v4.1.0")),  # POST /system/services/:name/{stop,start,restart}
    RouteFamily("service_auth", _R("v4.1.0")),  # GET /system/services/:serviceName/auth
)


@dataclass(frozen=True)
class Profile:
    """One release as the embedded OSCAR plays it."""

    release: Release

    @property
    def version(self) -> str:
        """What ``/system/info`` reports (pkg/version, set from the release tag)."""
        return self.release.tag

    def since(self, tag: str) -> bool:
        return self.release >= Release.of(tag)

    def route_families(self, flags: dict[str, bool]) -> list[str]:
        """The handler modules this release serves with the cluster's configuration ``flags``."""
        return [
            family.module
            for family in ROUTE_FAMILIES
            if self.release >= family.since
            and (family.until is None or self.release < family.until)
            and (not family.flags or any(flags.get(flag) for flag in family.flags))
        ]

    # configuration defaults (pkg/types/config.go configVars) ---------------------------------

    @property
    def kueue_default(self) -> bool:
        """KUEUE_ENABLE defaults to true from v3.7.0; there is no Kueue before."""
        return self.since("v3.7.0")

    @property
    def volume_default(self) -> bool:
        """VOLUME_ENABLE defaults to true from v4.0.0; there are no volumes before."""
        return self.since("v4.0.0")

    # services (create.go, update.go, read.go) -----------------------------------------------

    @property
    def duplicate_create_status(self) -> int:
        """create.go MakeCreateHandler: 409 from the backend's AlreadyExists up to v4.0; from
        v4.1.0 ``serviceWithSameNameExists`` answers 400 first."""
        return 400 if self.since("v4.1.0") else 409

    @property
    def update_keeps_token(self) -> bool:
        """update.go MakeUpdateHandler copies ``oldService.Token`` from v4.0.0; before, the
        ``checkValues`` call gives every updated service a new token."""
        return self.since("v4.0.0")

    @property
    def normalises_storage_paths(self) -> bool:
        """create.go ``normalizeStoragePaths`` (v4.1.0): a bucket-only MinIO/S3 path becomes
        ``<service>/<path>``, and an empty input/output path is refused."""
        return self.since("v4.1.0")

    @property
    def user_service_labels(self) -> bool:
        """create.go (v4.0.0) adds ``oscar.grycap/user-service: "true"`` and ``owner_name``."""
        return self.since("v4.0.0")

    @property
    def read_refuses_with_403(self) -> bool:
        """read.go MakeReadHandler: from v4.0.0 a service an OIDC user may not see answers 403
        ``User <uid> doesn't have permision to get this service``; before, a private service
        of someone else falls through the ``switch`` and answers 200 with an empty body."""
        return self.since("v4.0.0")

    @property
    def validates_service_name_param(self) -> bool:
        """deployment.go ``validateServiceName`` (v4.0.0), also used by read.go: a name that is
        not a Kubernetes label value answers 400 ``invalid serviceName``."""
        return self.since("v4.0.0")

    # invocations and jobs (run.go, job.go, logs.go) --------------------------------------------

    @property
    def invocations_find_services_by_name(self) -> bool:
        """run.go/job.go look the service up with ListServicesByName from v4.0.0: an unknown
        name then fails the token check (401). Before, ReadService answers 404 first."""
        return self.since("v4.0.0")

    @property
    def invocations_check_visibility(self) -> bool:
        """run.go/job.go (v4.0.0): an OIDC caller may invoke what ``authorizeRequest`` allows
        (else 404), if enrolled in one of the cluster's VOs (``UserInOneGroup``). Before, any
        OIDC caller enrolled in the service's own ``vo`` may (``UserHasVO``, else 401)."""
        return self.since("v4.0.0")

    @property
    def delegated_job_id(self) -> bool:
        """job.go MakeJobHandler honours ``X-Delegated-Job-ID`` (DelegationHeader) from v4.1.0;
        before, every job is ``<svc>-<uuid4>`` (svc cut to 16 characters when it has 25+)."""
        return self.since("v4.1.0")

    @property
    def oidc_job_needs_minio_user(self) -> bool:
        """job.go (v4.1.0): an OIDC caller without a MinIO user gets 403 ``MinIO user not
        provisioned for <uid>; submit a direct request first``."""
        return self.since("v4.1.0")

    @property
    def lists_jobs_without_pods(self) -> bool:
        """logs.go MakeJobsInfoHandler lists Jobs and shows a pod-less one as ``Suspended``
        from v3.7.0 (``getPod``); v3.6.x lists pods, so a job without a pod is not listed."""
        return self.since("v3.7.0")

    @property
    def owner_only_logs(self) -> bool:
        """logs.go ``authorizeRequest`` from v4.0.0: an OIDC user reads the jobs of public
        services, its own, and restricted ones listing it; refused requests answer 200 with an
        empty body (403 ``You do not have permission to access this service`` on the delete of
        one job). Up to v3.7.x a service with no ``allowed_users`` is open to every OIDC user,
        and a refusal is 403 ``User <uid> doesn't have permision to get this service``."""
        return self.since("v4.0.0")

    # cluster status (status.go) -------------------------------------------------------------

    @property
    def status_reports_requests(self) -> bool:
        """types/status.go (v4.0.0) adds ``total_schedulable_*``/``max_schedulable_*`` metrics
        and per-node ``request_cores``/``request_bytes``."""
        return self.since("v4.0.0")


PROFILES = {
    "3.6": Profile(Release.of("v3.6.5")),
    "3.7": Profile(Release.of("v3.7.1")),
    "4.0": Profile(Release.of("v4.0.0")),
    "4.1": Profile(Release.of("v4.1.2")),
}
DEFAULT_VERSION = "4.1"


def profile_for(version: str | None) -> Profile:
    """The profile of a release line (``"3.7"``) or its tag (``"v3.7.1"``); default 4.1."""
    if not version:
        return PROFILES[DEFAULT_VERSION]
    wanted = version.strip().lstrip("v")
    for line, profile in PROFILES.items():
        if wanted in (line, profile.version.lstrip("v")):
            return profile
    known = ", ".join(f"{line} ({p.version})" for line, p in PROFILES.items())
    raise ValueError(f"OSCAR version {version!r} is not emulated; choose one of {known}")
