"""Secrets hygiene: no password or token in play ever shows up where users can read it.

Two example DAGs run with ``dag.test()`` on embedded OSCARs: ``oscar_service_lifecycle`` (every
operator and sensor, deferrable waits, bucket uploads) on cluster ``alpha`` with Basic
credentials, and ``oscar_plant_ensemble_two_clusters`` (deploy, run, ensemble; the operators of
``oscar_plant_ensemble``, on two specimens so it stays quick) over ``alpha`` and ``beta``, whose
connection authenticates with an OIDC refresh token. The secrets in play are every connection
password and refresh token (and the Basic header built from them), every OIDC access token the
token endpoint minted, every service token the clusters issued (``GET /system/services``) and
both MinIO secret keys (``/system/config``).

Where users can read things, and what is scanned:

* task logs: ``dag.test()`` writes no log files (``$AIRFLOW_HOME/logs`` stays empty; checked),
  so the task logs are captured where they are emitted: every structlog event and every stdlib
  log record of INFO and above (with their arguments), and whatever tasks print;
* every XCom of both runs (the stored value and its deserialised form);
* the rendered template fields Airflow stored for every task instance;
* the task instance records (trigger event payloads pass through ``next_kwargs``);
* the OSCAR dashboard's responses (its JSON API and HTML pages, including a job's logs).

Airflow's own masking cannot be relied on here: ``dag.test()`` prints task logs unredacted, so
the provider must simply never emit a secret.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import secrets
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from tests.helpers import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
SPECIMENS = ["specimen-010", "specimen-110"]
REFRESH_TOKEN = f"refresh-{secrets.token_hex(20)}"
SECOND_PASSWORD = f"beta-password-{secrets.token_hex(12)}"
OIDC_SUBJECT = "plant-lab"


@dataclass
class Evidence:
    """What users could read after the runs, by source, and the secrets that were in play."""

    secrets: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    service_tokens: set[str] = field(default_factory=set)

    def add(self, source: str, text: Any) -> None:
        self.sources.setdefault(source, []).append(
            text if isinstance(text, str) else json.dumps(text, default=str, sort_keys=True)
        )

    def text(self, source: str) -> str:
        return "\n".join(self.sources.get(source, []))


class _Records(logging.Handler):
    """Every stdlib log record, formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(repr(record.exc_info[1]))


def _rendered(entry: MutableMapping[str, Any]) -> str:
    """A structlog event as its log line would read: message, arguments and every field."""
    event = str(entry.get("event", ""))
    arguments = entry.get("positional_args")
    if arguments:
        with contextlib.suppress(TypeError, ValueError):
            event = event % tuple(arguments)
    extra = {k: v for k, v in entry.items() if k not in ("event", "positional_args")}
    return f"{event} {json.dumps(extra, default=repr)}" if extra else event


@contextlib.contextmanager
def task_logs(evidence: Evidence) -> Iterator[None]:
    """Capture the task logs of ``dag.test()``: structlog events, stdlib records, prints."""
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    old_level = root.level
    root.setLevel(logging.INFO)
    printed = io.StringIO()
    try:
        with (
            structlog.testing.capture_logs() as events,
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
        ):
            yield
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
        evidence.sources.setdefault("task logs", [])
        evidence.sources["task logs"] += [_rendered(e) for e in events] + records.lines
        evidence.add("task logs", printed.getvalue())


def record_tokens(server: OscarLocal, evidence: Evidence, patch: pytest.MonkeyPatch) -> None:
    """Remember the token of every service the server creates (deleted ones included)."""
    assert server.cluster is not None
    state = server.cluster.state
    create = state.create_service

    def create_service(body: object, caller: Any) -> Any:
        service = create(body, caller)
        evidence.service_tokens.add(service.token)
        return service

    patch.setattr(state, "create_service", create_service)


def _connection(server: OscarLocal, cluster_id: str, **changes: Any) -> str:
    conn = json.loads(server.connection_json())
    conn["extra"]["cluster_id"] = cluster_id
    conn["extra"].update(changes.pop("extra", {}))
    conn.update(changes)
    return json.dumps(conn)


def _run_records(evidence: Evidence, run: Any) -> None:
    """The run's XComs, rendered template fields and task instance records."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for row in session.scalars(
            select(XComModel).where(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        ):
            evidence.add("XCom", {"key": row.key, "task": row.task_id, "stored": row.value})
            evidence.add("XCom", XComModel.deserialize_value(row))
        for row in session.scalars(
            select(Rendered).where(Rendered.dag_id == run.dag_id, Rendered.run_id == run.run_id)
        ):
            evidence.add("rendered template fields", row.rendered_fields)
            evidence.add("rendered template fields", row.k8s_pod_yaml)
        for ti in session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
            )
        ):
            evidence.states[f"{run.dag_id}.{ti.task_id}[{ti.map_index}]"] = str(ti.state)
            evidence.add(
                "task instance records",
                {
                    "task": ti.task_id,
                    "state": ti.state,
                    "next_method": ti.next_method,
                    "next_kwargs": ti.next_kwargs,
                    "map_index": ti.rendered_map_index,
                    "note": getattr(ti, "note", None),
                },
            )


def _dashboard(evidence: Evidence, runs: list[Any], job: tuple[str, str, str]) -> None:
    """The OSCAR page's JSON API and HTML, as an authorised Airflow user sees them."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_provider_oscar.plugins import app as dashboard

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashboard, "can_read_connection", lambda user, conn_id: True)
        patch.setattr(dashboard, "can_read_results", lambda user, dag_id: True)
        application = dashboard.create_app()
        application.dependency_overrides[get_user] = lambda: object()
        client = TestClient(application, raise_server_exceptions=True)
        ensemble = runs[-1]
        conn_id, service, job_name = job
        for path in (
            "/api/clusters",
            "/api/results",
            f"/api/results/{ensemble.dag_id}/{ensemble.run_id}",
            f"/api/logs/{conn_id}/{service}/{job_name}",
            "/",
            "/results",
            f"/results/{ensemble.dag_id}/{ensemble.run_id}",
            f"/logs/{conn_id}/{service}/{job_name}",
        ):
            response = client.get(path, headers={"Accept": "text/html"})
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
            evidence.add("dashboard", f"GET {path}\n{response.text}")


