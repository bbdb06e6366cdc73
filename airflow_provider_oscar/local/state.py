"""The embedded OSCAR's store: services and their Kubernetes Jobs, changed as the real
handlers change them (create.go, update.go, delete.go, job.go, logs.go), by the rules in
:mod:`.rules`.

Nothing here knows HTTP or runs scripts; release differences come from the :class:`Profile`.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.rules import (
    DNS_LABEL,
    KUEUE_QUEUE_LABEL,
    Forbidden,
    Invalid,
    NotFound,
    StateError,
    check_creatable,
    check_deployable,
    check_storage_path,
    check_values,
    check_volume,
    continue_start,
    continue_token,
    duplicate_error,
    local_queue_name,
    may_see,
    normalise_storage_paths,
    same_volume,
    user_namespace,
)
from airflow_provider_oscar.local.storage import S3Settings
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.jobinfo import JobInfo, JobsResponse
from airflow_provider_oscar.local.types.quantity import bytes_of, millicores
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER, Service
from airflow_provider_oscar.local.types.storage import MinIOProvider


class JobStatus(str, Enum):
    """The pod phase of a job (``Suspended`` while it has no pod)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime | None) -> str | None:
    """metav1.Time's JSON form (second precision, UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class Caller:
    """Who is asking: the admin (Basic) or an OIDC subject (configured bearer token)."""

    subject: str
    admin: bool
    authorization: str = ""  # the request's header, forwarded to federation members
    groups: tuple[str, ...] = ()  # an OIDC caller's groups (VOs)

    @property
    def owner(self) -> str:
        return DEFAULT_OWNER if self.admin else self.subject


@dataclass
class Job:
    """One asynchronous execution: a Kubernetes Job and, once it has one, its pod."""

    name: str
    service: str
    event: bytes
    owner: str | None  # the oscar.grycap/job-owner label: OIDC submitter or event principal
    cpu_millis: int = 0
    memory_bytes: int = 0
    status: JobStatus = JobStatus.SUSPENDED
    started: datetime | None = None
    finished: datetime | None = None
    logs: str = ""
    has_pod: bool = False
    queue_owner: str | None = None  # the Kueue ClusterQueue it waits in, when suspended
    minio: S3Settings | None = None  # the mounted minio.default secret

    def info(self) -> JobInfo:
        """logs.go getPod: the pod's phase and times, ``Suspended`` without a pod."""
        if not self.has_pod:
            return JobInfo(JobStatus.SUSPENDED.value)
        return JobInfo(
            self.status.value, rfc3339(self.started), rfc3339(self.started), rfc3339(self.finished)
        )


@dataclass
class Record:
    """A stored service: its definition, real secret values, deployment time and jobs."""

    service: Service
    secrets: dict[str, str]
    created: datetime = field(default_factory=utc_now)
    jobs: dict[str, Job] = field(default_factory=dict)
    local_queue_owner: str | None = None  # Kueue LocalQueue created for an OIDC creator


