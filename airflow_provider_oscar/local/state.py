"""The embedded OSCAR's state: services, tokens, jobs and bucket metadata, and their rules.

Nothing here knows HTTP or runs scripts. Rule violations raise :class:`StateError` subclasses
carrying the text OSCAR answers with; the HTTP layer maps each class to OSCAR's status code.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from airflow_provider_oscar.errors import OscarDefinitionError
from airflow_provider_oscar.fdl import (
    Service,
    StorageIO,
    check_service_name,
    job_prefix,
    parse_service,
)

ADMIN_OWNER = "cluster_admin"
JOB_PAGE_SIZE = 70
SERVICE_NAMESPACE = "oscar-svc"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' rule for env var names


class StateError(Exception):
    """A request the state refuses; ``str(error)`` is OSCAR's answer text (may be empty)."""


class Invalid(StateError):
    """Bad input (400)."""


class NotFound(StateError):
    """Unknown service, job or bucket (404)."""


class Forbidden(StateError):
    """The caller may not do this (403)."""


class JobStatus(str, Enum):
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
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class Caller:
    """Who is asking: the admin (Basic) or an OIDC subject (configured bearer token)."""

    subject: str
    admin: bool

    @property
    def owner(self) -> str:
        return ADMIN_OWNER if self.admin else self.subject


@dataclass
class Job:
    """One asynchronous execution (a Kubernetes Job in real OSCAR)."""

    name: str
    service: str
    event: bytes
    owner: str | None
    status: JobStatus = JobStatus.PENDING
    created: datetime = field(default_factory=utc_now)
    started: datetime | None = None
    finished: datetime | None = None
    logs: str = ""
    has_pod: bool = False
    seq: int = 0

    def to_api(self) -> dict[str, str]:
        data = {"status": self.status.value}
        if self.status is JobStatus.SUSPENDED:
            return data
        for key, moment in (
            ("creation_time", self.created),
            ("start_time", self.started),
            ("finish_time", self.finished),
        ):
            text = rfc3339(moment)
            if text:
                data[key] = text
        return data


@dataclass
class BucketInfo:
    """OSCAR's metadata of a bucket (the objects live in the S3 store)."""

    name: str
    visibility: str = "private"
    allowed_users: list[str] = field(default_factory=list)
    owner: str = ADMIN_OWNER
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
    """A stored service: its public definition, real secret values and deployment time."""

    service: Service
    secrets: dict[str, str]
    created: datetime = field(default_factory=utc_now)
    jobs: dict[str, Job] = field(default_factory=dict)


