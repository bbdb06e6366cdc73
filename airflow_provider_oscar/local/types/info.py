"""pkg/types/info.go: what ``/system/info`` answers."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go


@dataclass
class ServerlessBackendInfo:
    name: str = go("name", "")
    version: str = go("version", "")


@dataclass
class Info:
    version: str = go("version", "")
    git_commit: str = go("git_commit", "")
    architecture: str = go("architecture", "")
    kubernetes_version: str = go("kubernetes_version", "")
    serverless_backend: ServerlessBackendInfo | None = go("serverless_backend", omitempty=True)
