"""What the OSCAR page shows of clusters: health, version, capacity, services and recent jobs.

Per service also its visibility (and allowed users), mount, federation members (as the service
stores them; OSCAR 4.1 and later) and its metrics of the last 24 hours where the cluster reports
them (OSCAR 4.0 and later; older releases show "not reported").

Everything here is blocking (``OscarHook``'s sync face) and runs in the API server's thread pool.
Each cluster is asked with short timeouts and no retries, so one unreachable cluster costs a few
seconds, not minutes. Results are plain JSON-able dicts built from an allow-list of fields:
service tokens, scripts, environment secrets and connection credentials never get in, and error
texts are scrubbed of the connection's secrets before they are shown.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_oscar.hooks.api import ClusterSettings, JobInfo
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.system_models import Federation
from airflow_provider_oscar.hooks.system_steps import METRICS

T = TypeVar("T")

#: Seconds for each request of the page (a cluster's own ``timeout`` applies when shorter).
REQUEST_TIMEOUT = 5.0
#: Services listed per cluster and jobs shown per service (the newest).
MAX_SERVICES = 100
MAX_JOBS = 10
_CONN_PREFIX = "AIRFLOW_CONN_"


@dataclass(frozen=True)
class ConnectionRef:
    """An ``oscar`` connection as the page lists it (no credentials)."""

    conn_id: str
    source: str  # "database" or "environment"
    description: str = ""


class _PageHook(OscarHook):
    """An :class:`OscarHook` that answers quickly: short timeouts, no retries."""

    @cached_property
    def settings(self) -> ClusterSettings:
        settings = super().settings
        return replace(settings, retries=0, timeout=min(settings.timeout, REQUEST_TIMEOUT))


def oscar_connections() -> list[ConnectionRef]:
    """Every connection of type ``oscar``: the metadata DB's, then the API server's environment's.

    Connections from other secrets backends cannot be listed; they are not shown.
    """
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    refs: dict[str, ConnectionRef] = {}
    with create_session() as session:
        rows = session.execute(
            select(Connection.conn_id, Connection.description)
            .where(Connection.conn_type == OscarHook.conn_type)
            .order_by(Connection.conn_id)
        )
        for conn_id, description in rows:
            refs[conn_id] = ConnectionRef(conn_id, "database", description or "")
    for conn_id, description in _environment_connections(os.environ.items()):
        refs.setdefault(conn_id, ConnectionRef(conn_id, "environment", description))
    return list(refs.values())


def _environment_connections(items: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """``(conn_id, description)`` of the ``AIRFLOW_CONN_*`` variables of type ``oscar``."""
    for key, value in sorted(items):
        if not key.startswith(_CONN_PREFIX) or len(key) == len(_CONN_PREFIX):
            continue
        text = value.strip()
        description = ""
        try:
            if text.startswith("{"):
                document = json.loads(text)
                conn_type = str(document.get("conn_type") or "")
                description = str(document.get("description") or "")
            else:
                conn_type = urlsplit(text).scheme
        except (ValueError, AttributeError):
            continue
        if conn_type.replace("-", "_") == OscarHook.conn_type:
            yield key[len(_CONN_PREFIX) :].lower(), description


def public_url(url: str) -> str:
    """The URL without any ``user:password@`` part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))


def describe_error(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """A one-line, secret-free description of what went wrong."""
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__module__.startswith(("httpx", "httpcore", "ssl", "socket", "builtins")):
        text = f"{type(exc).__name__}: {text}"
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:500]


