"""The rules OSCAR's handlers and the Kubernetes API apply to a service, a job or a name, and
the refusals they answer with (create.go checkValues and normalizeStoragePaths, the backend's
object validation, logs.go authorizeRequest, list.go/read.go visibility).

A refused request raises a :class:`StateError` carrying the status and text OSCAR answers with.
"""

from __future__ import annotations

import re
import secrets
import uuid

from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.quantity import QuantityError, parse_quantity
from airflow_provider_oscar.local.types.service import (
    LOG_LEVELS,
    SERVICE_LABEL,
    USER_SERVICE_LABEL,
    Service,
)
from airflow_provider_oscar.local.types.storage import MinIOProvider, StorageProviders

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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


def check_deployable(service: Service) -> None:
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


def check_creatable(service: Service) -> None:
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


def duplicate_error(profile: Profile) -> StateError:
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
