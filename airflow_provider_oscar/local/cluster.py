"""The embedded cluster: Kubernetes, Knative and Kueue as OSCAR sees them, over the state,
storage, runtime and fault plan.

Every method runs on the server's event loop. A job is a Kubernetes Job: with Kueue on (the
default from v3.7.0) the job of a service not owned by ``cluster_admin`` starts suspended and
waits for its LocalQueue's ClusterQueue quota; then its pod waits ``Pending`` while the node is
full (a job takes its service's ``cpu`` and ``memory``), and runs with no deadline (job.go sets
none). A ``/run`` is a request to the Knative service: one request per pod
(ContainerConcurrency 1), at most ``synchronous.max_scale`` pods, and only as many pods as the
node's memory holds; requests beyond wait, as Knative's activator holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_oscar.local import federation
from airflow_provider_oscar.local.counts import ExecutionCounts
from airflow_provider_oscar.local.deployments import knative_status, pod_backed_status
from airflow_provider_oscar.local.executions import ExecutionLog
from airflow_provider_oscar.local.exposed import ExposedDeployments
from airflow_provider_oscar.local.faults import FaultPlan
from airflow_provider_oscar.local.minio import ALL_USERS_GROUP, MinIOAdmin, MinIOError
from airflow_provider_oscar.local.profiles import Profile, profile_for
from airflow_provider_oscar.local.provisioning import Provisioning
from airflow_provider_oscar.local.quotas import Quotas
from airflow_provider_oscar.local.rules import format_uid
from airflow_provider_oscar.local.runtime import Invocation, Outcome, Runtime
from airflow_provider_oscar.local.s3.server import MinIOServer
from airflow_provider_oscar.local.service_buckets import Panic, Written
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.local.state import Caller, ClusterState, Job, JobStatus, utc_now
from airflow_provider_oscar.local.storage import S3Settings
from airflow_provider_oscar.local.types.config import Config, parse_string_slice
from airflow_provider_oscar.local.types.deployment import (
    ServiceDeploymentStatus,
)
from airflow_provider_oscar.local.types.quantity import bytes_of, millicores
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER, Service
from airflow_provider_oscar.local.types.storage import MinIOProvider
from airflow_provider_oscar.local.volumes import Volumes

log = logging.getLogger(__name__)
MAX_ARG_STRLEN = 32 * 4096  # Linux: one environment string, with its name, "=" and NUL


DEFAULT_VO = "vo.oscar-local"  # the VO embedded OIDC users are enrolled in by default


@dataclass
class RunOutcome:
    """What became of a ``/run``: the watchdog's answer, or a cut connection."""

    outcome: Outcome | None
    cut: bool = False


