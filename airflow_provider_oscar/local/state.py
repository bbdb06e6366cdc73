"""The embedded OSCAR's store: services, their Kubernetes Jobs, bucket metadata, and the rules
the real handlers apply to them (create.go, update.go, delete.go, read.go, list.go, logs.go).

Nothing here knows HTTP or runs scripts. A refused request raises a :class:`StateError` carrying
the status and text OSCAR answers with; release differences come from the :class:`Profile`.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.jobinfo import JobInfo, JobsResponse
from airflow_provider_oscar.local.types.quantity import (
    QuantityError,
    bytes_of,
    millicores,
    parse_quantity,
)
from airflow_provider_oscar.local.types.service import (
    DEFAULT_OWNER,
    LOG_LEVELS,
    SERVICE_LABEL,
    USER_SERVICE_LABEL,
    Service,
)
from airflow_provider_oscar.local.types.storage import MinIOProvider, StorageProviders

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' rule for env var names
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


class StateError(Exception):
    """A refused request: ``status`` and OSCAR's answer text (empty for an empty body)."""

    status = 500

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self.text = text


class Invalid(StateError):
    status = 400


class Forbidden(StateError):
    status = 403


class NotFound(StateError):
    status = 404


class Conflict(StateError):
    status = 409


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
                raise _duplicate(self.profile)
            _check_creatable(service)
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
            if len(name) > 63 or not _DNS_LABEL.match(name):
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
        _check_deployable(service)

    @staticmethod
    def _hide_secrets(service: Service) -> dict[str, str]:
        """create.go: secret values go to a Kubernetes Secret; the definition keeps ""."""
        hidden = dict(service.environment.secrets or {})
        if hidden:
            service.environment.secrets = {k: "" for k in hidden}
        return hidden


def check_values(service: Service, config: Config, minio: MinIOProvider, profile: Profile) -> None:
    """create.go checkValues: defaults, upper-cased log level, labels, the default MinIO."""
    service.memory = service.memory or "256Mi"
    service.cpu = service.cpu or "0.2"
    service.visibility = service.visibility or "private"
    level = service.log_level.upper()
    service.log_level = level if level in LOG_LEVELS else "INFO"
    labels = service.labels if service.labels is not None else {}
    if profile.user_service_labels:
        labels[USER_SERVICE_LABEL] = "true"
    labels[SERVICE_LABEL] = service.name
    labels["applicationId"] = service.name
    labels["queue"] = f"root.oscar-queue.{service.name}"
    service.labels = labels
    if service.annotations is None:
        service.annotations = {}
    providers = service.storage_providers or StorageProviders()
    default = MinIOProvider(minio.endpoint, minio.verify, "hidden", "hidden", minio.region)
    providers.minio = {**(providers.minio or {}), "default": default}
    service.storage_providers = providers
    service.token = secrets.token_hex(32)  # utils.GenerateToken


def normalise_storage_paths(service: Service) -> None:
    """create.go normalizeStoragePaths (v4.1.0)."""
    for kind, entries in (("input", service.input or []), ("output", service.output or [])):
        for io in entries:
            path = io.path.strip(" /")
            if not path:
                raise Invalid(f"{kind} path cannot be empty")
            if io.provider_type in ("minio", "s3") and "/" not in path:
                path = f"{service.name}/{path}"
            io.path = path


def check_storage_path(path: str) -> None:
    """Refuse paths whose segments would leave their bucket (the embedded OSCAR's own rule:
    its buckets are folders on this machine's S3 store)."""
    for segment in path.strip(" /").split("/"):
        if segment in (".", ".."):
            raise Invalid(f"invalid path {path!r}: '.' or '..' segment")


