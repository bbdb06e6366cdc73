"""The rules OSCAR's handlers and the Kubernetes API apply to a service, a job or a name, and
the refusals they answer with (create.go checkValues and normalizeStoragePaths, the backend's
object validation, logs.go authorizeRequest, list.go/read.go visibility).

A refused request raises a :class:`StateError` carrying the status and text OSCAR answers with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import uuid

from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.quantity import QuantityError, parse_quantity
from airflow_provider_oscar.local.types.service import (
    DEFAULT_OWNER,
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
ORIGIN_CLUSTER = "oscar.grycap/origin-cluster"  # types.OriginClusterAnnotation (v4.1.0)
ORIGIN_SERVICE = "oscar.grycap/origin-service"
WORKER = "oscar.grycap/federation-worker"


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
    current = (providers.minio or {}).get("default")
    federated = service.federation is not None and bool(service.federation.members)
    origin = ORIGIN_CLUSTER in service.annotations
    if not (profile.since("v4.1.0") and (origin or federated) and current and current.endpoint):
        providers.minio = {**(providers.minio or {}), "default": default}  # else the origin's
    service.storage_providers = providers
    if service.federation is not None and not service.federation.topology:
        service.federation.topology = "none"
    if service.annotations.get(WORKER) != "true":  # a worker keeps its origin's token
        service.token = secrets.token_hex(32)  # utils.GenerateToken


def normalise_storage_paths(service: Service) -> None:
    """create.go normalizeStoragePaths (v4.1.0); a federation worker's default MinIO outputs
    go to its origin service's bucket."""
    annotations = service.annotations or {}
    origin = annotations.get(ORIGIN_SERVICE, "").strip()
    worker = bool(origin and annotations.get(ORIGIN_CLUSTER, "").strip())
    for kind, entries in (("input", service.input or []), ("output", service.output or [])):
        for io in entries:
            path = io.path.strip(" /")
            if not path:
                raise Invalid(f"{kind} path cannot be empty")
            if io.provider_type in ("minio", "s3") and "/" not in path:
                bucket = service.name
                if (
                    kind == "output"
                    and worker
                    and io.storage_provider.split(".")[0].lower() == ("minio")
                    and io.provider_id == "default"
                ):
                    bucket = origin
                path = f"{bucket}/{path}"
            io.path = path


def check_storage_path(path: str) -> None:
    """Refuse paths whose segments would leave their bucket (the embedded OSCAR's own rule:
    its buckets are folders on this machine's S3 store)."""
    for segment in path.strip(" /").split("/"):
        if segment in (".", ".."):
            raise Invalid(f"invalid path {path!r}: '.' or '..' segment")


VOLUME_NAME_RULE = "volume.name must satisfy Kubernetes DNS-1123 naming rules"
VOLUME_SIZE_RULE = "volume.size must be a valid positive quantity"


def is_dns_label(name: str) -> bool:
    """validation.IsDNS1123Label."""
    return len(name) <= 63 and bool(DNS_LABEL.match(name))


def check_volume(service: Service) -> None:
    """utils/volume.go ``ValidateVolumeConfig`` (v4.0.0): trims the fields, names a volume the
    service creates after the service, and defaults its lifecycle to ``delete``."""
    volume = service.volume
    if volume is None:
        return
    volume.name, volume.size = volume.name.strip(), volume.size.strip()
    volume.mount_path = volume.mount_path.strip()
    volume.lifecycle_policy = volume.lifecycle_policy.strip()

    def refuse(reason: str) -> Invalid:
        return Invalid(f"The service specification is not valid: {reason}")

    if not volume.mount_path:
        raise refuse("volume.mount_path is required")
    if not volume.size and not volume.name:
        raise refuse("volume.name is required when volume.size is not set")
    if volume.name and not is_dns_label(volume.name):
        raise refuse(VOLUME_NAME_RULE)
    if volume.size:
        if not positive_quantity(volume.size):
            raise refuse(VOLUME_SIZE_RULE)
        volume.name = volume.name or service.name
        if not volume.lifecycle_policy:
            volume.lifecycle_policy = "delete"
        elif volume.lifecycle_policy not in ("delete", "retain"):
            raise refuse('volume.lifecycle_policy must be either "delete" or "retain"')
    elif volume.lifecycle_policy:
        raise refuse("volume.lifecycle_policy is only valid when volume.size is set")
    if not volume.mount_path.startswith("/"):
        raise refuse("volume.mount_path must be an absolute path")
    for reserved in ("/oscar/config", "/oscar/bin"):  # types.ConfigPath, types.VolumePath
        if volume.mount_path == reserved or volume.mount_path.startswith(reserved + "/"):
            raise refuse("volume.mount_path cannot overlap OSCAR reserved paths")