class LocalCluster:
    """OSCAR's operations over the embedded state, store and runtime."""

    def __init__(self, settings: Settings, minio: MinIOServer, work_root: Path) -> None:
        self.settings = settings
        self.minio = minio
        self.store = minio.store
        self.profile: Profile = profile_for(settings.oscar_version)
        self._config = self._base_config()
        self.faults = FaultPlan()
        self.counts = ExecutionCounts()
        s3 = minio.root
        provider = MinIOProvider(s3.endpoint, s3.secure, s3.access_key, s3.secret_key, s3.region)
        self.state = ClusterState(self._config, self.profile, provider)
        self.runtime = Runtime(work_root, self.profile.release)
        self.volumes = Volumes(
            lambda: self.config,
            self.profile,
            work_root / "volumes",
            lambda: self.state.list_services(Caller(DEFAULT_OWNER, admin=True)),
        )
        self.quotas = Quotas(
            lambda: self.config,
            self.profile,
            self.volumes,
            MinIOAdmin(minio),
            lambda owner: self._admitted.get(owner, (0, 0)),
            lambda: self._admit(),
        )
        self.provisioning = Provisioning(self.state, minio, self.profile, self.volumes, self.quotas)
        self.admin, self.buckets = self.provisioning.admin, self.provisioning.buckets
        self.admin.create_all_users_group()  # auth.go CustomAuth, at start
        with contextlib.suppress(MinIOError):  # no MinIO console user here (#nosec G104)
            self.admin.create_add_group(ALL_USERS_GROUP, ["console"], remove=False)
        minio.notifications.deliver = self._webhook
        self.exposed = ExposedDeployments()
        self.started = utc_now()
        self._queue: deque[Job] = deque()
        self._suspended: deque[Job] = deque()
        self._admitted: dict[str, tuple[int, int]] = {}  # ClusterQueue owner -> (mcpu, bytes)
        self._holding: set[str] = set()  # jobs admitted by Kueue, holding their owner's quota
        self._used_millis = 0
        self._used_memory = 0
        self._running_jobs: dict[str, asyncio.Task[None]] = {}
        self._sync_gates: dict[str, asyncio.Semaphore] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()  # jobs a FailingJobs fault caught when submitted
        self.sync_running: dict[str, int] = {}
        self.executions = ExecutionLog()
        self.job_endpoint: Callable[[str, str, bytes], Awaitable[object]] | None = None

    @property
    def config(self) -> Config:
        """The cluster's configuration; OIDC is on while bearer or refresh tokens are set."""
        config, settings = self._config, self.settings
        oidc = bool(settings.bearer_tokens or settings.refresh_tokens)
        config.oidc_enable = oidc
        config.oidc_groups = self._cluster_groups() if oidc else parse_string_slice("")
        config.oidc_issuers = ["oscar-local"] if oidc else parse_string_slice("")
        return config

    def _cluster_groups(self) -> list[str]:
        """OIDC_GROUPS: as set, else the default VO and every group a user was given."""
        if self.settings.cluster_groups is not None:
            return list(self.settings.cluster_groups)
        named = [g for groups in self.settings.oidc_groups.values() for g in groups]
        return list(dict.fromkeys([DEFAULT_VO, *named]))

    def groups_of(self, subject: str) -> list[str]:
        """The groups an OIDC user's token carries (the default VO unless given some)."""
        return list(self.settings.oidc_groups.get(subject) or [DEFAULT_VO])

    def authorised(self, subject: str) -> bool:
        """auth/oidc.go ``IsAuthorised``: one of the user's groups is one of the cluster's."""
        return bool(set(self.groups_of(subject)) & set(self.config.oidc_groups or []))

    def _base_config(self) -> Config:
        settings, profile = self.settings, self.profile
        return Config(
            serverless_backend="knative" if settings.serverless_backend else "",
            kueue_enable=profile.kueue_default
            if settings.kueue_enable is None
            else settings.kueue_enable and profile.kueue_default,
            volume_enable=profile.volume_default
            if settings.volume_enable is None
            else settings.volume_enable and profile.volume_default,
            write_timeout=settings.run_timeout,
            users_admin=list(settings.users_admin),
        )

    async def start(self) -> None:
        """Nothing runs in the background until requests arrive."""

    async def stop(self) -> None:
        tasks = list(self._background) + list(self._running_jobs.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def logged_in(self, uid: str) -> None:
        """auth/oidc.go: what each OIDC request ensures for its caller beyond the MinIO user
        (the ClusterQueue and volume limits from v4.0.0, the namespace from v4.1.0)."""
        if not self.profile.queues_at_login:
            return
        self.quotas.ensure_queue(uid)
        if self.profile.namespace_at_login:
            self.quotas.ensure_minio_quota(self.volumes.ensure_namespace(uid))
        self.volumes.ensure_limits(format_uid(uid), self.volumes.namespace_of(uid))

    # services -----------------------------------------------------------------------------

    async def create_service(self, service: Service, caller: Caller) -> list[Written]:
        return await self.provisioning.create(service, caller)

    async def update_service(self, service: Service, caller: Caller) -> list[Written]:
        written = await self.provisioning.update(service, caller)
        self._sync_gates.pop(service.name, None)
        self._admit()  # a new owner may change what Kueue does with waiting jobs
        return written

    async def delete_service(self, name: str, caller: Caller) -> list[Written]:
        _, written = await self.provisioning.delete(name, caller)
        self.exposed.forget(name)
        for job_key, task in list(self._running_jobs.items()):
            if job_key.startswith(f"{name}:"):
                task.cancel()
        return written

    def deployment(self, service: Service) -> ServiceDeploymentStatus:
        """deployment.go inspectDeploymentRuntime for an exposed, Knative or pod-backed
        service."""
        namespace = service.namespace or self.config.services_namespace
        if service.expose.exposed:
            return self.exposed.status(service, namespace)
        fault = self.faults.deployment_fault(service.name)
        if not self.config.serverless_backend:  # inspectPodBackedDeploymentRuntime
            return pod_backed_status(service, namespace)
        return knative_status(
            service,
            namespace,
            created=self.state.created_at(service.name),
            pods=self.sync_running.get(service.name, 0),
            fault=fault,
            deploy_delay=self.settings.deploy_delay,
        )

    def deployment_logs(self, service: Service) -> list[str]:
        """What the service's current pods printed (a failing revision's, when injected)."""
        fault = self.faults.deployment_fault(service.name)
        return list(fault.logs) if fault else []

    # executions ---------------------------------------------------------------------------

    async def delegated(self, service: Service, event: bytes, job: str, authorization: str) -> bool:
        """job.go with ``RESOURCE_MANAGER_ENABLE``: a service with federation members whose
        job no node can take now (resourcemanager/k8s.go ``IsSchedulable``: CPU and memory
        below what is free of requests) is delegated (``DelegateJob``); False when it stays."""
        if not (self.settings.resource_manager and federation.members(service)):
            return False
        free_cpu = self.total_millicores - self.used_millicores
        free_memory = self.settings.total_memory_bytes - self.used_memory
        if millicores(service.cpu) < free_cpu and bytes_of(service.memory) < free_memory:
            return False
        refresh = self.provisioning.refresh_token(service)
        try:
            return await asyncio.to_thread(
                federation.delegate, service, event, job, authorization, refresh
            )
        except federation.GoPanic:
            raise Panic() from None

    def kueue_suspends(self, service: Service) -> bool:
        """job.go / run.go: Kueue governs services whose owner is not ``cluster_admin``."""
        return self.config.kueue_enable and service.owner != DEFAULT_OWNER

    async def workload_admitted(self, service: Service) -> bool:
        """utils/kueue.go VerifyWorkload: a probe workload in the service's LocalQueue is
        admitted, or refused after the admission timeout."""
        if self._admissible(service, self.state.local_queue_owner(service.name)):
            return True
        await asyncio.sleep(self.settings.kueue_admission_timeout)
        return False

    async def run_sync(self, service: Service, event: bytes) -> RunOutcome:
        """Execute a ``/run`` request; cut when it outlasts the server's write timeout."""
        deadline = asyncio.get_running_loop().time() + self.settings.run_timeout
        gate = self._sync_gate(service)
        try:
            await asyncio.wait_for(gate.acquire(), self.settings.run_timeout)
        except asyncio.TimeoutError:
            return RunOutcome(None, cut=True)
        name = service.name
        self.counts.count_run(name, event)
        self.sync_running[name] = self.sync_running.get(name, 0) + 1
        self._take(millicores(service.cpu), bytes_of(service.memory), +1)
        try:
            remaining = max(0.001, deadline - asyncio.get_running_loop().time())
            call = Invocation(
                service,
                self.state.secrets_of(name),
                event,
                job_name=None,
                timeout=remaining,
                volume=self.volumes.mounted(service),
            )
            outcome = await self.runtime.execute(call)
            return RunOutcome(outcome, cut=outcome.timed_out)
        finally:
            gate.release()
            self.sync_running[name] -= 1
            self._take(millicores(service.cpu), bytes_of(service.memory), -1)
            self._dispatch()  # jobs may have waited for the capacity this run held

    def submit(
        self,
        service: Service,
        event: bytes,
        owner: str | None,
        name: str,
        store: S3Settings | None,
    ) -> Job:
        """Create a job for ``service`` (job.go); what happens next is Kubernetes' business.

        ``store`` is the MinIO secret mounted in its pod; without one the pod cannot mount it
        and stays ``Pending`` (FailedMount)."""
        job = self.state.add_job(service, event, owner, name)
        self.counts.count_job(service.name, event)
        self.state.update_job(job, minio=store)
        if store is None:
            self.state.update_job(job, status=JobStatus.PENDING, has_pod=True)
            return job
        stuck = self.faults.stuck_status(service.name)
        if stuck:
            self.state.update_job(job, status=JobStatus(stuck), has_pod=stuck == "Pending")
            return job
        if len(b"EVENT=") + len(event) + 1 > MAX_ARG_STRLEN:
            # The event travels in the container's EVENT variable: execve fails with E2BIG.
            now = utc_now()
            self.state.update_job(
                job, status=JobStatus.FAILED, has_pod=True, started=now, finished=now
            )
            return job
        if self.faults.fails(service.name):
            self._failing.add(f"{service.name}:{job.name}")
        if self.kueue_suspends(service):
            self.state.update_job(job, queue_owner=self.state.local_queue_owner(service.name))
            self._suspended.append(job)
            self._admit()
        else:
            self._enqueue(job)
        return job

    def cancel(self, job: Job) -> None:
        task = self._running_jobs.get(f"{job.service}:{job.name}")
        if task:
            task.cancel()
        if job in self._suspended:
            self._suspended.remove(job)
        if job in self._queue:
            self._queue.remove(job)
            self._release_quota(job)
        self._failing.discard(f"{job.service}:{job.name}")

    @property
    def used_millicores(self) -> int:
        return max(0, self._used_millis)

    @property
    def used_memory(self) -> int:
        return max(0, self._used_memory)

    @property
    def total_millicores(self) -> int:
        return round(self.settings.total_cpu * 1000)

    def _take(self, millis: int, memory: int, sign: int) -> None:
        self._used_millis += sign * millis
        self._used_memory += sign * memory

    def _sync_gate(self, service: Service) -> asyncio.Semaphore:
        gate = self._sync_gates.get(service.name)
        if gate is None:
            fit = self.settings.total_memory_bytes // max(1, bytes_of(service.memory))
            limit = service.synchronous.max_scale or max(1, fit)
            gate = self._sync_gates[service.name] = asyncio.Semaphore(limit)
        return gate

    # Kueue admission -------------------------------------------------------------------------

    def _admissible(self, service: Service, queue_owner: str | None) -> bool:
        if queue_owner is None:
            return False  # no LocalQueue: Kueue never admits the workload
        used_cpu, used_memory = self._admitted.get(queue_owner, (0, 0))
        quota_cpu, quota_memory = self.quotas.nominal(queue_owner)
        return (
            used_cpu + millicores(service.cpu) <= quota_cpu
            and used_memory + bytes_of(service.memory) <= quota_memory
        )

    def _admit(self) -> None:
        for job in list(self._suspended):
            service = self.state.read_service(job.service)
            if service is None:
                self._suspended.remove(job)
                continue
            if not self.kueue_suspends(service):
                self._suspended.remove(job)
                self._enqueue(job)
            elif self._admissible(service, job.queue_owner):
                self._hold_quota(job, +1)
                self._suspended.remove(job)
                self._enqueue(job)

    def _hold_quota(self, job: Job, sign: int) -> None:
        assert job.queue_owner is not None
        used_cpu, used_memory = self._admitted.get(job.queue_owner, (0, 0))
        self._admitted[job.queue_owner] = (
            used_cpu + sign * job.cpu_millis,
            used_memory + sign * job.memory_bytes,
        )
        key = f"{job.service}:{job.name}"
        if sign > 0:
            self._holding.add(key)
        else:
            self._holding.discard(key)

    def _release_quota(self, job: Job) -> None:
        if f"{job.service}:{job.name}" in self._holding:
            self._hold_quota(job, -1)

    # the node ----------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self.state.update_job(job, status=JobStatus.PENDING, has_pod=True)
        self._queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            job = self._queue[0]
            service = self.state.read_service(job.service)
            if service is None:
                self._queue.popleft()
                continue
            busy = self._used_millis > 0
            over_cpu = self._used_millis + job.cpu_millis > self.total_millicores
            over_memory = self._used_memory + job.memory_bytes > self.settings.total_memory_bytes
            if busy and (over_cpu or over_memory):
                return
            self._queue.popleft()
            self._take(job.cpu_millis, job.memory_bytes, +1)
            key = f"{job.service}:{job.name}"
            task = asyncio.get_running_loop().create_task(self._run_job(job, service))
            self._running_jobs[key] = task

    async def _run_job(self, job: Job, service: Service) -> None:
        key = f"{job.service}:{job.name}"
        self.state.update_job(job, status=JobStatus.RUNNING, started=utc_now())
        try:
            call = Invocation(
                service,
                self.state.secrets_of(service.name),
                job.event,
                job_name=job.name,
                timeout=self.settings.job_timeout,
                minio=job.minio,
                mount=self.provisioning.mount_store(service),
                volume=self.volumes.mounted(service),
                fail=key in self._failing,
            )
            outcome = await self.runtime.execute(call)
            status = JobStatus.FAILED if outcome.failed else JobStatus.SUCCEEDED
            self.state.update_job(job, logs=outcome.log, status=status, finished=utc_now())
        except asyncio.CancelledError:
            self.state.update_job(job, status=JobStatus.FAILED, finished=utc_now())
        except Exception as exc:
            log.exception("job %s crashed", job.name)
            self.state.update_job(
                job, status=JobStatus.FAILED, finished=utc_now(), logs=f"{job.logs}{exc}\n"
            )
        finally:
            self._take(job.cpu_millis, job.memory_bytes, -1)
            self._running_jobs.pop(key, None)
            self._failing.discard(key)
            self._release_quota(job)
            self._admit()
            self._dispatch()

    async def _webhook(self, service_name: str, token: str, event: bytes) -> None:
        """MinIO's webhook target: ``POST /job/<service>`` with ``Bearer <auth_token>``."""
        if self.job_endpoint is None:
            return
        try:
            await self.job_endpoint(service_name, f"Bearer {token}", event)
        except Exception as exc:  # MinIO logs the failed delivery
            log.info("webhook delivery to %s refused: %r", service_name, exc)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
