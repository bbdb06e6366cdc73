"""Managed volumes (v4.0.0): the PersistentVolumeClaims OSCAR makes for users and services, in
the namespaces it makes for users, under the ResourceQuota and LimitRange it gives each user.

grycap/oscar ``pkg/backends/resources/volume.go`` (``CreateManagedVolume``, ``GetManagedVolume``,
``ListManagedVolumes``, ``DeleteManagedVolume``, ``ListVolumeAttachments``,
``managedVolumeFromPVC``, ``EnsureServiceVolume``, ``DeleteServiceVolume``),
``pkg/utils/volume_limit.go`` (``EnsureVolumeLimits``, ``GetVolumeQuotaInfo``,
``ValidateManagedVolumeQuota``, ``UpdateVolumeLimits``) and ``pkg/utils/namespaces.go``
(``EnsureUserNamespace``, which also binds the shared ``oscar-pvc`` of 2Gi, the Helm chart's
``oscar-volume.yaml``, in the user's namespace: a claim OSCAR's quota arithmetic leaves out).

Kubernetes' own answers are Kubernetes' texts: the LimitRanger and ResourceQuota admission
plugins refuse a claim before it is stored (``persistentvolumeclaims "x" is forbidden: ...``),
then the store refuses a name in use (``... "x" already exists``). Claims bind at once (an
``Immediate`` storage class). A claim's content is a directory under the cluster's work root,
which job and ``/run`` pods of the services that attach it see at their ``mount_path``.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.rules import StateError, user_namespace
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.quantity import Quantity
from airflow_provider_oscar.local.types.quotas import VolumeQuotaResponse, VolumeQuotaValues
from airflow_provider_oscar.local.types.service import Service
from airflow_provider_oscar.local.types.volume import (
    CREATION_SERVICE,
    LIFECYCLE_DELETE,
    LIFECYCLE_RETAIN,
    PHASE_IN_USE,
    PHASE_READY,
    ManagedVolume,
    VolumeAttachmentReference,
    VolumeStatus,
)

SHARED_CLAIM, SHARED_CLAIM_SIZE = "oscar-pvc", "2Gi"  # types.PVCName; oscar-volume.yaml
CLAIMS = "persistentvolumeclaims"


class KubeError(StateError):
    """An error of the Kubernetes API; ``reason`` as ``apierrors`` classifies it."""

    reason = ""


class KubeNotFound(KubeError):
    reason = "NotFound"


class KubeAlreadyExists(KubeError):
    reason = "AlreadyExists"


class KubeForbidden(KubeError):
    reason = "Forbidden"


class Attached(StateError):
    """resources.ErrManagedVolumeAttached."""

    status = 400

    def __init__(self) -> None:
        super().__init__("managed volume is still attached to one or more services")


@dataclass
class Claim:
    """A PersistentVolumeClaim: its storage request and OSCAR's labels and annotation."""

    name: str
    namespace: str
    size: Quantity
    managed: bool = True
    owner: str = ""
    creation_mode: str = ""
    created_by_service: str = ""
    lifecycle_policy: str = ""


@dataclass
class VolumeLimits:
    """types.VolumeLimits: a user's ResourceQuota (``requests.storage``,
    ``persistentvolumeclaims``) and LimitRange (storage per claim), both named after them."""

    disk_available: Quantity
    max_volumes: Quantity
    max_disk: Quantity
    min_disk: Quantity


