"""Airflow's REST API (``/api/v2``) as the stack tests and the benchmark use it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

FINISHED = ("success", "failed")
_RECORD_KEYS = ("event", "timestamp", "level")


class AirflowApiError(RuntimeError):
    """A request failed, or something waited for did not happen in time."""


class AirflowClient:
    """A logged-in client of one Airflow API server."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.url = url
        response = httpx.post(
            f"{url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        self._check(response)
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        self.http = httpx.Client(base_url=f"{url}/api/v2", headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_error:
            raise AirflowApiError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self._check(self.http.get(path, params=params or None)).json()

    # DAGs and runs ------------------------------------------------------------------------

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Until the DAG processor has parsed every one of ``dag_ids``."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while missing:
            missing = [d for d in missing if self.http.get(f"/dags/{d}").status_code != 200]
            if missing and time.monotonic() > deadline:
                raise AirflowApiError(f"not parsed within {timeout:.0f} s: {missing}")
            if missing:
                time.sleep(1)

    def import_errors(self) -> dict[str, str]:
        body = self.get("/importErrors", limit=100)
        return {e["filename"]: e["stack_trace"] for e in body["import_errors"]}

    def unpause(self, dag_id: str) -> None:
        self._check(self.http.patch(f"/dags/{dag_id}", json={"is_paused": False}))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a run now; its run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        response = self._check(self.http.post(f"/dags/{dag_id}/dagRuns", json=body))
        return str(response.json()["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
        return result

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first."""
        return list(
            self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after", limit=100)["dag_runs"]
        )

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 300.0,
        *,
        poll: float = 1.0,
        on_poll: Callable[[], None] | None = None,
    ) -> str:
        """Until the run ends; its state. ``on_poll`` runs at every poll (e.g. to watch it)."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.run(dag_id, run_id)["state"])
            if state in FINISHED:
                return state
            if on_poll is not None:
                on_poll()
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s")
            time.sleep(poll)

    # task instances -----------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every task instance of the run (each mapped one on its own)."""
        found: list[dict[str, Any]] = []
        while True:
            body = self.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                limit=100,
                offset=len(found),
                **params,
            )
            found += body["task_instances"]
            if len(found) >= body["total_entries"] or not body["task_instances"]:
                return found

    def log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
    ) -> str:
        """A task try's log as text (one line per record)."""
        body = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            map_index=map_index,
            full_content=True,
        )
        lines = []
        for record in body.get("content") or []:
            if isinstance(record, dict):
                extra = {
                    k: v for k, v in record.items() if k not in ("event", "timestamp", "level")
                }
                suffix = f" {json.dumps(extra, default=str)}" if extra else ""
                lines.append(f"{record.get('level', '')} {record.get('event', '')}{suffix}")
            else:
                lines.append(str(record))
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task's ``return_value`` XCom, deserialised."""
        body = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            map_index=map_index,
            deserialize=True,
            stringify=False,
        )
        return body["value"]
