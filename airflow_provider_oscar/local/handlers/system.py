"""health.go, info.go, config.go, status.go: what the cluster says about itself."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar import __version__
from airflow_provider_oscar.local.handlers.common import Context, text
from airflow_provider_oscar.local.state import Caller, JobStatus, rfc3339
from airflow_provider_oscar.local.types.config import ConfigForUser
from airflow_provider_oscar.local.types.info import Info, ServerlessBackendInfo
from airflow_provider_oscar.local.types.status import (
    POD_PHASES,
    NodeConditionSimple,
    NodeDetail,
    NodeResource,
    OIDCInfo,
    OscarDeployment,
    PodStates,
    StatusInfo,
)

NODE = "oscar-local"


def register(app: FastAPI, ctx: Context) -> None:
    @app.get("/health")
    async def health() -> Response:
        return text("Ok", 200)

    @app.get("/system/info")
    async def info(request: Request) -> Response:
        ctx.system_caller(request)
        backend = None
        if ctx.config.serverless_backend:  # KnativeBackend.GetInfo; KubeBackend has none
            backend = ServerlessBackendInfo("Knative", "v1.18.0-oscar-local")
        return ctx.json(
            Info(
                ctx.profile.version,
                f"oscar-local-{__version__}",
                "amd64",
                "v1.33.0-oscar-local",
                backend,
            )
        )

    @app.get("/system/config")
    async def config(request: Request) -> Response:
        """config.go MakeConfigHandler (an OIDC caller would get its own MinIO user's keys;
        the embedded store has one key pair)."""
        ctx.system_caller(request)
        return ctx.json(ConfigForUser(ctx.config, ctx.state.minio, []))

    @app.get("/system/status")
    async def status(request: Request) -> Response:
        caller = ctx.system_caller(request)
        return ctx.json(await asyncio.to_thread(_status, ctx, caller))


def _status(ctx: Context, caller: Caller) -> StatusInfo:
    """status.go MakeStatusHandler for one node; job, pod and MinIO counts for admins only."""
    cluster, config = ctx.cluster, ctx.config
    capacity, used = cluster.total_millicores, cluster.used_millicores
    memory, used_memory = ctx.settings.total_memory_bytes, cluster.used_memory
    info = StatusInfo()
    info.cluster.nodes_count = 1
    cpu, mem = info.cluster.metrics.cpu, info.cluster.metrics.memory
    cpu.total_free_cores = cpu.max_free_on_node_cores = capacity - used
    cpu.total_schedulable_cores = cpu.max_schedulable_on_node_cores = capacity - used
    mem.total_free_bytes = mem.max_free_on_node_bytes = memory - used_memory
    mem.total_schedulable_bytes = mem.max_schedulable_on_node_bytes = memory - used_memory
    info.cluster.nodes = [
        NodeDetail(
            NODE,
            NodeResource(capacity_cores=capacity, usage_cores=used, request_cores=used),
            NodeResource(capacity_bytes=memory, usage_bytes=used_memory, request_bytes=used_memory),
            status="Ready",
            conditions=[NodeConditionSimple("Ready", True)],
        )
    ]
    oscar = info.oscar
    oscar.deployment_name, oscar.ready = config.name, True
    oscar.deployment = OscarDeployment(
        1, 1, 1, rfc3339(cluster.started), "RollingUpdate", {"app": config.name}
    )
    oscar.oidc = OIDCInfo(config.oidc_enable, config.oidc_issuers, config.oidc_groups)
    if caller.admin or caller.subject in config.users_admin:
        jobs = list(cluster.state.all_jobs())
        phases = dict.fromkeys(POD_PHASES, 0)
        for job in jobs:
            if job.has_pod and job.status.value in phases:
                phases[job.status.value] += 1
        phases["Running"] += sum(cluster.sync_running.values())
        oscar.jobs_count = sum(1 for j in jobs if j.status is not JobStatus.SUSPENDED)
        oscar.pods = PodStates(sum(phases.values()), phases)
        buckets = cluster.store.bucket_names()
        info.minio.buckets_count = len(buckets)
        info.minio.total_objects = sum(
            1 for b in buckets for o in cluster.store.list(b) if o.size > 0
        )
    return info
