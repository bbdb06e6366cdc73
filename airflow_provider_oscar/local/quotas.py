"""Users' quotas: the Kueue ClusterQueue of each user (CPU and memory; ephemeral storage and GPU
from v4.1.0), their volume limits (:mod:`.volumes`, v4.0.0) and their MinIO quota (a ConfigMap,
v4.1.0), as ``/system/quotas/user`` reads and changes them.

grycap/oscar ``pkg/handlers/quotas.go`` at v3.7.1 (``fetchQuota``, ``updateQuota``), v4.0.0 and
v4.1.2 (``ensureQuotasEnabled``, ``fetchQuota``, ``updateQuota``, ``updateVolumeQuota``,
``getMinIOQuotaInfo``, ``updateMinIOQuota``); ``pkg/utils/kueue.go`` (``ensureClusterQueue``,
``CreateKueueUserQueuesIfDontExist``). Kueue admits a user's jobs against these quotas
(``cluster.py``); the MinIO quota is kept and shown, MinIO enforces no bucket quota here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_provider_oscar.local.minio import MinIOAdmin, format_storage
from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.rules import StateError, cluster_queue_name, format_uid
from airflow_provider_oscar.local.types.config import Config
from airflow_provider_oscar.local.types.quantity import (
    BINARY_SI,
    DECIMAL_SI,
    Quantity,
    QuantityError,
    parse_quantity,
)
from airflow_provider_oscar.local.types.quotas import (
    MinIOBucketCountQuota,
    MinIOQuotaResponse,
    MinIOQuotaUpdate,
    MinIOStoragePerBucketQuota,
    MinIOStorageTotalUsage,
    QuotaResponse,
    QuotaResponseV37,
    QuotaUpdateRequest,
    QuotaValues,
    VolumeQuotaUpdate,
)
from airflow_provider_oscar.local.volumes import VolumeLimits, Volumes

CPU, MEMORY, EPHEMERAL, GPU = "cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"
KUEUE_OFF = "kueue is not enabled: /system/quotas requires KUEUE_ENABLE=true"


class Unavailable(StateError):
    """writeQuotaError: Kueue disabled or missing answers 503."""

    status = 503


class QuotaError(StateError):
    """Anything else fetchQuota/updateQuota return: 500."""


@dataclass
class ClusterQueue:
    """``oscar-cq-<owner>``: the nominal quota of its one flavor, in covered-resource order."""

    nominal: dict[str, Quantity] = field(default_factory=dict)


class Quotas:
    """The ClusterQueues, what the admitted jobs use of them, and MinIO quota ConfigMaps."""

    def __init__(
        self,
        config: Callable[[], Config],
        profile: Profile,
        volumes: Volumes,
        admin: MinIOAdmin,
        used: Callable[[str], tuple[int, int]],
        changed: Callable[[], None],
    ) -> None:
        self._config = config
        self.profile = profile
        self.volumes = volumes
        self.admin = admin
        self._used = used  # (millicores, bytes) Kueue has admitted for an owner
        self._changed = changed  # Kueue looks at the waiting workloads again
        self._queues: dict[str, ClusterQueue] = {}
        self._minio: dict[str, MinIOQuotaUpdate] = {}  # namespace -> oscar-minio-quota
        self._lock = threading.Lock()

    # ClusterQueues (utils/kueue.go) ----------------------------------------------------------

    def ensure_queue(self, owner: str) -> None:
        """``ensureClusterQueue``: created with the configured quota; an existing one keeps
        its quota."""
        config = self._config()
        if not config.kueue_enable:
            return
        with self._lock:
            if owner in self._queues:
                return
            nominal = {CPU: Quantity.parse(config.kueue_default_cpu)}
            nominal[MEMORY] = Quantity.parse(config.kueue_default_memory)
            if self.profile.quota_storage_and_minio:
                nominal[EPHEMERAL] = Quantity.parse(config.kueue_default_ephemeral_storage)
                gpu = config.kueue_default_gpu if config.gpu_available else "0"
                nominal[GPU] = Quantity.parse(gpu)
            self._queues[owner] = ClusterQueue(nominal)

    def has_queue(self, owner: str) -> bool:
        return owner in self._queues

    def nominal(self, owner: str) -> tuple[int, int]:
        """The (millicores, bytes) of CPU and memory Kueue may admit for ``owner``."""
        queue = self._queues.get(owner)
        if queue is None:
            return 0, 0
        cpu, memory = queue.nominal.get(CPU), queue.nominal.get(MEMORY)
        millis = int((cpu.value * 1000).to_integral_value(rounding="ROUND_UP")) if cpu else 0
        return millis, memory.int_value() if memory else 0

    def _queue(self, user: str) -> ClusterQueue:
        queue = self._queues.get(user)
        if queue is None:
            name = cluster_queue_name(user)
            raise QuotaError(
                f'getting ClusterQueue {name}: clusterqueues.kueue.x-k8s.io "{name}" not found'
            )
        return queue

    # GET (fetchQuota) ------------------------------------------------------------------------

    def fetch(self, user: str) -> QuotaResponse | QuotaResponseV37:
        config = self._config()
        if self.profile.quotas_as_quantities:
            return self._fetch_v37(user)
        if not (config.kueue_enable or config.volume_enable):
            raise Unavailable(
                "kueue is not enabled: /system/quotas requires KUEUE_ENABLE=true or "
                "VOLUME_ENABLE=true"
            )
        answer = QuotaResponse(user)
        if config.kueue_enable:
            queue = self._queue(user)
            used_cpu, used_memory = self._used(user)
            nominal = queue.nominal

            def value(name: str) -> int:
                quantity = nominal.get(name)
                if quantity is None:
                    return 0
                if name == CPU:
                    return int((quantity.value * 1000).to_integral_value(rounding="ROUND_UP"))
                return quantity.int_value()

            answer.cluster_queue = cluster_queue_name(user)
            answer.resources = {
                "cpu": QuotaValues(value(CPU), used_cpu),
                "memory": QuotaValues(value(MEMORY), used_memory),
            }
            if self.profile.quota_storage_and_minio:
                answer.resources["ephemeral-storage"] = QuotaValues(value(EPHEMERAL), 0)
                answer.resources["gpu"] = QuotaValues(value(GPU), 0)
        if config.volume_enable:
            namespace = self.volumes.namespace_of(user)
            try:
                answer.volumes = self.volumes.quota_info(format_uid(user), namespace)
            except StateError as exc:
                raise QuotaError(f"getting volume quotas for user {user}: {exc.text}") from None
        if self.profile.quota_storage_and_minio:
            answer.minio = self._minio_info(user)
        return answer

    def _fetch_v37(self, user: str) -> QuotaResponseV37:
        """v3.7.x: Quantity strings; Kueue's usage totals are Quantities too (CPU in
        DecimalSI millicores, memory BinarySI)."""
        queue = self._queue(user)
        used_cpu, used_memory = self._used(user)
        cpu = queue.nominal.get(CPU)
        memory = queue.nominal.get(MEMORY)
        return QuotaResponseV37(
            user,
            cluster_queue_name(user),
            {
                "cpu": QuotaValues(
                    str(cpu or ""), str(Quantity(parse_quantity(f"{used_cpu}m"), DECIMAL_SI))
                ),
                "memory": QuotaValues(str(memory or ""), str(Quantity(used_memory, BINARY_SI))),
            },
        )

    def _minio_info(self, user: str) -> MinIOQuotaResponse:
        """``getMinIOQuotaInfo``: the ConfigMap's limits over the user's buckets and usage."""
        answer = MinIOQuotaResponse(
            MinIOBucketCountQuota(0, 0),
            MinIOStoragePerBucketQuota("0"),
            MinIOStorageTotalUsage("0"),
        )
        owned = self.admin.buckets_by_owner(user)
        answer.buckets.used = len(owned)
        answer.storage_total.used = format_storage(self.admin.used_bytes(owned)) if owned else "0"
        stored = self._minio.get(self.volumes.namespace_of(user))
        if stored is None:
            return answer
        if stored.buckets:
            answer.buckets.max = _bucket_limit(stored.buckets)
        if stored.storage_per_bucket:
            _storage_bytes(stored.storage_per_bucket)
            answer.storage_per_bucket.max = stored.storage_per_bucket
        return answer

    def ensure_minio_quota(self, namespace: str) -> None:
        """``CreateMinIOQuotaConfigMapIfDontExist`` (with ``MINIO_QUOTA_ENABLED``)."""
        config = self._config()
        if config.minio_quota_enabled and namespace not in self._minio:
            self._minio[namespace] = MinIOQuotaUpdate(
                config.minio_quota_buckets, config.minio_quota_storage
            )

    # PUT (updateQuota) -----------------------------------------------------------------------

    def update(self, user: str, request: QuotaUpdateRequest) -> None:
        config = self._config()
        if self.profile.quotas_as_quantities:
            self._update_queue(user, request)
            return
        if not (config.kueue_enable or config.volume_enable):
            raise Unavailable(
                "kueue is not enabled: /system/quotas requires KUEUE_ENABLE=true or "
                "VOLUME_ENABLE=true"
            )
        if request.cpu or request.memory or request.ephemeral_storage:
            if not config.kueue_enable:
                raise Unavailable(KUEUE_OFF)
            self._update_queue(user, request)
        if request.volumes is not None and has_volume_update(request.volumes):
            if not config.volume_enable:
                raise QuotaError("volume quotas require VOLUME_ENABLE=true")
            self._update_volumes(user, request.volumes)
        if request.minio is not None and (
            request.minio.buckets or request.minio.storage_per_bucket
        ):
            self._update_minio(user, request.minio)

    def _update_queue(self, user: str, request: QuotaUpdateRequest) -> None:
        queue = self._queue(user)
        wanted = {CPU: request.cpu, MEMORY: request.memory}
        if self.profile.quota_storage_and_minio:
            wanted |= {EPHEMERAL: request.ephemeral_storage, GPU: request.gpu}
        words = {CPU: "cpu", MEMORY: "memory", EPHEMERAL: "ephemeral storage", GPU: "gpu"}
        changed = dict(queue.nominal)
        for name in queue.nominal:  # the flavor's resources, in order; the first error wins
            if wanted.get(name):
                try:
                    changed[name] = Quantity.parse(wanted[name])
                except QuantityError as exc:
                    raise QuotaError(f"invalid {words[name]} quantity: {exc}") from None
        with self._lock:
            queue.nominal = changed
        self._changed()

    def _update_volumes(self, user: str, update: VolumeQuotaUpdate) -> None:
        """``updateVolumeQuota``: what the user sees, plus the claims it does not."""
        name, namespace = format_uid(user), self.volumes.namespace_of(user)
        try:
            current = self.volumes.limits(name, namespace)
        except StateError:
            self.volumes.ensure_limits(name, namespace)
            try:
                current = self.volumes.limits(name, namespace)
            except StateError as exc:
                raise QuotaError(f"getting current volume quota: {exc.text}") from None
        _, (other_count, other_storage) = self.volumes.usage(namespace)
        merged = VolumeLimits(
            current.disk_available, current.max_volumes, current.max_disk, current.min_disk
        )

        def parsed(text: str, what: str) -> Quantity:
            try:
                return Quantity.parse(text)
            except QuantityError as exc:
                raise QuotaError(f"invalid volumes.{what} quantity: {exc}") from None

        if update.disk:
            merged.disk_available = parsed(update.disk, "disk").plus(other_storage)
        if update.volumes:
            count = parsed(update.volumes, "volumes").int_value() + other_count
            merged.max_volumes = Quantity(count, DECIMAL_SI)
        if update.max_disk_per_volume:
            merged.max_disk = parsed(update.max_disk_per_volume, "max_disk_per_volume")
        if update.min_disk_per_volume:
            merged.min_disk = parsed(update.min_disk_per_volume, "min_disk_per_volume")
        self.volumes.set_limits(name, namespace, merged)

    def _update_minio(self, user: str, update: MinIOQuotaUpdate) -> None:
        """``updateMinIOQuota``: checked, then merged into the user's ConfigMap."""
        if update.buckets:
            _bucket_limit(update.buckets)
        if update.storage_per_bucket:
            _storage_bytes(update.storage_per_bucket)
        namespace = self.volumes.namespace_of(user)
        if not self.volumes.exists(namespace):
            raise QuotaError(
                f"creating MinIO quota ConfigMap {namespace}/oscar-minio-quota: "
                f'namespaces "{namespace}" not found'
            )
        with self._lock:
            current = self._minio.get(namespace) or MinIOQuotaUpdate()
            self._minio[namespace] = MinIOQuotaUpdate(
                update.buckets or current.buckets,
                update.storage_per_bucket or current.storage_per_bucket,
            )


def has_volume_update(update: VolumeQuotaUpdate) -> bool:
    return bool(
        update.disk or update.volumes or update.max_disk_per_volume or update.min_disk_per_volume
    )


def _bucket_limit(value: str) -> int:
    """``parseMinIOBucketLimit``."""
    text = value.strip()
    try:
        limit = int(text, 10)
    except ValueError:
        raise QuotaError(
            f'invalid minio.buckets quantity: strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None
    if limit < 0:
        raise QuotaError("invalid minio.buckets quantity: must be greater than or equal to zero")
    return limit


def _storage_bytes(value: str) -> int:
    """``ParseStorageBytes``."""
    try:
        quantity = Quantity.parse(value)
    except QuantityError as exc:
        raise QuotaError(f"invalid minio.storage_per_bucket: {exc}") from None
    if quantity.value < 0:
        raise QuotaError(
            "invalid minio.storage_per_bucket: quantity must be greater than or equal to zero"
        )
    return quantity.int_value()