def same_volume(old: Service, new: Service) -> bool:
    """utils/volume.go ``SameVolumeConfig``."""
    a, b = old.volume, new.volume
    if a is None or b is None:
        return a is b
    return (a.name, a.size, a.mount_path, a.lifecycle_policy) == (
        b.name,
        b.size,
        b.mount_path,
        b.lifecycle_policy,
    )


def positive_quantity(text: str) -> bool:
    """``resource.ParseQuantity`` accepts it and it is above zero."""
    try:
        return parse_quantity(text) > 0
    except QuantityError:
        return False


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


def kueue_name(value: str) -> str:
    """utils/kueue.go ``sanitizeKueueName``."""
    clean = re.sub(r"[^a-z0-9-]", "-", value.lower()).strip("-")
    return clean[:63].rstrip("-") or "oscar"


def local_queue_name(service: str) -> str:
    """utils/kueue.go BuildLocalQueueName."""
    return kueue_name(f"oscar-lq-{service}")


def cluster_queue_name(owner: str) -> str:
    """utils/kueue.go BuildClusterQueueName."""
    return kueue_name(f"oscar-cq-{owner}")


def user_namespace(owner: str, services_namespace: str, max_length: int) -> str:
    """utils/namespaces.go ``BuildUserNamespace``: the admin's services live in the services
    namespace, each other owner's in ``<prefix>-<owner, sanitised>[-<sha1 of owner>]`` of at
    most ``max_length`` characters (63 before v4.0.0, 18 from it)."""
    if owner in ("", DEFAULT_OWNER):
        return services_namespace
    prefix = services_namespace or "oscar-svc"
    digest = hashlib.sha1(owner.encode(), usedforsecurity=False).hexdigest()
    room = max_length - len(prefix) - 1
    if room <= 0:
        return f"{prefix}-{digest}"[:max_length].strip("-")
    clean = re.sub(r"[^a-z0-9-]+", "-", owner.lower()).strip("-")
    if clean and not (len(clean) <= 63 and DNS_LABEL.match(clean)):
        clean = clean[:max_length]  # sanitizeOwner: one cut, else the hash alone
        if not DNS_LABEL.match(clean):
            clean = ""
    if not clean:
        return f"{prefix}-{digest[:room].strip('-')}"
    if len(clean) > room:
        clean = clean[:room].strip("-")
    if len(clean) == room or room - len(clean) - 1 <= 0:
        return f"{prefix}-{clean}"
    return f"{prefix}-{clean}-{digest[: room - len(clean) - 1]}"


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


def continue_token(last: str) -> str:
    """A Kubernetes list continue token: the key the next page starts after (apiserver
    ``storage/etcd3`` ``encodeContinue``: base64url JSON ``{"v", "rv", "start"}``), so a page
    never skips an item when earlier ones are deleted between pages."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": 1, "start": last + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def continue_start(token: str | None) -> str:
    """The first key a continue token lists (``""``: from the start); others are 400."""
    if not token:
        return ""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        start = data["start"]
        if not isinstance(start, str) or data.get("v") != "meta.k8s.io/v1":
            raise ValueError(start)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise Invalid(f"invalid page token {token!r}") from None
    return start


def format_uid(uid: str) -> str:
    """auth/multitenancy.go ``FormatUID``: an EGI ``<hex>@egi.eu`` uid cut at the ``@``."""
    match = re.search(r"[0-9a-z]+@", uid)
    return uid[: match.end() - 1] if match else uid
