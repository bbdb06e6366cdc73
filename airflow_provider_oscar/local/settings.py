"""How the embedded OSCAR behaves: the settings the CLI and ``OscarLocal`` fill in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Settings:
    """How the embedded OSCAR behaves; every field has a laptop-friendly default."""

    user: str = "oscar"
    password: str = ""
    oscar_version: str | None = None
    bearer_tokens: dict[str, str] = field(default_factory=dict)
    oidc_groups: dict[str, list[str]] = field(default_factory=dict)  # subject -> its groups
    cluster_groups: list[str] | None = None  # OIDC_GROUPS; None: the default VO and all named
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    access_token_lifetime: float = 300.0
    total_cpu: float = float(max(4, 2 * (os.cpu_count() or 2)))
    total_memory_bytes: int = 16 * 1024**3
    job_timeout: float | None = None  # real jobs have no deadline (job.go JobSpec)
    run_timeout: float = 300.0  # WRITE_TIMEOUT: a /run is cut after it
    deploy_delay: float = 0.0
    max_body_bytes: int = 64 * 1024 * 1024
    max_job_body_bytes: int = 3 * 1024 * 1024  # the Kubernetes API's request limit
    max_request_memory: int = 512 * 1024 * 1024  # request bodies held at once
    event_interval: float = 0.25
    serverless_backend: bool = True
    kueue_enable: bool | None = None  # None: the release's default
    volume_enable: bool | None = None
    kueue_admission_timeout: float = 30.0  # utils/kueue.go defaultKueueAdmissionTimeout
    resource_manager: bool = False  # RESOURCE_MANAGER_ENABLE: delegate what cannot run here
    users_admin: list[str] = field(default_factory=list)  # USERS_ADMIN
    faults_enabled: bool = True