class ClusterState:
    """Thread-safe store of everything the embedded OSCAR knows, apart from object data."""

    def __init__(self, config: Config, profile: Profile, minio: MinIOProvider) -> None:
        self.config = config
        self.profile = profile
        self.minio = minio
        self._lock = threading.RLock()
        self._services: dict[str, Record] = {}

    # services -----------------------------------------------------------------------------

    def create_service(self, service: Service, caller: Caller) -> Service:
        """create.go MakeCreateHandler, after the body was decoded and validated."""
        self._prepare(service)
        service.owner = caller.owner
        if not caller.admin:
            self._check_vo(service, caller)
        with self._lock:
            if service.name in self._services:
                raise duplicate_error(self.profile)
            check_creatable(service)
            # create.go: an OIDC creator's services go to their namespace (EnsureUserNamespace)
            service.namespace = service.namespace or user_namespace(
                service.owner, self.config.services_namespace, self.profile.namespace_max_length
            )
            record = Record(service, self._hide_secrets(service))
            if not caller.admin and self.config.kueue_enable:
                labels = service.labels if service.labels is not None else {}
                labels[KUEUE_QUEUE_LABEL] = local_queue_name(service.name)
                record.local_queue_owner = caller.subject
            if self.profile.user_service_labels:
                owner_name = "oscar" if caller.admin else caller.subject
                service.labels = {**(service.labels or {}), "owner_name": owner_name}
            self._services[service.name] = record
            return copy.deepcopy(service)

    def _check_vo(self, service: Service, caller: Caller) -> None:
        """create.go: a ``vo`` that is one of the cluster's must be one of the caller's
        (``checkIdentity``); without one, the first of the cluster's the caller has."""
        cluster = [g for g in self.config.oidc_groups or [] if g]
        if service.vo:
            if service.vo in cluster and service.vo not in caller.groups:
                raise Invalid(f"this user isn't enrrolled on the vo: {service.vo}\n")
        elif cluster:
            enrolled = [g for g in cluster if g in caller.groups]
            if not enrolled:
                raise Invalid(
                    f"service must be part of one of the following VO:  [{' '.join(cluster)}]\n"
                )
            service.vo = enrolled[0]

    def update_service(self, service: Service, caller: Caller) -> Service:
        """update.go MakeUpdateHandler: the admin's update stores the owner it was sent."""
        self._prepare(service)
        with self._lock:
            record = self._services.get(service.name)
            if record is None:
                raise NotFound()
            old = record.service
            if self.profile.update_keeps_token and old.token:
                service.token = old.token
            service.namespace = old.namespace or self.config.services_namespace
            if not same_volume(old, service):
                raise Invalid("volume updates are not supported after service creation")
            if not caller.admin:
                if old.owner != caller.subject:
                    raise Forbidden(
                        f"User {caller.subject} doesn't have permision to modify this service"
                    )
                service.owner = old.owner
            record.service, record.secrets = service, self._hide_secrets(service)
            return copy.deepcopy(service)

    def replace_service(self, service: Service) -> None:
        """The backend's UpdateService: the stored definition replaced as it is."""
        with self._lock:
            record = self._services.get(service.name)
            if record is None:
                raise NotFound()
            record.service = copy.deepcopy(service)

    def remove_service(self, name: str) -> None:
        """The backend's DeleteService: the service's objects gone, nothing else."""
        with self._lock:
            if self._services.pop(name, None) is None:
                raise NotFound()

    def delete_service(self, name: str, caller: Caller) -> Service:
        """delete.go: remove a service; returns it."""
        with self._lock:
            record = self._services.get(name)
            if record is None:
                raise NotFound()
            if not caller.admin and record.service.owner != caller.subject:
                raise Forbidden(
                    f"User {caller.subject} doesn't have permision to delete this service"
                )
            del self._services[name]
            return record.service

    def read_service(self, name: str) -> Service | None:
        """The stored service (a copy), whoever asks; ``None`` when there is none."""
        with self._lock:
            record = self._services.get(name)
            return copy.deepcopy(record.service) if record else None

    def list_services(self, caller: Caller) -> list[Service]:
        """list.go: the admin sees all; an OIDC user public, own and restricted-to-it ones."""
        with self._lock:
            return [
                copy.deepcopy(r.service)
                for r in self._services.values()
                if caller.admin or may_see(r.service, caller.subject)
            ]

    def secrets_of(self, name: str) -> dict[str, str]:
        with self._lock:
            record = self._services.get(name)
            return dict(record.secrets) if record else {}

    def created_at(self, name: str) -> datetime:
        with self._lock:
            return self._services[name].created

    def local_queue_owner(self, name: str) -> str | None:
        with self._lock:
            record = self._services.get(name)
            return record.local_queue_owner if record else None

    def service_by_token(self, name: str, token: str) -> Service | None:
        """The service ``name`` if ``token`` is its token (constant-time comparison)."""
        with self._lock:
            record = self._services.get(name)
            if record and secrets.compare_digest(record.service.token, token):
                return copy.deepcopy(record.service)
            return None

    def rotate_token(self, name: str) -> str:
        """Give a service a new token, as an update before v4.0 does."""
        with self._lock:
            record = self._services.get(name)
            if record is None:
                raise NotFound()
            record.service.token = secrets.token_hex(32)
            return record.service.token

    # jobs ---------------------------------------------------------------------------------

    def add_job(self, service: Service, event: bytes, owner: str | None, name: str) -> Job:
        with self._lock:
            record = self._services.get(service.name)
            if record is None:
                raise NotFound()
            if len(name) > 63 or not DNS_LABEL.match(name):
                raise StateError(
                    f'Job.batch "{name}" is invalid: metadata.name: Invalid value: "{name}": '
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character"
                )
            namespace = record.service.namespace
            if any(
                name in r.jobs for r in self._services.values() if r.service.namespace == namespace
            ):
                raise StateError(f'jobs.batch "{name}" already exists')
            job = Job(
                name=name,
                service=service.name,
                event=event,
                owner=owner,
                cpu_millis=millicores(service.cpu),
                memory_bytes=bytes_of(service.memory),
            )
            record.jobs[name] = job
            return job

    def update_job(self, job: Job, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)

    def job_page(self, service: str, owner: str | None, page: str | None) -> JobsResponse:
        """logs.go MakeJobsInfoHandler: one page (JOB_LISTING_LIMIT) in name order.

        ``owner`` filters by the job-owner label (OIDC callers see only their own jobs).
        """
        with self._lock:
            record = self._services.get(service)
            jobs = sorted(
                (
                    j
                    for j in (record.jobs.values() if record else [])
                    if (owner is None or j.owner == owner)
                    and (j.has_pod or self.profile.lists_jobs_without_pods)
                ),
                key=lambda j: j.name,
            )
            start = continue_start(page)
            after = [j for j in jobs if j.name >= start]
            chunk = after[: self.config.job_listing_limit]
            body = JobsResponse({j.name: j.info() for j in chunk})
        remaining = len(after) - len(chunk)
        if remaining > 0:
            body.next_page = continue_token(chunk[-1].name)
            body.remaining_jobs = remaining
        return body

    def get_job(self, service: str, name: str) -> Job | None:
        with self._lock:
            record = self._services.get(service)
            return record.jobs.get(name) if record else None

    def remove_jobs(self, service: str, *, everything: bool) -> list[Job]:
        """logs.go MakeDeleteJobsHandler: succeeded jobs (every job with ``all``), anyone's."""
        with self._lock:
            record = self._services.get(service)
            if record is None:
                return []
            gone = [
                j for j in record.jobs.values() if everything or j.status is JobStatus.SUCCEEDED
            ]
            for job in gone:
                del record.jobs[job.name]
            return gone

    def remove_job(self, service: str, name: str) -> Job:
        with self._lock:
            record = self._services.get(service)
            job = record.jobs.get(name) if record else None
            if record is None or job is None:
                raise NotFound()
            del record.jobs[name]
            return job

    def all_jobs(self) -> Iterator[Job]:
        with self._lock:
            jobs = [j for r in self._services.values() for j in r.jobs.values()]
        return iter(jobs)

    # internals ----------------------------------------------------------------------------

    def _prepare(self, service: Service) -> None:
        """What create.go and update.go do to a decoded service before storing it."""
        if self.profile.normalises_storage_paths:
            normalise_storage_paths(service)
        for io in service.storage():
            check_storage_path(io.path)
        check_values(service, self.config, self.minio, self.profile)
        check_volume(service)
        check_deployable(service)

    @staticmethod
    def _hide_secrets(service: Service) -> dict[str, str]:
        """create.go: secret values go to a Kubernetes Secret; the definition keeps ""."""
        hidden = dict(service.environment.secrets or {})
        if hidden:
            service.environment.secrets = {k: "" for k in hidden}
        return hidden