def collect_cluster(
    ref: ConnectionRef, *, with_services: bool = True, max_jobs: int = MAX_JOBS
) -> dict[str, Any]:
    """Ask one cluster what the page shows; every failure becomes a message, never an exception."""
    started = time.monotonic()
    view: dict[str, Any] = {
        "conn_id": ref.conn_id,
        "source": ref.source,
        "description": ref.description,
        "endpoint": None,
        "cluster_id": None,
        "auth": None,
        "healthy": None,
        "version": None,
        "info": {},
        "capacity": None,
        "status_error": None,
        "services": [],
        "services_error": None,
        "error": None,
    }
    hook = _PageHook(ref.conn_id)
    secrets: list[str | None] = []
    try:
        settings = hook.settings
        secrets = [settings.password, settings.oidc_token, settings.refresh_token]
        view["endpoint"] = public_url(settings.endpoint)
        view["cluster_id"] = settings.cluster_id or None
        view["auth"] = (
            "OIDC"
            if settings.oidc_token or settings.refresh_token
            else ("basic" if settings.user else "none")
        )
        view["healthy"] = bool(hook.call(lambda api: api.health()))
        info = hook.get_info()
    except Exception as exc:
        view["error"] = describe_error(exc, secrets)
        view["elapsed_ms"] = round((time.monotonic() - started) * 1000)
        return view
    view["version"] = info.get("version")
    view["info"] = _info(info)
    try:
        view["capacity"] = capacity(hook.get_status())
    except Exception as exc:  # older clusters, clusters without metrics-server
        view["status_error"] = describe_error(exc, secrets)
    if with_services:
        try:
            services = hook.list_services()[:MAX_SERVICES]
        except Exception as exc:
            view["services_error"] = describe_error(exc, secrets)
        else:
            note = _metrics_note(hook, secrets)
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="oscar-page") as pool:
                view["services"] = list(
                    pool.map(lambda s: _service(hook, s, secrets, max_jobs, note), services)
                )
    view["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    return view


def _info(info: dict[str, Any]) -> dict[str, Any]:
    backend = info.get("serverless_backend") or {}
    return {
        "version": info.get("version"),
        "kubernetes_version": info.get("kubernetes_version"),
        "architecture": info.get("architecture"),
        "serverless_backend": " ".join(
            str(v) for v in (backend.get("name"), backend.get("version")) if v
        )
        or None,
    }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN


def capacity(status: dict[str, Any]) -> dict[str, Any]:
    """The cluster's capacity from ``/system/status`` (v3.6+ shape; missing parts ``None``)."""
    cluster = status.get("cluster") or {}
    metrics = cluster.get("metrics") or {}
    cpu = metrics.get("cpu") or {}
    memory = metrics.get("memory") or {}
    nodes = cluster.get("nodes") or []
    oscar = status.get("oscar") or {}
    pods = oscar.get("pods") or {}
    minio = status.get("minio") or {}
    ready = sum(1 for node in nodes if _node_ready(node))
    return {
        "nodes": cluster.get("nodes_count", len(nodes)),
        "nodes_ready": ready if nodes else None,
        "cpu": _gauge(cpu.get("total_free_cores"), cpu.get("total_schedulable_cores")),
        "memory": _gauge(memory.get("total_free_bytes"), memory.get("total_schedulable_bytes")),
        "gpus": (metrics.get("gpu") or {}).get("total_gpu"),
        "oscar_ready": oscar.get("ready"),
        "jobs": oscar.get("jobs_count"),
        "pods": dict(pods.get("states") or {}),
        "buckets": minio.get("buckets_count"),
        "objects": minio.get("total_objects"),
    }


def _node_ready(node: dict[str, Any]) -> bool:
    if str(node.get("status", "")).lower() == "ready":
        return True
    conditions = node.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") is True for c in conditions)


def _gauge(free: Any, total: Any) -> dict[str, Any] | None:
    free_n, total_n = _number(free), _number(total)
    if free_n is None or not total_n:
        return None
    used = max(0.0, total_n - free_n)
    return {"free": free_n, "total": total_n, "used": used, "used_share": min(1.0, used / total_n)}


def _service(
    hook: OscarHook,
    service: Any,
    secrets: list[str | None],
    max_jobs: int,
    metrics_note: str | None = None,
) -> dict[str, Any]:
    name = service.name
    view = service_view(service, metrics_note)
    if metrics_note is None:
        metrics = _attempt(lambda: hook.get_service_metrics(name), secrets)
        if isinstance(metrics, str):
            view["metrics_note"] = f"unavailable: {metrics}"
        else:
            view["metrics"] = {k: _figure(v.value, v.unit) for k, v in metrics.metrics.items()}
    deployment = _attempt(lambda: hook.get_deployment(name), secrets)
    if isinstance(deployment, dict):
        view["state"] = deployment.get("state")
        view["state_reason"] = deployment.get("reason") or None
        view["active_instances"] = deployment.get("active_instances")
    else:
        view["deployment_error"] = deployment
    jobs = _attempt(lambda: hook.list_jobs(name), secrets)
    if isinstance(jobs, dict):
        view["jobs_total"] = len(jobs)
        view["job_counts"] = dict(Counter(job.status for job in jobs.values()))
        view["jobs"] = [_job(job) for job in newest(jobs.values())[:max_jobs]]
    else:
        view["jobs_error"] = jobs
    return view


def service_view(service: Any, metrics_note: str | None = None) -> dict[str, Any]:
    """What the page shows of a service before the cluster is asked about its state, jobs
    and metrics."""
    return {
        **_access(service),
        "name": service.name,
        "image": service.image,
        "cpu": service.cpu,
        "memory": service.memory,
        "gpu": bool(service.enable_gpu),
        "inputs": [_path(io) for io in service.input or []],
        "outputs": [_path(io) for io in service.output or []],
        "state": None,
        "state_reason": None,
        "active_instances": None,
        "deployment_error": None,
        "jobs": [],
        "jobs_total": 0,
        "job_counts": {},
        "jobs_error": None,
        "metrics": None,
        "metrics_note": metrics_note,
    }


def _metrics_note(hook: OscarHook, secrets: list[str | None]) -> str | None:
    """Why the page shows no metrics for the cluster's services (``None``: it reports them)."""
    release = _attempt(hook.release, secrets)
    if isinstance(release, str):
        return f"unavailable: {release}"
    if not release.since(*METRICS.since):
        return f"not reported (OSCAR {release.version} has no metrics)"
    return None


def _access(service: Any) -> dict[str, Any]:
    """Who may use the service and what it reaches beyond its buckets (no credentials)."""
    mount = service.mount
    federation = Federation.from_api(service.federation or {})
    return {
        "visibility": service.visibility or "private",
        "allowed_users": list(service.allowed_users or []),
        "isolation_level": service.isolation_level or None,
        "mount": _path(mount) if mount.path else None,
        "federation_topology": federation.topology if service.federation else None,
        "federation_members": [
            {
                "type": m.type,
                "cluster_id": m.cluster_id,
                "service_name": m.service_name,
                "url": public_url(m.url) if m.url else "",
                "priority": m.priority,
            }
            for m in federation.members
        ],
    }


def _figure(value: float, unit: str) -> str:
    shown = f"{value:.0f}" if value == int(value) else f"{value:.2f}"
    return f"{shown} {unit}".strip()


def _attempt(call: Callable[[], T], secrets: list[str | None]) -> T | str:
    try:
        return call()
    except Exception as exc:
        return describe_error(exc, secrets)


def _path(io: Any) -> str:
    return f"{io.storage_provider}:{io.path}" if io.storage_provider else str(io.path)


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def newest(jobs: Iterable[JobInfo]) -> list[JobInfo]:
    """Jobs, newest first (by creation time; jobs without one last)."""
    dated = [(_when(job.creation_time), job) for job in jobs]
    dated.sort(key=lambda pair: (pair[0] is not None, pair[0].timestamp() if pair[0] else 0.0))
    return [job for _, job in reversed(dated)]


def _job(job: JobInfo) -> dict[str, Any]:
    start, finish = _when(job.start_time), _when(job.finish_time)
    row = job.to_dict()
    row["duration_s"] = (finish - start).total_seconds() if start and finish else None
    return row


def job_logs(conn_id: str, service: str, job: str) -> str:
    """The job's log text (a message when it has none yet or the cluster refuses).

    The connection's own secrets are blanked out, as in the errors.
    """
    hook = _PageHook(conn_id)
    secrets: list[str | None] = []
    try:
        settings = hook.settings
        secrets = [settings.password, settings.oidc_token, settings.refresh_token]
        text = hook.get_job_logs(service, job)
    except Exception as exc:
        return f"(could not read the logs: {describe_error(exc, secrets)})"
    if text is None:
        return "(no logs yet: the job has no pod)"
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text or "(the job wrote no output)"
