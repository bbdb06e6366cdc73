"""The embedded OSCAR's store: services, their Kubernetes Jobs and bucket metadata, changed as
the real handlers change them (create.go, update.go, delete.go, job.go, logs.go), by the rules in
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
    check_bucket_name,
    check_creatable,
    check_deployable,
    check_storage_path,
    check_values,
    duplicate_error,
    local_queue_name,
    may_see,
    normalise_storage_paths,
    page_start,
)
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

    def info(self) -> JobInfo:
        """logs.go getPod: the pod's phase and times, ``Suspended`` without a pod."""
        if not self.has_pod:
            return JobInfo(JobStatus.SUSPENDED.value)
        return JobInfo(
            self.status.value, rfc3339(self.started), rfc3339(self.started), rfc3339(self.finished)
        )


@dataclass
class BucketInfo:
    """OSCAR's metadata of a bucket (the objects live in the S3 store)."""

    name: str
    visibility: str = "private"
    allowed_users: list[str] = field(default_factory=list)
    owner: str = DEFAULT_OWNER
    service: str | None = None

    def to_api(self) -> dict[str, object]:
        return {
            "bucket_name": self.name,
            "visibility": self.visibility,
            "allowed_users": self.allowed_users,
            "owner": self.owner,
            "metadata": {"service": self.service} if self.service else {},
        }


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
        self._buckets: dict[str, BucketInfo] = {}
        self._minio_users: set[str] = set()

    # services -----------------------------------------------------------------------------

    def create_service(self, service: Service, caller: Caller) -> Service:
        """create.go MakeCreateHandler, after the body was decoded and validated."""
        self._prepare(service)
        service.owner = caller.owner
        if not caller.admin and not service.vo and self.config.oidc_groups:
            service.vo = self.config.oidc_groups[0]  # the first VO the caller is enrolled in
        with self._lock:
            if service.name in self._services:
                raise duplicate_error(self.profile)
            check_creatable(service)
            service.namespace = service.namespace or self.config.services_namespace
            record = Record(service, self._hide_secrets(service))
            if not caller.admin and self.config.kueue_enable:
                labels = service.labels if service.labels is not None else {}
                labels[KUEUE_QUEUE_LABEL] = local_queue_name(service.name)
                record.local_queue_owner = caller.subject
            if self.profile.user_service_labels:
                owner_name = "oscar" if caller.admin else caller.subject
                service.labels = {**(service.labels or {}), "owner_name": owner_name}
            self._services[service.name] = record
            for bucket in service.minio_buckets():
                self._buckets.setdefault(
                    bucket, BucketInfo(bucket, owner=service.owner, service=service.name)
                )
            return copy.deepcopy(service)

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
            if not caller.admin:
                if old.owner != caller.subject:
                    raise Forbidden(
                        f"User {caller.subject} doesn't have permision to modify this service"
                    )
                service.owner = old.owner
            record.service, record.secrets = service, self._hide_secrets(service)
            for bucket in service.minio_buckets():
                self._buckets.setdefault(
                    bucket, BucketInfo(bucket, owner=service.owner, service=service.name)
                )
            return copy.deepcopy(service)

    def delete_service(self, name: str, caller: Caller) -> tuple[Service, list[str]]:
        """delete.go: remove a service; returns it and the buckets to delete with it."""
        with self._lock:
            record = self._services.get(name)
            if record is None:
                raise NotFound()
            if not caller.admin and record.service.owner != caller.subject:
                raise Forbidden(
                    f"User {caller.subject} doesn't have permision to delete this service"
                )
            del self._services[name]
            buckets = record.service.minio_buckets()
            for bucket in buckets:
                self._buckets.pop(bucket, None)
            return record.service, buckets

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

    # OIDC users -----------------------------------------------------------------------------

    def provision_minio_user(self, subject: str) -> None:
        """auth/oidc.go getOIDCMiddleware: a direct /system request creates the MinIO user."""
        with self._lock:
            self._minio_users.add(subject)

    def has_minio_user(self, subject: str) -> bool:
        with self._lock:
            return subject in self._minio_users

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
            if any(name in r.jobs for r in self._services.values()):  # one namespace for all
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
            start = page_start(page)
            limit = self.config.job_listing_limit
            chunk = jobs[start : start + limit]
            body = JobsResponse({j.name: j.info() for j in chunk})
        remaining = len(jobs) - start - len(chunk)
        if remaining > 0:
            body.next_page = str(start + limit)
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

    # buckets ------------------------------------------------------------------------------

    def bucket(self, name: str) -> BucketInfo:
        with self._lock:
            return self._buckets.setdefault(name, BucketInfo(name))

    def put_bucket(self, body: object, caller: Caller, *, create: bool) -> BucketInfo:
        if not isinstance(body, dict) or not isinstance(body.get("bucket_name"), str):
            raise Invalid("Error creating bucket: 'bucket_name' is required")
        name = body["bucket_name"]
        check_bucket_name(name)
        visibility = body.get("visibility") or "private"
        if visibility not in ("private", "public", "restricted"):
            raise Invalid(f"Error creating bucket with name '{name}': unknown visibility")
        users = body.get("allowed_users") or []
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            raise Invalid(
                f"Error creating bucket with name '{name}': allowed_users must be strings"
            )
        with self._lock:
            current = self._buckets.get(name)
            if not create and current and current.service:
                raise Forbidden("Forbidden action: A bucket from a service can't be modified")
            info = BucketInfo(name, visibility, list(users), caller.owner)
            self._buckets[name] = info
            return info

    def drop_bucket(self, name: str) -> None:
        with self._lock:
            self._buckets.pop(name, None)

    # internals ----------------------------------------------------------------------------

    def _prepare(self, service: Service) -> None:
        """What create.go and update.go do to a decoded service before storing it."""
        if self.profile.normalises_storage_paths:
            normalise_storage_paths(service)
        for io in service.storage():
            check_storage_path(io.path)
        check_values(service, self.config, self.minio, self.profile)
        check_deployable(service)

    @staticmethod
    def _hide_secrets(service: Service) -> dict[str, str]:
        """create.go: secret values go to a Kubernetes Secret; the definition keeps ""."""
        hidden = dict(service.environment.secrets or {})
        if hidden:
            service.environment.secrets = {k: "" for k in hidden}
        return hidden
