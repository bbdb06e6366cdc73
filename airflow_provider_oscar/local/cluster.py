"""The embedded cluster: state, storage, runtime and fault plan wired into OSCAR's operations.

Every method runs on the server's event loop. Asynchronous jobs wait ``Pending`` while the job
slots are full: a job takes its service's ``cpu`` from ``total_cpu`` while it runs, as pods take
node capacity. Synchronous runs are bounded by ``synchronous.max_scale`` when it is set (Knative
runs one request per pod), not by job slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.local.counts import ExecutionCounts
from airflow_provider_oscar.local.faults import FaultPlan
from airflow_provider_oscar.local.runtime import Invocation, Outcome, Runtime
from airflow_provider_oscar.local.state import (
    Caller,
    ClusterState,
    Job,
    JobStatus,
    service_buckets,
    utc_now,
)
from airflow_provider_oscar.local.storage import BucketWatcher, ObjectStore

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """How the embedded OSCAR behaves; every field has a laptop-friendly default."""

    user: str = "oscar"
    password: str = ""
    bearer_tokens: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    access_token_lifetime: float = 300.0
    total_cpu: float = float(max(4, 2 * (os.cpu_count() or 2)))
    total_memory_bytes: int = 16 * 1024**3
    job_timeout: float = 600.0
    run_timeout: float = 300.0
    deploy_delay: float = 0.0
    max_body_bytes: int = 64 * 1024 * 1024
    max_job_body_bytes: int = 1024 * 1024
    event_interval: float = 0.25


class LocalCluster:
    """OSCAR's operations over the embedded state, store and runtime."""

    def __init__(self, settings: Settings, store: ObjectStore, work_root: Path) -> None:
        self.settings = settings
        self.store = store
        self.faults = FaultPlan()
        self.counts = ExecutionCounts()
        self.state = ClusterState(minio_provider=store.settings.minio_provider())
        self.runtime = Runtime(store, work_root)
        self.watcher = BucketWatcher(store, self._on_object, settings.event_interval)
        self._queue: deque[Job] = deque()
        self._used_cpu = 0.0
        self._used_memory = 0
        self._running_jobs: dict[str, asyncio.Task[None]] = {}
        self._sync_gates: dict[str, asyncio.Semaphore] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()  # jobs a FailingJobs fault caught when submitted
        self.sync_running = 0

    async def start(self) -> None:
        self._spawn(self.watcher.run())

    async def stop(self) -> None:
        tasks = list(self._background) + list(self._running_jobs.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # services -----------------------------------------------------------------------------

    async def create_service(self, body: object, caller: Caller) -> Service:
        service = self.state.create_service(body, caller)
        await asyncio.to_thread(self._provision, service)
        return service

    async def update_service(self, body: object, caller: Caller) -> Service:
        service = self.state.update_service(body, caller)
        self._sync_gates.pop(service.name, None)
        await asyncio.to_thread(self._provision, service)
        return service

    async def delete_service(self, name: str, caller: Caller) -> None:
        service, buckets = self.state.delete_service(name, caller)
        self.watcher.forget(service.name)
        for job_name, task in list(self._running_jobs.items()):
            if job_name.startswith(f"{name}:"):
                task.cancel()
        for bucket in buckets:
            await asyncio.to_thread(self.store.remove_bucket, bucket)

    def deployment(self, name: str, caller: Caller) -> dict[str, object]:
        service = self.state.get_service(name, caller)
        created = self.state.created_at(name, caller)
        age = (utc_now() - created).total_seconds()
        ready = age >= self.settings.deploy_delay
        return {
            "service_name": service.name,
            "namespace": service.namespace,
            "state": "ready" if ready else "pending",
            "reason": "" if ready else "ContainerCreating",
            "last_transition_time": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "active_instances": 1 if ready else 0,
            "affected_instances": 0 if ready else 1,
            "resource_kind": "knative_service",
        }

    def _provision(self, service: Service) -> None:
        for bucket in service_buckets(service):
            self.store.make_bucket(bucket)
        inputs = [
            (io.bucket, io.folder)
            for io in service.input or []
            if io.provider_type == "minio" and io.provider_id == "default"
        ]
        for bucket, folder in inputs:
            self.store.make_folder(bucket, folder)
        self.watcher.watch(service.name, inputs)

    # executions ---------------------------------------------------------------------------

    async def run_sync(self, service: Service, event: bytes) -> Outcome:
        """Execute a ``/run`` request and return what the watchdog would answer."""
        gate = self._sync_gate(service)
        async with gate:
            self.counts.count_run(service.name, event)
            self.sync_running += 1
            self._take(service, +1)
            try:
                call = Invocation(
                    service,
                    self.state.secrets_of(service.name),
                    event,
                    job_name=None,
                    timeout=self.settings.run_timeout,
                )
                return await self.runtime.execute(call)
            finally:
                self.sync_running -= 1
                self._take(service, -1)
                self._dispatch()  # jobs may have waited for the CPU this run held

    def submit(self, service: str, event: bytes, owner: str | None, name: str | None) -> Job:
        """Create a job for ``service``; it runs as soon as a job slot is free."""
        job = self.state.add_job(service, event, owner, name)
        self.counts.count_job(service, event)
        stuck = self.faults.stuck_status(service)
        if stuck:
            self.state.update_job(job, status=JobStatus(stuck))
            return job
        if self.faults.fails(service):
            self._failing.add(f"{service}:{job.name}")
        self._queue.append(job)
        self._dispatch()
        return job

    def cancel(self, job: Job) -> None:
        task = self._running_jobs.get(f"{job.service}:{job.name}")
        if task:
            task.cancel()
        if job in self._queue:
            self._queue.remove(job)
            self._failing.discard(f"{job.service}:{job.name}")

    @property
    def used_cpu(self) -> float:
        return max(0.0, self._used_cpu)

    @property
    def used_memory(self) -> int:
        return max(0, self._used_memory)

    def _take(self, service: Service, sign: int) -> None:
        self._used_cpu += sign * service.cpu_cores
        self._used_memory += sign * service.memory_bytes

    def _sync_gate(self, service: Service) -> asyncio.Semaphore:
        gate = self._sync_gates.get(service.name)
        if gate is None:
            limit = service.synchronous.max_scale or 1_000_000
            gate = self._sync_gates[service.name] = asyncio.Semaphore(limit)
        return gate

    def _dispatch(self) -> None:
        while self._queue:
            job = self._queue[0]
            try:
                service = self.state.service_by_name(job.service)
            except KeyError:
                self._queue.popleft()
                continue
            busy = self._used_cpu > 0
            over_cpu = self._used_cpu + service.cpu_cores > self.settings.total_cpu + 1e-9
            over_memory = (
                self._used_memory + service.memory_bytes > self.settings.total_memory_bytes
            )
            if busy and (over_cpu or over_memory):
                return
            self._queue.popleft()
            self._take(service, +1)
            key = f"{job.service}:{job.name}"
            task = asyncio.get_running_loop().create_task(self._run_job(job, service))
            self._running_jobs[key] = task

    async def _run_job(self, job: Job, service: Service) -> None:
        key = f"{job.service}:{job.name}"
        self.state.update_job(job, status=JobStatus.RUNNING, started=utc_now(), has_pod=True)
        try:
            call = Invocation(
                service,
                self.state.secrets_of(service.name),
                job.event,
                job_name=job.name,
                timeout=self.settings.job_timeout,
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
            self._take(service, -1)
            self._running_jobs.pop(key, None)
            self._failing.discard(key)
            self._dispatch()

    async def _on_object(self, service: str, event: bytes) -> None:
        try:
            self.submit(service, event, owner=None, name=None)
        except Exception:
            log.exception("could not start a job of %s for a bucket event", service)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