class ClusterState:
    """Thread-safe store of everything the embedded OSCAR knows, apart from object data."""

    def __init__(self, *, minio_provider: dict[str, object]) -> None:
        self._lock = threading.RLock()
        self._services: dict[str, Record] = {}
        self._buckets: dict[str, BucketInfo] = {}
        self._seq = 0
        self.minio_provider = minio_provider

    # services -----------------------------------------------------------------------------

    def create_service(self, body: object, caller: Caller) -> Service:
        service, hidden = self._validated(body)
        with self._lock:
            if service.name in self._services:
                raise Invalid("A service with the provided name already exists")
            service.token = secrets.token_hex(32)
            self._finish(service, caller.owner)
            self._services[service.name] = Record(service, hidden)
            for bucket in service_buckets(service):
                self._buckets.setdefault(
                    bucket, BucketInfo(bucket, owner=caller.owner, service=service.name)
                )
            return service.model_copy(deep=True)

    def update_service(self, body: object, caller: Caller) -> Service:
        service, hidden = self._validated(body)
        with self._lock:
            record = self._services.get(service.name)
            if record is None:
                raise NotFound("")
            self._check_owner(record.service, caller)
            service.token = record.service.token
            self._finish(service, record.service.owner)
            record.service, record.secrets = service, hidden
            for bucket in service_buckets(service):
                self._buckets.setdefault(
                    bucket, BucketInfo(bucket, owner=service.owner, service=service.name)
                )
            return service.model_copy(deep=True)

    def delete_service(self, name: str, caller: Caller) -> tuple[Service, list[str]]:
        """Remove a service; returns it and the buckets to delete with it."""
        with self._lock:
            record = self._record(name, caller)
            self._check_owner(record.service, caller)
            del self._services[name]
            buckets = service_buckets(record.service)
            for bucket in buckets:
                self._buckets.pop(bucket, None)
            return record.service, buckets

    def get_service(self, name: str, caller: Caller) -> Service:
        with self._lock:
            return self._record(name, caller).service.model_copy(deep=True)

    def list_services(self, caller: Caller) -> list[Service]:
        with self._lock:
            return [
                r.service.model_copy(deep=True)
                for r in self._services.values()
                if self._visible(r.service, caller)
            ]

    def secrets_of(self, name: str) -> dict[str, str]:
        with self._lock:
            record = self._services.get(name)
            return dict(record.secrets) if record else {}

    def created_at(self, name: str, caller: Caller) -> datetime:
        with self._lock:
            return self._record(name, caller).created

    def service_by_token(self, name: str, token: str) -> Service | None:
        """The service ``name`` if ``token`` is its token (constant-time comparison)."""
        with self._lock:
            record = self._services.get(name)
            if record and secrets.compare_digest(record.service.token, token):
                return record.service.model_copy(deep=True)
            return None

    def service_for_subject(self, name: str, caller: Caller) -> Service | None:
        with self._lock:
            record = self._services.get(name)
            if record and self._visible(record.service, caller):
                return record.service.model_copy(deep=True)
            return None

    def rotate_token(self, name: str) -> str:
        """Give a service a new token, as OSCAR before v4.1 did on every update."""
        with self._lock:
            record = self._services.get(name)
            if record is None:
                raise NotFound("")
            record.service.token = secrets.token_hex(32)
            return record.service.token

    def service_by_name(self, name: str) -> Service:
        """The service ``name`` for internal use; ``KeyError`` when it is gone."""
        with self._lock:
            return self._services[name].service.model_copy(deep=True)

    # jobs ---------------------------------------------------------------------------------

    def add_job(self, service: str, event: bytes, owner: str | None, name: str | None) -> Job:
        with self._lock:
            record = self._services.get(service)
            if record is None:
                raise NotFound("")
            if name is None:
                name = f"{job_prefix(service)}-{uuid.uuid4()}"
            elif len(name) > 63 or not _JOB_NAME.match(name):
                raise Invalid(f"invalid job name {name!r}: must be a DNS-1123 label")
            if any(name in r.jobs for r in self._services.values()):  # one namespace for all
                raise Invalid(f"job {name!r} already exists")
            self._seq += 1
            job = Job(name=name, service=service, event=event, owner=owner, seq=self._seq)
            record.jobs[name] = job
            return job

    def update_job(self, job: Job, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)

    def append_log(self, job: Job, text: str) -> None:
        with self._lock:
            job.logs += text

    def job_page(self, service: str, caller: Caller, page: str | None) -> dict[str, object]:
        """One page of the job list in the v3.6.4+ wrapped shape."""
        with self._lock:
            record = self._record(service, caller)
            jobs = sorted(
                (j for j in record.jobs.values() if caller.admin or j.owner == caller.subject),
                key=lambda j: j.seq,
            )
        start = page_start(page)
        chunk = jobs[start : start + JOB_PAGE_SIZE]
        body: dict[str, object] = {"jobs": {j.name: j.to_api() for j in chunk}}
        remaining = len(jobs) - start - len(chunk)
        if remaining > 0:
            body["next_page"] = str(start + JOB_PAGE_SIZE)
            body["remaining_jobs"] = remaining
        return body

    def get_job(self, service: str, name: str, caller: Caller) -> Job | None:
        with self._lock:
            job = self._record(service, caller).jobs.get(name)
            if job and (caller.admin or job.owner == caller.subject):
                return job
            return None

    def remove_jobs(self, service: str, caller: Caller, *, everything: bool) -> list[Job]:
        with self._lock:
            record = self._record(service, caller)
            gone = [
                j
                for j in record.jobs.values()
                if (everything or j.status is JobStatus.SUCCEEDED)
                and (caller.admin or j.owner == caller.subject)
            ]
            for job in gone:
                del record.jobs[job.name]
            return gone

    def remove_job(self, service: str, name: str, caller: Caller) -> Job:
        with self._lock:
            record = self._record(service, caller)
            job = record.jobs.get(name)
            if job is None or not (caller.admin or job.owner == caller.subject):
                raise NotFound("")
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

    def _validated(self, body: object) -> tuple[Service, dict[str, str]]:
        try:
            service = parse_service(body)
        except OscarDefinitionError as exc:
            raise Invalid(f"The service specification is not valid: {exc}") from None
        missing = [f for f in ("name", "image", "script") if not getattr(service, f)]
        if missing:
            tags = " ".join(
                f"Key: 'Service.{f.capitalize()}' Error:Field validation for "
                f"'{f.capitalize()}' failed on the 'required' tag"
                for f in missing
            )
            raise Invalid(f"The service specification is not valid: {tags}")
        try:
            check_service_name(service.name)
            service.cpu_cores  # noqa: B018 - validates the quantities
            service.memory_bytes  # noqa: B018
        except OscarDefinitionError as exc:
            raise Invalid(f"The service specification is not valid: {exc}") from None
        for io in service.input or []:
            if not io.path.strip("/"):
                raise Invalid("input path cannot be empty")
            if io.provider_type not in ("minio", "webdav", "rucio"):
                raise Invalid("unrecognized input (valid inputs are MinIO and dCache)")
        for io in (service.input or []) + (service.output or []):
            if io.provider_type in ("minio", "s3", "") and not io.path.strip("/"):
                raise Invalid("output path cannot be empty")
            _normalise_path(io, service.name)
        environment = {
            **(service.environment.variables or {}),
            **(service.environment.secrets or {}),
        }
        for key, value in environment.items():
            if not _ENV_NAME.match(key) or "\x00" in value:
                raise Invalid(
                    f"The service specification is not valid: environment variable {key!r}: "
                    "names must consist of letters, digits, '_', '-' or '.' and not start with a "
                    "digit; values must not contain NUL"
                )
        hidden = dict(service.environment.secrets or {})
        if hidden:
            service.environment.secrets = {k: "" for k in hidden}
        return service, hidden

    def _finish(self, service: Service, owner: str) -> None:
        service.owner = owner
        service.namespace = SERVICE_NAMESPACE
        service.labels = {
            **service.labels,
            "oscar_service": service.name,
            "oscar.grycap/user-service": "true",
            "owner_name": owner,
        }
        service.storage_providers = {
            **service.storage_providers,
            "minio": {
                **service.storage_providers.get("minio", {}),
                "default": {**self.minio_provider, "access_key": "hidden", "secret_key": "hidden"},
            },
        }

    def _record(self, name: str, caller: Caller) -> Record:
        if len(name) > 63 or not _JOB_NAME.match(name):
            raise Invalid("invalid serviceName")
        record = self._services.get(name)
        if record is None or not self._visible(record.service, caller):
            raise NotFound("")
        return record

    @staticmethod
    def _visible(service: Service, caller: Caller) -> bool:
        return (
            caller.admin
            or service.owner == caller.subject
            or service.visibility == "public"
            or caller.subject in (service.allowed_users or [])
        )

    @staticmethod
    def _check_owner(service: Service, caller: Caller) -> None:
        if not caller.admin and service.owner != caller.subject:
            raise Forbidden(f"User {caller.subject} doesn't have permision to modify this service")


