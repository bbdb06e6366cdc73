"""The plain data the hook hands out: cluster settings, job rows, synchronous answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

JOB_STATUSES = ("Pending", "Running", "Succeeded", "Failed", "Suspended", "Unknown")


@dataclass(frozen=True)
class ClusterSettings:
    """Everything needed to talk to one OSCAR cluster, read from an Airflow connection."""

    endpoint: str
    user: str | None = None
    password: str | None = None
    oidc_token: str | None = None
    refresh_token: str | None = None
    token_endpoint: str = "https://aai.egi.eu/auth/realms/egi/protocol/openid-connect/token"
    client_id: str = "token-portal"
    scopes: str = "openid email profile voperson_id eduperson_entitlement"
    verify_ssl: bool = True
    timeout: float = 30.0
    run_timeout: float = 300.0
    retries: int = 5
    backoff: float = 0.5
    minio_endpoint: str | None = None
    cluster_id: str = ""

    @property
    def name(self) -> str:
        """How messages name this cluster."""
        return self.cluster_id or self.endpoint

    @property
    def key(self) -> tuple[str, str]:
        """(endpoint, fingerprint of the credentials): who sees the same cluster the same way.

        OSCAR shows OIDC users only their own jobs, so credentials are part of the key.
        """
        secret = "\0".join(
            str(v or "") for v in (self.user, self.password, self.oidc_token, self.refresh_token)
        )
        return self.endpoint.rstrip("/"), hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobInfo:
    """One row of ``GET /system/logs/{service}``."""

    name: str
    status: str
    creation_time: str | None = None
    start_time: str | None = None
    finish_time: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("Succeeded", "Failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "creation_time": self.creation_time,
            "start_time": self.start_time,
            "finish_time": self.finish_time,
        }


@dataclass(frozen=True)
class RunResponse:
    """The answer of a synchronous ``POST /run``: its status, body and content type."""

    status_code: int
    body: bytes
    content_type: str = ""