def _check_deployable(service: Service) -> None:
    """What the Kubernetes API refuses in the pod template (a 500 from the backend): variable
    names a process cannot carry, values with NUL, and quantities that do not parse."""
    env = {**(service.environment.variables or {}), **(service.environment.secrets or {})}
    for key, value in env.items():
        if not _ENV_NAME.match(key) or "\x00" in value:
            raise StateError(
                f"Error creating the service: spec.template.spec.containers[0].env: Invalid "
                f"value: {key!r}: a valid environment variable name must consist of alphabetic "
                "characters, digits, '_', '-', or '.', and must not start with a digit; values "
                "must not contain NUL"
            )
    for resource, quantity in (("cpu", service.cpu), ("memory", service.memory)):
        try:
            negative = parse_quantity(quantity) < 0
        except QuantityError as exc:
            raise StateError(f"Error creating the service: {exc}") from None
        if negative:
            raise StateError(
                "Error creating the service: spec.template.spec.containers[0].resources.limits"
                f'[{resource}]: Invalid value: "{quantity}": must be greater than or equal to 0'
            )


def _check_creatable(service: Service) -> None:
    """What the Kubernetes API refuses when the Knative backend creates the service's
    ConfigMap (an RFC 1123 subdomain) and Knative Service (a DNS-1035 label): 500
    ``Error creating the service: ...`` (create.go, backends/knative.go CreateService)."""
    name = service.name
    if not _SUBDOMAIN.match(name):
        raise StateError(
            f'Error creating the service: ConfigMap "{name}" is invalid: metadata.name: Invalid '
            f'value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character"
        )
    if not _DNS_1035.match(name):
        raise StateError(
            f'Error creating the service: Service.serving.knative.dev "{name}" is invalid: '
            f'metadata.name: Invalid value: "{name}": a DNS-1035 label must consist of lower '
            "case alphanumeric characters or '-', start with an alphabetic character, and end "
            "with an alphanumeric character"
        )
    for io in service.input or []:
        if io.provider_type not in ("minio", "webdav", "rucio"):
            raise Invalid("unrecognized input (valid inputs are MinIO and dCache)")
    providers = service.storage_providers or StorageProviders()
    for io in service.storage():
        known = getattr(providers, io.provider_type, None) or {}
        if io.provider_id != "default" and io.provider_id not in known:
            raise StateError(
                f'the StorageProvider "{io.provider_type}.{io.provider_id}" is not defined'
            )
    for bucket in service.minio_buckets():
        if not _BUCKET_NAME.match(bucket) or ".." in bucket:
            raise StateError(f"Bucket name contains invalid characters: {bucket!r}")


def _duplicate(profile: Profile) -> StateError:
    text = "A service with the provided name already exists"
    return Invalid(text) if profile.duplicate_create_status == 400 else Conflict(text)


def may_see(service: Service, subject: str) -> bool:
    """list.go / read.go: public, owned, or restricted with the subject allowed."""
    if service.visibility == "public":
        return True
    if service.visibility == "private":
        return service.owner == subject
    if service.visibility == "restricted":
        return service.owner == subject or subject in (service.allowed_users or [])
    return False


def may_use(service: Service, subject: str, profile: Profile) -> bool:
    """logs.go authorizeRequest, which also guards /run and /job (selectService) from v4.0."""
    if service.visibility == "public" or service.owner == subject:
        return True
    users = service.allowed_users or []
    if profile.owner_only_logs:
        return service.visibility == "restricted" and subject in users
    return not users or subject in users


def local_queue_name(service: str) -> str:
    """utils/kueue.go BuildLocalQueueName."""
    clean = re.sub(r"[^a-z0-9-]", "-", f"oscar-lq-{service}".lower()).strip("-")
    return clean[:63].rstrip("-") or "oscar"


def job_name(service: str) -> str:
    """job.go: ``<svc>-<uuid4>``, the service name cut to 16 characters when it has 25+."""
    prefix = service[:16] if len(service) >= 25 else service
    return f"{prefix}-{uuid.uuid4()}"


def is_label_value(name: str) -> bool:
    """validation.IsValidLabelValue, as deployment.go validateServiceName uses it."""
    return len(name) <= 63 and bool(_LABEL_VALUE.match(name))


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
