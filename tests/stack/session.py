"""What the stack tests share: the stack's test settings and a handle on the running stack."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import httpx
from minio import Minio

from stack.client import AirflowClient
from stack.components import StackError, postgres_program
from stack.runner import Stack
from stack.settings import StackSettings
from tests.helpers import unavailable

HOW = "run `make test` as root to install postgresql and redis-server"

#: Short detection timeouts: a task whose worker died is failed after 30 s (default 300 s), one
#: queued to a worker that died before starting it is queued again after 60 s (default 600 s),
#: a triggerer that died hands its triggers over after 10 s (default 30 s).
TEST_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
}


@dataclass
class StackSession:
    """The running stack, a REST API client, and the clusters' admin side."""

    stack: Stack
    airflow: AirflowClient

    @property
    def settings(self) -> StackSettings:
        return self.stack.settings

    def oscar(self, conn_id: str = "oscar_default") -> httpx.Client:
        """An admin client of one embedded OSCAR."""
        return httpx.Client(
            base_url=self.settings.oscar_endpoint(conn_id),
            auth=("oscar", self.settings.secrets.oscar[conn_id]),
            timeout=30,
        )

    def counts(self, conn_id: str = "oscar_default") -> dict[str, Any]:
        """What the cluster ran so far: ``GET /local/counts``."""
        with self.oscar(conn_id) as oscar:
            response = oscar.get("/local/counts")
        response.raise_for_status()
        counts: dict[str, Any] = response.json()
        return counts

    def s3(self, conn_id: str = "oscar_default") -> Minio:
        """A MinIO client with the cluster's keys (from its ``/system/config``)."""
        with self.oscar(conn_id) as oscar:
            provider = oscar.get("/system/config").json()["minio_provider"]
        endpoint = str(provider["endpoint"])
        return Minio(
            endpoint.split("://", 1)[-1],
            access_key=provider["access_key"],
            secret_key=provider["secret_key"],
            secure=endpoint.startswith("https://"),
        )

    def log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The log of a task's last try."""
        (ti,) = [
            t
            for t in self.airflow.task_instances(dag_id, run_id)
            if t["task_id"] == task_id and t["map_index"] == map_index
        ]
        return self.airflow.log(dag_id, run_id, task_id, ti["try_number"], map_index)


def check_programs() -> None:
    try:
        postgres_program("postgres")
        postgres_program("initdb")
    except StackError as exc:
        unavailable("stack tests", str(exc), HOW)
    if shutil.which("redis-server") is None:
        unavailable("stack tests", "redis-server is missing (apt-get install redis-server)", HOW)