class Volumes:
    """The users' namespaces, their claims and their limits."""

    def __init__(
        self,
        config: Callable[[], Config],
        profile: Profile,
        root: Path,
        services: Callable[[], list[Service]],
    ) -> None:
        self._config = config
        self.profile = profile
        self.root = root
        self._services = services
        self._namespaces: set[str] = set()
        self._claims: dict[str, dict[str, Claim]] = {}
        self._limits: dict[tuple[str, str], VolumeLimits] = {}
        self._lock = threading.RLock()

    # namespaces (namespaces.go) --------------------------------------------------------------

    @property
    def services_namespace(self) -> str:
        return self._config().services_namespace

    def namespace_of(self, owner: str) -> str:
        """``BuildUserNamespace``."""
        return user_namespace(owner, self.services_namespace, self.profile.namespace_max_length)

    def exists(self, namespace: str) -> bool:
        return namespace == self.services_namespace or namespace in self._namespaces

    def ensure_namespace(self, owner: str) -> str:
        """``EnsureUserNamespace``: the namespace, and in a user's the shared ``oscar-pvc``."""
        namespace = self.namespace_of(owner)
        with self._lock:
            if namespace not in self._namespaces and namespace != self.services_namespace:
                self._namespaces.add(namespace)
                shared = Claim(SHARED_CLAIM, namespace, Quantity.parse(SHARED_CLAIM_SIZE), False)
                self._claims.setdefault(namespace, {})[SHARED_CLAIM] = shared
        return namespace

    # limits (volume_limit.go) ----------------------------------------------------------------

    def ensure_limits(self, name: str, namespace: str) -> None:
        """``EnsureVolumeLimits``: the configured limits, unless there are some; nothing when
        the namespace does not exist (OSCAR ignores that error)."""
        config = self._config()
        with self._lock:
            if self.exists(namespace) and (namespace, name) not in self._limits:
                self._limits[(namespace, name)] = VolumeLimits(
                    Quantity.parse(config.volume_available),
                    Quantity.parse(config.volume_max),
                    Quantity.parse(config.volume_max_disk),
                    Quantity.parse(config.volume_min_disk),
                )

    def limits(self, name: str, namespace: str) -> VolumeLimits:
        """``GetVolumeLimitInfo``: the ResourceQuota's ``Get`` fails first."""
        found = self._limits.get((namespace, name))
        if found is None:
            raise KubeNotFound(f'resourcequotas "{name}" not found')
        return found

    def set_limits(self, name: str, namespace: str, limits: VolumeLimits) -> None:
        """``UpdateVolumeLimits``."""
        self.ensure_limits(name, namespace)
        with self._lock:
            if (namespace, name) in self._limits:
                self._limits[(namespace, name)] = limits

    def usage(self, namespace: str) -> tuple[tuple[int, Quantity], tuple[int, Quantity]]:
        """``getVolumeUsage``: (count, storage) of the managed claims, then of the others."""
        managed, others = (0, Quantity()), (0, Quantity())
        for claim in self._claims.get(namespace, {}).values():
            count, storage = managed if claim.managed else others
            entry = (count + 1, storage.plus(claim.size))
            managed, others = (entry, others) if claim.managed else (managed, entry)
        return managed, others

    def quota_info(self, name: str, namespace: str) -> VolumeQuotaResponse:
        """``GetVolumeQuotaInfo``: what the user sees, the other claims left out."""
        self.ensure_limits(name, namespace)
        limits = self.limits(name, namespace)
        (used_count, used_storage), (other_count, other_storage) = self.usage(namespace)
        disk = limits.disk_available.minus(other_storage)
        if disk.value < 0:
            disk = Quantity()
        volumes = max(limits.max_volumes.int_value() - other_count, 0)
        return VolumeQuotaResponse(
            VolumeQuotaValues(str(disk), str(used_storage)),
            VolumeQuotaValues(str(volumes), str(used_count)),
            str(limits.max_disk),
            str(limits.min_disk),
        )

    def check_quota(self, name: str, namespace: str, size: str) -> None:
        """``ValidateManagedVolumeQuota`` (400 when it refuses)."""
        quota = self.quota_info(name, namespace)
        requested = Quantity.parse(size)
        available = Quantity.parse(quota.disk.max).minus(Quantity.parse(quota.disk.used))
        if available.value < 0:
            available = Quantity()
        if requested.value > available.value:
            raise _Refused(
                f"not enough volume disk quota: requested {requested}, available {available}"
            )
        left = max(int(quota.volumes.max) - int(quota.volumes.used), 0)
        if left < 1:
            raise _Refused(f"not enough volume count quota: requested 1, available {left}")

    # claims (resources/volume.go) ------------------------------------------------------------

    def create(
        self,
        namespace: str,
        owner: str,
        name: str,
        size: str,
        mode: str,
        by_service: str = "",
        policy: str = "",
    ) -> None:
        """``CreateManagedVolume``: the claim, past LimitRanger, ResourceQuota and the store."""
        claim = Claim(name, namespace, Quantity.parse(size), True, owner, mode, by_service, policy)
        with self._lock:
            if not self.exists(namespace):
                raise KubeNotFound(f'namespaces "{namespace}" not found')
            self._admit(claim)
            claims = self._claims.setdefault(namespace, {})
            if name in claims:
                raise KubeAlreadyExists(f'{CLAIMS} "{name}" already exists')
            claims[name] = claim
            self.directory(namespace, name).mkdir(parents=True, exist_ok=True)

    def _admit(self, claim: Claim) -> None:
        """The LimitRanger (PersistentVolumeClaimValidateLimitFunc) and ResourceQuota
        admission plugins, for the namespace's limits."""
        forbidden = f'{CLAIMS} "{claim.name}" is forbidden: '
        ranges = [v for (ns, _), v in self._limits.items() if ns == claim.namespace]
        for limits in ranges:
            kind = "storage usage per PersistentVolumeClaim"
            errors = []
            if claim.size.value < limits.min_disk.value:
                errors.append(f"minimum {kind} is {limits.min_disk}, but request is {claim.size}")
            if claim.size.value > limits.max_disk.value:
                errors.append(f"maximum {kind} is {limits.max_disk}, but request is {claim.size}")
            if errors:
                text = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
                raise KubeForbidden(forbidden + text)
        (count, storage), (others, other_storage) = self.usage(claim.namespace)
        used_count, used_storage = count + others, storage.plus(other_storage)
        for (namespace, quota), limits in self._limits.items():
            if namespace != claim.namespace:
                continue
            exceeded: list[tuple[str, str, str, str]] = []
            if used_count + 1 > limits.max_volumes.int_value():
                exceeded.append(
                    ("persistentvolumeclaims", "1", str(used_count), str(limits.max_volumes))
                )
            if used_storage.plus(claim.size).value > limits.disk_available.value:
                exceeded.append(
                    (
                        "requests.storage",
                        str(claim.size),
                        str(used_storage),
                        str(limits.disk_available),
                    )
                )
            if exceeded:
                requested, used, limited = (
                    ",".join(f"{row[0]}={row[column]}" for row in exceeded) for column in (1, 2, 3)
                )
                raise KubeForbidden(
                    f"{forbidden}exceeded quota: {quota}, requested: {requested}, "
                    f"used: {used}, limited: {limited}"
                )

    def get(self, namespace: str, name: str) -> ManagedVolume:
        """``GetManagedVolume``."""
        claim = self._claims.get(namespace, {}).get(name)
        if claim is None:
            raise KubeNotFound(f'{CLAIMS} "{name}" not found')
        return self._shown(claim)

    def listed(self, namespace: str) -> list[ManagedVolume]:
        """``ListManagedVolumes``: the managed claims, by name as the API lists them."""
        claims = sorted(self._claims.get(namespace, {}).values(), key=lambda c: c.name)
        return [self._shown(c) for c in claims if c.managed]

    def delete(self, namespace: str, name: str, force: bool) -> None:
        """``DeleteManagedVolume``: refused while a service attaches it, unless forced; a
        claim already gone is no error."""
        if not force and self.attachments(namespace, name):
            raise Attached()
        with self._lock:
            claim = self._claims.get(namespace, {}).pop(name, None)
        if claim is not None:
            shutil.rmtree(self.directory(namespace, name), ignore_errors=True)

    def attachments(self, namespace: str, name: str) -> list[VolumeAttachmentReference]:
        """``ListVolumeAttachments``: the services of the namespace that attach the volume."""
        found = [
            VolumeAttachmentReference(s.name, s.volume.mount_path)
            for s in self._services()
            if s.volume is not None
            and volume_name(s) == name
            and (s.namespace or self.services_namespace) == namespace
        ]
        return sorted(found, key=lambda a: a.service_name)

    def _shown(self, claim: Claim) -> ManagedVolume:
        """``managedVolumeFromPVC``."""
        attached = self.attachments(claim.namespace, claim.name)
        return ManagedVolume(
            claim.name,
            claim.namespace,
            claim.name,
            str(claim.size),
            claim.owner,
            claim.created_by_service,
            claim.creation_mode,
            claim.lifecycle_policy,
            attached,
            VolumeStatus(PHASE_IN_USE if attached else PHASE_READY, "", len(attached)),
        )

    def directory(self, namespace: str, name: str) -> Path:
        """Where a claim's content lives."""
        return self.root / namespace / name

    # a service's volume ----------------------------------------------------------------------

    def ensure_for(self, service: Service) -> None:
        """``EnsureServiceVolume``: a ``size`` creates the volume, a bare ``name`` needs it."""
        volume = service.volume
        if volume is None:
            return
        namespace = service.namespace or self.services_namespace
        if creates_volume(service):
            policy = volume.lifecycle_policy.strip() or LIFECYCLE_DELETE
            self.create(
                namespace,
                service.owner,
                volume_name(service),
                volume.size,
                CREATION_SERVICE,
                service.name,
                policy,
            )
        elif volume_name(service) not in self._claims.get(namespace, {}):
            raise KubeNotFound(f'{CLAIMS} "{volume_name(service)}" not found')

    def release_for(self, service: Service) -> None:
        """``DeleteServiceVolume``: a volume the service created goes with it, unless kept."""
        volume = service.volume
        if volume is None or not creates_volume(service):
            return
        if volume.lifecycle_policy.strip() == LIFECYCLE_RETAIN:
            return
        self.delete(service.namespace or self.services_namespace, volume_name(service), True)

    def mounted(self, service: Service) -> tuple[Path, str] | None:
        """The directory a pod of ``service`` sees at its ``mount_path``, when it has one."""
        volume = service.volume
        if volume is None:
            return None
        namespace = service.namespace or self.services_namespace
        if volume_name(service) not in self._claims.get(namespace, {}):
            return None
        return self.directory(namespace, volume_name(service)), volume.mount_path


class _Refused(StateError):
    status = 400


def volume_name(service: Service) -> str:
    """types.Service ``GetVolumeName``/``GetVolumePVCName``."""
    if service.volume is not None and service.volume.name.strip():
        return service.volume.name.strip()
    return service.name


def creates_volume(service: Service) -> bool:
    """types.Service ``CreatesManagedVolume``."""
    return service.volume is not None and bool(service.volume.size.strip())