def _secrets(evidence: Evidence, alpha: OscarLocal, beta: OscarLocal) -> None:
    for name, server in (("alpha", alpha), ("beta", beta)):
        with httpx.Client(base_url=server.endpoint, auth=(server.user, server.password)) as admin:
            config = admin.get("/system/config").json()
            evidence.secrets[f"{name} MinIO secret key"] = config["minio_provider"]["secret_key"]
            for item in admin.get("/system/services").json():
                evidence.service_tokens.add(item["token"])
    evidence.secrets["alpha password (oscar_default)"] = alpha.password
    basic = base64.b64encode(f"{alpha.user}:{alpha.password}".encode()).decode()
    evidence.secrets["alpha Basic header"] = basic
    evidence.secrets["beta password (oscar_second)"] = SECOND_PASSWORD
    evidence.secrets["beta refresh token (oscar_second extra)"] = REFRESH_TOKEN
    for number, token in enumerate(beta.settings.bearer_tokens):
        evidence.secrets[f"beta OIDC access token {number}"] = token
    for number, token in enumerate(sorted(evidence.service_tokens)):
        evidence.secrets[f"service token {number}"] = token


@pytest.fixture(scope="module")
def beta() -> Iterator[OscarLocal]:
    """Cluster ``beta``: OIDC only for the provider (a refresh token becomes access tokens)."""
    settings = Settings(password=SECOND_PASSWORD, refresh_tokens={REFRESH_TOKEN: OIDC_SUBJECT})
    with OscarLocal(settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def evidence(airflow_db: None, oscar: OscarLocal, beta: OscarLocal) -> Evidence:
    found = Evidence()
    logs_folder = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    files_before = set(logs_folder.rglob("*")) if logs_folder.exists() else set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", _connection(oscar, "alpha"))
        patch.setenv(
            "AIRFLOW_CONN_OSCAR_SECOND",
            _connection(
                beta,
                "beta",
                extra={
                    "refresh_token": REFRESH_TOKEN,
                    "token_endpoint": f"{beta.endpoint}/local/oidc/token",
                },
            ),
        )
        record_tokens(oscar, found, patch)
        record_tokens(beta, found, patch)
        dagbag = DagBag(str(EXAMPLES))
        runs = []
        with task_logs(found):
            runs.append(dagbag.get_dag("oscar_service_lifecycle").test())
            runs.append(
                dagbag.get_dag("oscar_plant_ensemble_two_clusters").test(
                    run_conf={
                        "specimens": SPECIMENS,
                        "connections": ["oscar_default", "oscar_second"],
                    }
                )
            )
        for run in runs:
            found.states[run.dag_id] = str(run.state)
            _run_records(found, run)
        job = f"plants-sepal-{uuid.uuid4()}"
        second = OscarHook("oscar_second")
        second.submit_job("plants-sepal", {"sepal_length_cm": 5.0}, job_name=job)
        wait_until(lambda: getattr(second.list_jobs("plants-sepal").get(job), "finished", False))
        _dashboard(found, runs, ("oscar_second", "plants-sepal", job))
        _secrets(found, oscar, beta)
    new_files = (set(logs_folder.rglob("*")) if logs_folder.exists() else set()) - files_before
    for path in sorted(p for p in new_files if p.is_file()):
        found.add("log files", path.read_text(errors="replace"))
    found.states["log files written"] = str(len(new_files))
    return found


# what must hold --------------------------------------------------------------------------

# Each source, and a text it must contain: proof that the scan reads the runs' own material.
SOURCES = {
    "task logs": "deleted OSCAR service cowsay",
    "XCom": "soft_vote",
    "rendered template fields": "Hello from Airflow, run",
    "task instance records": "output_ready",
    "dashboard": "plants-sepal",
}


def test_both_runs_succeeded_and_every_kind_of_secret_was_in_play(evidence: Evidence) -> None:
    assert evidence.states["oscar_service_lifecycle"] == "success", evidence.states
    assert evidence.states["oscar_plant_ensemble_two_clusters"] == "success", evidence.states
    names = " ".join(evidence.secrets)
    for kind in ("password", "refresh token", "OIDC access token", "service token", "MinIO"):
        assert kind in names, f"no {kind} in play"
    assert len(evidence.service_tokens) >= 2 + 3 * 2  # cowsay, sleep; three models per cluster
    assert all(len(value) >= 16 for value in evidence.secrets.values())


def test_dag_test_writes_no_log_files_so_the_emitted_task_logs_are_scanned(
    evidence: Evidence,
) -> None:
    assert evidence.states["log files written"] == "0"
    assert len(evidence.text("task logs")) > 10_000


@pytest.mark.parametrize("source", list(SOURCES))
def test_no_password_or_token_appears_in(evidence: Evidence, source: str) -> None:
    text = evidence.text(source)
    assert SOURCES[source] in text, f"the {source} scanned are not the runs' own"
    leaked = sorted(name for name, value in evidence.secrets.items() if value in text)
    assert leaked == [], f"{source} show: {', '.join(leaked)}"
