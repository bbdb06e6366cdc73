"""Who submitted a job: the task instance, never its try.

A job's identity is the DAG, run, task and map index (and, in a batch, the input's position),
so a retry, or a task whose worker died, derives the same identity and re-attaches to the job
its earlier try submitted instead of running the input again
(:mod:`~airflow_provider_oscar.hooks.correlation` maps identities to jobs).

On Airflow 3.3 and later the task SDK's ``task_state_store`` (scoped to the task instance,
kept across tries) also remembers the job a task submitted, so a retry re-attaches without
asking the cluster's MinIO; below 3.3 the identity alone finds it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["TaskIdentity", "remember_job", "remembered_job"]

_NAMESPACE = uuid.UUID("6f1c0f5e-3b7a-4d61-9a59-0c5f1d3f0a11")
STATE_KEY = "oscar_job"


@dataclass(frozen=True)
class TaskIdentity:
    """The task instance a job belongs to (the try is left out on purpose)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int

    @classmethod
    def of(cls, context: Any) -> TaskIdentity:
        ti = context["ti"]
        index = ti.map_index if ti.map_index is not None else -1
        return cls(str(ti.dag_id), str(ti.run_id), str(ti.task_id), int(index))

    def identity(self, *more: object) -> str:
        """``dag|run|task|map index[|more]``: what names the job of this task (and input)."""
        parts = (self.dag_id, self.run_id, self.task_id, self.map_index, *more)
        return "|".join(map(str, parts))

    def token(self, *more: object) -> str:
        """A UUID derived from :meth:`identity` (object keys use it)."""
        return str(uuid.uuid5(_NAMESPACE, self.identity(*more)))


def remembered_job(context: Any, cluster: str, service: str) -> dict[str, Any] | None:
    """What an earlier try stored of its job (Airflow 3.3+), when it was on this service."""
    store = context.get("task_state_store")
    if store is None:
        return None
    try:
        found = store.get(STATE_KEY)
    except Exception:  # a store that cannot be read leaves the identity to find the job
        return None
    if isinstance(found, dict) and (found.get("cluster"), found.get("service")) == (
        cluster,
        service,
    ):
        return found
    return None


def remember_job(context: Any, **job: Any) -> None:
    """Keep the submitted job in the task state store (Airflow 3.3+; elsewhere nothing)."""
    store = context.get("task_state_store")
    if store is not None:
        try:
            store.set(STATE_KEY, job)
        except Exception:  # the identity still finds the job; the store is a shortcut
            return
