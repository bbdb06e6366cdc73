"""pkg/types/jobinfo.go: a row of the job list, and the wrapped list (v3.6.4)."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go


@dataclass
class JobInfo:
    """One job: its pod's phase (``Suspended`` without a pod) and metav1.Time stamps."""

    status: str = go("status", "")
    creation_time: str | None = go("creation_time", omitempty=True)
    start_time: str | None = go("start_time", omitempty=True)
    finish_time: str | None = go("finish_time", omitempty=True)


@dataclass
class JobsResponse:
    jobs: dict[str, JobInfo | None] | None = go("jobs")
    next_page: str = go("next_page", "", omitempty=True)
    remaining_jobs: int | None = go("remaining_jobs", omitempty=True, go_type="*int64")
