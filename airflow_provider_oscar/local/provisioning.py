"""What creating, updating and deleting a service does beyond storing it, in OSCAR's order
(create.go ``MakeCreateHandler``, update.go ``MakeUpdateHandler``, delete.go
``MakeDeleteHandler``): its MinIO side (:mod:`.service_buckets`) and, from v4.1.0, its
federation (:mod:`.federation`); and the MinIO users and keys of callers and pods.

Failures that end a request raise :class:`.rules.StateError`; answers OSCAR writes and goes on
past are returned as :class:`.service_buckets.Written`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy

import httpx

from airflow_provider_oscar.local import federation
from airflow_provider_oscar.local.minio import MinIOAdmin, generate_secret
from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.quotas import Quotas
from airflow_provider_oscar.local.rules import (
    ORIGIN_CLUSTER,
    WORKER,
    Conflict,
    Invalid,
    StateError,
    format_uid,
)
from airflow_provider_oscar.local.s3.server import MinIOServer
from airflow_provider_oscar.local.service_buckets import Panic, ServiceBuckets, Written
from airflow_provider_oscar.local.state import Caller, ClusterState
from airflow_provider_oscar.local.storage import S3Settings
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER, Service
from airflow_provider_oscar.local.volumes import (
    KubeAlreadyExists,
    KubeError,
    KubeNotFound,
    Volumes,
    creates_volume,
)

ADMIN = Caller(DEFAULT_OWNER, admin=True)
REFRESH_REQUIRED = "refresh_token secret is required for federated services"


class NotAuthorized(StateError):
    status = 401


class Provisioning:
    """The service flows and MinIO identities of one cluster."""

    def __init__(
        self,
        state: ClusterState,
        minio: MinIOServer,
        profile: Profile,
        volumes: Volumes,
        quotas: Quotas,
    ) -> None:
        self.state = state
        self.minio = minio
        self.profile = profile
        self.volumes = volumes
        self.quotas = quotas
        self.admin = MinIOAdmin(minio)
        self.buckets = ServiceBuckets(self.admin, profile, minio.region)

    # services -------------------------------------------------------------------------------

    async def create(self, service: Service, caller: Caller) -> list[Written]:
        raw = copy.deepcopy((service.input, service.output))  # before normalizeStoragePaths
        if not caller.admin and (service.isolation_level or "").upper() == "USER":
            service.owner = caller.owner
            await asyncio.to_thread(self.buckets.prepare_isolation, service, caller.subject)
        if federation.members(service):
            if not self.refresh_token(service):
                raise Invalid(REFRESH_REQUIRED)
            errors = await asyncio.to_thread(federation.verify_auth, service, caller.authorization)
            if errors:
                raise NotAuthorized(f"federation auth failed: {federation.go_errors(errors)}")
        federation.apply_federation(service)
        if not caller.admin:
            self.volumes.ensure_namespace(caller.subject)  # EnsureUserNamespace
        created = self.state.create_service(service, caller)
        if not caller.admin:
            self.quotas.ensure_queue(caller.subject)  # EnsureKueueUserQueues
        self._ensure_volume(created)
        uid = "" if caller.admin else caller.subject
        written: list[Written] = []
        if not _mesh_worker(created):
            try:
                written = await asyncio.to_thread(
                    self.buckets.after_create, created, uid, caller.admin
                )
            except Panic:
                raise  # the handler stops where it is: the service stays
            except StateError:
                self.state.delete_service(created.name, ADMIN)
                raise
        else:
            self.admin.register_webhook(created.name, created.token)
        if federation.members(created) and not _mesh_worker(created):
            expanded = copy.deepcopy(created)
            expanded.input, expanded.output = raw
            await self._expand_or_roll_back(expanded, caller)
        return written

    def _ensure_volume(self, service: Service) -> None:
        """knative.go ``CreateService`` (``EnsureServiceVolume``) and create.go's answers to
        its errors: the service is not kept."""
        try:
            self.volumes.ensure_for(service)
        except KubeError as exc:
            self.state.delete_service(service.name, ADMIN)
            if isinstance(exc, KubeAlreadyExists):
                raise Conflict("A managed volume with the provided name already exists") from None
            if isinstance(exc, KubeNotFound):
                if creates_volume(service):
                    raise Invalid(
                        "Referenced volume size is not defined: Please add the volume size in "
                        "service definition"
                    ) from None
                raise Invalid("Referenced volume does not exist in the caller namespace") from None
            raise StateError(f"Error creating the service: {exc.text}") from None

    async def _expand_or_roll_back(self, service: Service, caller: Caller) -> None:
        refresh = self.refresh_token(service)
        errors = await asyncio.to_thread(
            federation.expand, service, caller.authorization, "POST", refresh, self.profile.release
        )
        if not errors:
            return
        undone = await asyncio.to_thread(federation.rollback, service, caller.authorization)
        self.state.delete_service(service.name, ADMIN)
        if undone:
            raise StateError(
                f"Federation failed: {federation.go_errors(errors)}; rollback errors: "
                f"{federation.go_errors(undone)}"
            )
        raise StateError(f"Federation failed; rollback completed: {federation.go_errors(errors)}")

    async def update(self, service: Service, caller: Caller) -> list[Written]:
        raw = copy.deepcopy((service.input, service.output))
        old = self.state.read_service(service.name)
        if old is not None and service.isolation_level == "USER" and service.allowed_users:
            service.owner = old.owner
            uid = "" if caller.admin else caller.subject
            await asyncio.to_thread(self.buckets.prepare_isolation, service, uid)
        federation.apply_federation(service)
        if federation.members(service) and not (
            self.refresh_token(service) or (old and self.refresh_token(old))
        ):
            raise Invalid(REFRESH_REQUIRED)
        updated = self.state.update_service(service, caller)
        assert old is not None  # update_service raised NotFound otherwise
        written = await asyncio.to_thread(self.buckets.after_update, old, updated, caller.admin)
        if federation.members(updated) and not _mesh_worker(updated):
            expanded = copy.deepcopy(updated)
            expanded.input, expanded.output = raw
            errors = await asyncio.to_thread(
                federation.expand,
                expanded,
                caller.authorization,
                "PUT",
                self.refresh_token(updated),
                self.profile.release,
            )
            if errors:
                warning = f"Updated with federation warnings: {federation.go_errors(errors)}"
                written.append(Written(200, warning))
        return written

    async def delete(self, name: str, caller: Caller) -> tuple[Service, list[Written]]:
        service = self.state.delete_service(name, caller)
        with contextlib.suppress(StateError):  # logged by knative.go DeleteService
            self.volumes.release_for(service)
        return service, await asyncio.to_thread(self.buckets.after_delete, service)

    def refresh_token(self, service: Service) -> str:
        """refresh_token.go: the ``refresh_token`` of the service's secrets."""
        return self.state.secrets_of(service.name).get("refresh_token", "").strip() or (
            (service.environment.secrets or {}).get("refresh_token", "").strip()
        )

    # MinIO users and the keys pods get ------------------------------------------------------

    def provision_user(self, uid: str) -> None:
        """auth/oidc.go getOIDCMiddleware: a MinIO user (and its secret) for a new OIDC user."""
        if not self.minio.iam.user_exists(uid):
            self.admin.create_minio_user(uid, generate_secret())

    def user_keys(self, uid: str) -> tuple[str, str] | None:
        secret = self.minio.iam.secret_key(uid)
        return (uid, secret) if secret is not None else None

    def _store_of(self, keys: tuple[str, str] | None) -> S3Settings | None:
        return self.minio.user_settings(*keys) if keys else None

    def mount_store(self, service: Service) -> S3Settings | None:
        """resources/mount.go ``setMinIOEnvVars``: the sidecar mounts with the owner's keys
        (the ``minio`` secret for ``cluster_admin``)."""
        if service.owner == DEFAULT_OWNER:
            return self.minio.root
        return self._store_of(self.user_keys(service.owner))

    def job_store(self, service: Service, who: str) -> S3Settings | None:
        """job.go: the MinIO secret mounted in a job's pod: the event's principal, else the
        OIDC caller; the owner's own (and the root user's) is the ``minio`` secret. ``None``
        when no such secret exists (the pod cannot mount it and stays Pending)."""
        key = who or service.owner
        root = self.minio.root
        if key in (service.owner, "minio", root.access_key):
            return root
        return self._store_of(self.user_keys(key))

    def origin_store(self, service: Service, authorization: str, uid: str) -> S3Settings | None:
        """job.go ``ensureOriginMinIODefaultSecretIfNeeded`` (v4.1.0): a federation worker
        whose default MinIO is its origin cluster's gets that user's keys from the origin's
        ``/system/config``; ``None`` when the service is no such worker."""
        default = (
            (service.storage_providers.minio if service.storage_providers else None) or {}
        ).get("default")
        if default is None or not default.endpoint.strip():
            return None
        if default.endpoint == self.minio.root.endpoint:
            return None
        origin = (service.annotations or {}).get(ORIGIN_CLUSTER, "").strip()
        if not origin:
            return None
        cluster = (service.clusters or {}).get(origin)
        if cluster is None:
            raise StateError(f'origin cluster "{origin}" not defined in service clusters')
        if not cluster.endpoint.strip():
            raise StateError(f'origin cluster "{origin}" endpoint is empty')
        provider = _fetch_minio_provider(cluster.endpoint, authorization, cluster.ssl_verify)
        if not (provider.get("access_key") and provider.get("secret_key")):
            raise StateError(f'origin MinIO credentials are empty for cluster "{origin}"')
        if not uid.strip() or uid == "nil":
            raise StateError("origin user id is missing for delegated job")
        _ = format_uid(uid)  # the secret is named after it
        return S3Settings(
            str(provider.get("endpoint") or default.endpoint),
            str(provider["access_key"]),
            str(provider["secret_key"]),
            str(provider.get("region") or "us-east-1"),
        )


def _fetch_minio_provider(endpoint: str, authorization: str, verify: bool) -> dict[str, object]:
    """job.go ``fetchMinIOProvider``: the origin's ``/system/config`` for the caller."""
    url = endpoint.strip().rstrip("/") + "/system/config"
    headers = {"Authorization": authorization} if authorization.strip() else {}
    try:
        response = httpx.get(url, headers=headers, verify=verify, timeout=20)
    except httpx.HTTPError as exc:
        raise StateError(f"error fetching origin MinIO credentials: {exc}") from None
    if response.status_code != 200:
        raise StateError(
            "error fetching origin MinIO credentials: origin /system/config returned status "
            f"{response.status_code}"
        )
    provider = response.json().get("minio_provider")
    if not isinstance(provider, dict):
        raise StateError(
            "error fetching origin MinIO credentials: origin /system/config did not include "
            "minio_provider"
        )
    return provider


def _mesh_worker(service: Service) -> bool:
    """A mesh topology's worker replica manages neither buckets nor further replicas."""
    topology = service.federation.topology.strip().lower() if service.federation else ""
    return (service.annotations or {}).get(WORKER, "").strip().lower() == "true" and (
        topology == "mesh"
    )