def service_buckets(service: Service) -> list[str]:
    """The MinIO buckets OSCAR creates for a service's input and output paths."""
    names: list[str] = []
    for io in (service.input or []) + (service.output or []):
        if io.provider_type == "minio" and io.provider_id == "default" and io.bucket not in names:
            names.append(io.bucket)
    return names


def page_start(page: str | None) -> int:
    """The offset a ``page`` continuation token stands for (tokens are offsets here)."""
    if not page:
        return 0
    if not (page.isascii() and page.isdigit()):
        raise Invalid(f"invalid page token {page!r}")
    return int(page)


def check_bucket_name(name: str) -> None:
    if not _BUCKET_NAME.match(name) or ".." in name:
        raise Invalid(
            f"invalid bucket name {name!r}: 3 to 63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )


def check_object_key(key: str) -> None:
    """Refuse object keys that would leave their bucket or a job directory."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in parts):
        raise Invalid(f"invalid object key {key!r}: no empty, '.' or '..' segments allowed")
    if "\x00" in key or len(key.encode()) > 1024:
        raise Invalid("invalid object key: NUL byte or longer than 1024 bytes")


def _normalise_path(io: StorageIO, service_name: str) -> None:
    path = io.path.strip("/")
    if io.provider_type in ("minio", "s3") and "/" not in path:
        path = f"{service_name}/{path}"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise Invalid(f"invalid path {io.path!r}: empty, '.' or '..' segment")
    if io.provider_type == "minio":
        check_bucket_name(path.split("/", 1)[0])
    io.path = path
