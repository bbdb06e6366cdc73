"""The fault matrix: what a DAG author sees when the cluster misbehaves.

One table (:data:`MATRIX`), one row per scenario: the fault injected into the embedded OSCAR,
the operator that meets it over real HTTP, and the outcome a user sees in Airflow:

* :class:`Succeeds`: the task succeeds, with the result the row describes;
* :class:`FailsFast`: ``AirflowFailException``, the task fails at once (its ``retries`` do not
  apply), with a message containing the row's words;
* :class:`FailsForRetry`: ``AirflowException`` but not ``AirflowFailException``, so the task's
  ``retries`` apply, with a message containing the row's words.

A row may also name text the task log must show, and a ``then`` check of what the cluster saw
(how many requests reached it, whether a job was deleted, how long the task took).

Operators that wait for a job run in each way a task can wait: ``"waiting"`` (holding the
worker) and ``"deferrable"`` (the trigger rebuilt from its JSON-serialised kwargs and run as the
triggerer runs it, then the task resumed as a fresh operator instance with the event's payload).
Synchronous calls run once (``"run"``). The connection retries quickly (``backoff`` 0.05 s), so
the whole matrix runs in seconds; the policy is the one users get.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import BaseOperator, Context
from airflow.sdk.module_loading import import_string
from airflow.triggers.base import BaseTrigger

from airflow_provider_oscar.compat import AirflowException, AirflowFailException, TaskDeferred
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.cluster import LocalCluster
from airflow_provider_oscar.local.faults import (
    Drop,
    ErrorBurst,
    FailingJobs,
    Latency,
    RotateToken,
    StuckJobs,
)
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.state import JobStatus, utc_now
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
from airflow_provider_oscar.operators.invoke import (
    OscarRunServiceOperator,
    OscarSubmitJobOperator,
)
from tests.helpers import first_event, wait_until

Mode = Literal["run", "waiting", "deferrable"]
WAITS: tuple[Mode, ...] = ("waiting", "deferrable")
PLANTS = Path(__file__).resolve().parents[2] / "example_dags" / "services" / "plants"
CLASSIFIER = (PLANTS / "scripts" / "plants-petal-length.sh").read_text()  # prints strict JSON
SETOSA = PLANTS / "specimens" / "specimen-005.json"
SPECIMENS = ["specimen-005", "specimen-055", "specimen-105"]
ANSWER = (
    '{"status": "OK", "labels": ["Iris setosa", "Iris versicolor"], "probabilities": [0.9, 0.1]}'
)
# Holds its job Running until the test creates the file $GATE, then answers.
GATED = f"while [ ! -e \"$GATE\" ]; do sleep 0.02; done\necho '{ANSWER}'\n"
RETRIES = 3
POLL = 0.1


# what the user sees ------------------------------------------------------------------------


@dataclass(frozen=True)
class Succeeds:
    """The task succeeds; ``check`` holds for its result (``what`` says what it checks)."""

    what: str
    check: Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class FailsFast:
    """``AirflowFailException`` whose message contains every one of ``words``."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class FailsForRetry:
    """``AirflowException`` (not ``AirflowFailException``) containing every one of ``words``."""

    words: tuple[str, ...]


Outcome = Succeeds | FailsFast | FailsForRetry


def succeeds_with(label: str) -> Succeeds:
    return Succeeds(
        f"prediction {label!r}", lambda result: result["prediction"]["labels"][0] == label
    )


def fails_fast(*words: str) -> FailsFast:
    return FailsFast(words)


def fails_for_retry(*words: str) -> FailsForRetry:
    return FailsForRetry(words)


# the world a scenario plays in -------------------------------------------------------------


@dataclass
class World:
    """The embedded OSCAR, the scenario's service and the task that meets the fault."""

    oscar: OscarLocal
    admin: httpx.Client
    monkeypatch: pytest.MonkeyPatch
    mode: Mode
    service: str
    gate: Path
    context: Context
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    before: Counter[str] = field(default_factory=Counter)

    def connect(self, conn_id: str = "oscar_default", **changes: Any) -> str:
        """Point ``conn_id`` at the embedded OSCAR, with quick retries; ``changes`` override
        ``host``, ``password`` or extras. Returns the connection's endpoint."""
        conn = json.loads(self.oscar.connection_json())
        for key in ("host", "password"):
            if key in changes:
                conn[key] = changes.pop(key)
        conn["extra"].update({"retries": RETRIES, "backoff": 0.05, **changes})
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return str(conn["host"])

    @property
    def cluster(self) -> LocalCluster:
        assert self.oscar.cluster is not None, "the embedded OSCAR is not running"
        return self.oscar.cluster

    def requests(self, route: str) -> int:
        """How many ``"METHOD /path"`` requests reached the server since the action started
        (``{service}`` in ``route`` stands for the scenario's service)."""
        route = route.replace("{service}", self.service)
        return request_counts(self.cluster)[route] - self.before[route]

    def log_reads(self) -> int:
        """Requests for the logs of the service's jobs since the action started."""
        prefix = f"GET /system/logs/{self.service}/"
        counts = request_counts(self.cluster)
        return sum(n - self.before[r] for r, n in counts.items() if r.startswith(prefix))

    def jobs(self) -> dict[str, Any]:
        response = self.admin.get(f"/system/logs/{self.service}")
        return dict(response.json()["jobs"]) if response.status_code == 200 else {}

    def running_job(self) -> str:
        """The name of the service's job once it runs (its script waits at the gate)."""
        return str(
            wait_until(
                lambda: next((n for n, j in self.jobs().items() if j["status"] == "Running"), None)
            )
        )

    async def execute(
        self,
        make: Callable[[], BaseOperator],
        meanwhile: Callable[[World], Awaitable[None]] | None = None,
    ) -> Any:
        """Run a task to its end as this world's mode runs it; ``meanwhile`` acts during the
        wait (after the deferral, or while a waiting task holds its worker)."""
        if self.mode != "deferrable":
            if meanwhile is None:
                return make().execute(self.context)
            # the task holds its worker (a thread) while ``meanwhile`` acts on the cluster
            task = asyncio.get_running_loop().run_in_executor(None, make().execute, self.context)
            try:
                await meanwhile(self)
            finally:
                self.gate.touch()
            return await task
        step: Callable[[], Any] = partial(make().execute, self.context)
        while True:
            try:
                return step()
            except TaskDeferred as deferred:
                if meanwhile is not None:
                    await meanwhile(self)
                    meanwhile = None
                event = await event_payload(rebuilt(deferred.trigger))
                resume = getattr(make(), deferred.method_name)
                step = partial(resume, self.context, event=event, **(deferred.kwargs or {}))


def rebuilt(trigger: BaseTrigger) -> BaseTrigger:
    """The trigger as the triggerer builds it: from its classpath and JSON-stored kwargs."""
    classpath, kwargs = trigger.serialize()
    return cast(BaseTrigger, import_string(classpath)(**json.loads(json.dumps(kwargs))))


async def event_payload(trigger: BaseTrigger) -> dict[str, Any]:
    """The payload of the trigger's first event as the metadata DB hands it back to the task
    (JSON), after the trigger's ``cleanup()`` ran as the triggerer runs it."""
    try:
        event = await first_event(trigger)
    finally:
        await trigger.cleanup()
    return cast(dict[str, Any], json.loads(json.dumps(event.payload)))


def task_context(service: str) -> Context:
    ti = SimpleNamespace(
        dag_id="fault_matrix",
        run_id=f"manual__{service}",
        task_id="classify",
        map_index=-1,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# actions -----------------------------------------------------------------------------------

Act = Callable[[World], Awaitable[Any]]


def run(**kwargs: Any) -> Act:
    """``OscarRunServiceOperator`` classifying the setosa specimen (or ``kwargs``' input);
    the rows expect a prediction unless they say otherwise."""
    arguments: dict[str, Any] = {"input_path": str(SETOSA), "decode": "prediction", **kwargs}
    if "input_data" in kwargs:
        del arguments["input_path"]

    async def act(w: World) -> Any:
        return OscarRunServiceOperator(
            task_id="classify", service_name=w.service, **arguments
        ).execute(w.context)

    return act


def submit(meanwhile: Callable[[World], Awaitable[None]] | None = None, **kwargs: Any) -> Act:
    """``OscarSubmitJobOperator`` with the setosa specimen, waiting or deferred per mode; the
    rows expect a prediction unless they say otherwise."""
    arguments: dict[str, Any] = {
        "input_path": str(SETOSA),
        "decode": "prediction",
        "poll_interval": POLL,
        "timeout": 20.0,
        **kwargs,
    }
    if "input_data" in kwargs:
        del arguments["input_path"]

    async def act(w: World) -> Any:
        def make() -> OscarSubmitJobOperator:
            return OscarSubmitJobOperator(
                task_id="classify",
                service_name=w.service,
                deferrable=w.mode == "deferrable",
                **arguments,
            )

        return await w.execute(make, meanwhile)

    return act


async def _delete_the_service(w: World) -> None:
    w.running_job()
    assert w.admin.delete(f"/system/services/{w.service}").status_code == 204


async def _drop_listings_then_open(w: World) -> None:
    w.running_job()
    w.oscar.faults.add(Drop(route=f"/system/logs/{w.service}", count=2))
    w.gate.touch()


async def _busy_listings_then_open(w: World) -> None:
    w.running_job()
    w.oscar.faults.add(ErrorBurst(route=f"/system/logs/{w.service}", status=503, count=2))
    w.oscar.faults.add(ErrorBurst(route=f"/system/logs/{w.service}", status=504, count=1))
    w.gate.touch()


async def _lose_the_cluster(w: World) -> None:
    """From now on the connection leads nowhere (the triggerer reads it when it starts)."""
    w.running_job()
    w.connect(host=f"http://127.0.0.1:{closed_port()}", retries=1)


async def _restart_the_triggerer(w: World) -> Any:
    """Defer; run the trigger until it has polled; cancel it as a triggerer shutting down
    does (``cleanup`` runs); rebuild it from ``serialize()`` and run it to its event."""
    make = partial(
        OscarSubmitJobOperator,
        task_id="classify",
        service_name=w.service,
        input_path=str(SETOSA),
        poll_interval=POLL,
        timeout=20.0,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        make().execute(w.context)
    job = w.running_job()
    first = rebuilt(deferred.value.trigger)
    listings = w.requests("GET /system/logs/{service}")
    events = first.run()
    waiting = asyncio.ensure_future(events.__anext__())
    while w.requests("GET /system/logs/{service}") < listings + 2 and not waiting.done():
        await asyncio.sleep(0.01)
    assert not waiting.done(), "the job ended before the triggerer could be restarted"
    waiting.cancel()  # the triggerer shuts down: its trigger tasks are cancelled ...
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await events.aclose()  # type: ignore[attr-defined]
    await first.cleanup()  # ... and cleanup() runs, which must leave the remote job alone
    w.notes["after cleanup"] = w.jobs().get(job, {}).get("status")
    second = rebuilt(deferred.value.trigger)  # a new triggerer picks the trigger up
    w.notes["same kwargs"] = second.serialize() == first.serialize()
    w.gate.touch()
    event = await event_payload(second)
    return make().execute_complete(w.context, event=event)


async def _classify_on_dead_then_live(w: World) -> Any:
    dead = w.connect("oscar_dead", host=f"http://127.0.0.1:{w.notes['dead port']}")
    w.notes["dead"] = dead
    specimens = [json.loads((PLANTS / "specimens" / f"{s}.json").read_text()) for s in SPECIMENS]
    return OscarBatchInvokeOperator(
        task_id="classify",
        service_name=w.service,
        inputs=specimens,
        input_ids=SPECIMENS,
        oscar_conn_ids=["oscar_dead", "oscar_default"],
        routing="failover",
        concurrency=2,
        progress_interval=0,
    ).execute(w.context)


# faults ------------------------------------------------------------------------------------

Inject = Callable[[World], None]


def nothing(w: World) -> None:
    """No fault: the scenario's service itself misbehaves."""


def faults(*make: Callable[[str], Any]) -> Inject:
    """Add faults built from the service name to the embedded OSCAR's fault plan."""

    def inject(w: World) -> None:
        for build in make:
            w.oscar.faults.add(build(w.service))

    return inject


def rotate_cached_token(w: World) -> None:
    """The provider holds the service's token; the cluster then gives the service a new one."""
    OscarHook().get_service_token(w.service)
    response = w.admin.post("/local/faults", json=RotateToken(service=w.service).model_dump())
    assert response.status_code == 201


def unreachable(w: World) -> None:
    w.connect(host=f"http://127.0.0.1:{closed_port()}", retries=2)


def a_second_cluster_unreachable(w: World) -> None:
    """``oscar_dead`` (listed first) points where nothing listens; ``oscar_default`` works."""
    w.notes["dead port"] = closed_port()


def slow_service_lookup(w: World) -> None:
    w.connect(timeout=0.5)
    w.oscar.faults.add(Latency(route=f"/system/services/{w.service}", seconds=1.5))


def failed_before_its_pod(w: World) -> None:
    """The Job fails before any pod exists (e.g. unschedulable past its deadline), so OSCAR
    answers 500 with an empty body for its logs, as a job with no pod gets."""
    w.oscar.faults.add(StuckJobs(service=w.service, count=-1))
    cluster = w.cluster
    original = cluster.submit

    def submit_then_fail(*args: Any, **kwargs: Any) -> Any:
        job = original(*args, **kwargs)
        cluster.state.update_job(job, status=JobStatus.FAILED, finished=utc_now())
        return job

    w.monkeypatch.setattr(cluster, "submit", submit_then_fail)


def settings(**values: Any) -> Inject:
    """Change the embedded OSCAR's settings (limits) for the scenario."""

    def inject(w: World) -> None:
        for name, value in values.items():
            w.monkeypatch.setattr(w.oscar.settings, name, value)

    return inject


def wrong_password(w: World) -> None:
    w.connect(password="not-the-password")


# the matrix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One row: a fault, the action that meets it, and what the user sees."""

    id: str
    fault: str
    inject: Inject
    act: Act
    outcome: Outcome
    modes: tuple[Mode, ...] = ("run",)
    script: str = CLASSIFIER
    buckets: bool = False
    logs: tuple[str, ...] = ()
    then: Callable[[World], Any] | None = None


def _jobs_gone(w: World) -> bool:
    return w.jobs() == {}


def _one_job(w: World) -> bool:
    return len(w.jobs()) == 1


MATRIX: list[Scenario] = [
    # transient trouble the hook rides out -----------------------------------------------
    Scenario(
        "cold-start-502-503-on-run",
        "Knative answers 502 then 503 while the service scales from zero",
        faults(
            lambda s: ErrorBurst(route=f"/run/{s}", status=502),
            lambda s: ErrorBurst(route=f"/run/{s}", status=503),
        ),
        run(),
        succeeds_with("Iris setosa"),
        then=lambda w: w.requests("POST /run/{service}") == 3,
    ),
    Scenario(
        "cold-start-503-on-job-submission",
        "/job answers 503 twice while the service is cold",
        faults(lambda s: ErrorBurst(route=f"/job/{s}", status=503, count=2)),
        submit(),
        succeeds_with("Iris setosa"),
        modes=WAITS,
        then=_one_job,
    ),
    Scenario(
        "job-listing-503-504-while-waiting",
        "the job list answers 503, 503, 504 while the task waits for the job",
        nothing,
        submit(meanwhile=_busy_listings_then_open),
        succeeds_with("Iris setosa"),
        modes=WAITS,
        script=GATED,
    ),
    Scenario(
        "rate-limited-429",
        "/run answers 429 with Retry-After: 1",
        faults(lambda s: ErrorBurst(route=f"/run/{s}", status=429)),
        run(),
        succeeds_with("Iris setosa"),
        then=lambda w: w.seconds >= 1.0 and w.requests("POST /run/{service}") == 2,
    ),
    Scenario(
        "connection-reset-while-waiting",
        "the connection drops mid-answer on two job listings (idempotent: retried)",
        nothing,
        submit(meanwhile=_drop_listings_then_open),
        succeeds_with("Iris setosa"),
        modes=WAITS,
        script=GATED,
    ),
    Scenario(
        "slow-lookup-past-the-timeout",
        "reading the service (for its token) takes 1.5 s; the connection's timeout is 0.5 s",
        slow_service_lookup,
        run(),
        succeeds_with("Iris setosa"),
        then=lambda w: w.requests("GET /system/services/{service}") == 2,
    ),
    Scenario(
        "token-rotated-401",
        "the service got a new token after the provider cached the old one (OSCAR < 4.1)",
        rotate_cached_token,
        run(),
        succeeds_with("Iris setosa"),
        then=lambda w: w.requests("POST /run/{service}") == 2,  # 401, then the new token
    ),
    Scenario(
        "token-rotated-401-on-job-submission",
        "the service got a new token after the provider cached the old one (OSCAR < 4.1)",
        rotate_cached_token,
        submit(),
        succeeds_with("Iris setosa"),
        modes=("waiting",),
        then=lambda w: w.requests("POST /job/{service}") == 2 and _one_job(w),
    ),
    # transient trouble the hook must not paper over ---------------------------------------
    Scenario(
        "cold-start-that-never-ends",
        "/run answers 503 to every attempt",
        faults(lambda s: ErrorBurst(route=f"/run/{s}", status=503, count=-1)),
        run(),
        fails_for_retry("POST /run/{service} answered 503"),
        then=lambda w: w.requests("POST /run/{service}") == RETRIES + 1,
    ),
    Scenario(
        "server-error-on-run",
        "/run answers 500 (the model may have run: not re-sent)",
        faults(lambda s: ErrorBurst(route=f"/run/{s}", status=500)),
        run(),
        fails_for_retry("answered 500", "injected fault: HTTP 500"),
        then=lambda w: w.requests("POST /run/{service}") == 1,
    ),
    Scenario(
        "connection-reset-mid-run",
        "the connection drops mid-answer on /run (the model may have run: not re-sent, and "
        "the task fails without its retries, which would run it again)",
        faults(lambda s: Drop(route=f"/run/{s}")),
        run(),
        fails_fast("POST /run/{service}:", "may have happened", "min_scale"),
        then=lambda w: w.requests("POST /run/{service}") == 1,
    ),
    Scenario(
        "slow-run-past-the-timeout",
        "/run takes 3 s; the operator's timeout is 0.5 s (not re-sent, nor retried by the task)",
        faults(lambda s: Latency(route=f"/run/{s}", seconds=3)),
        run(timeout=0.5),
        fails_fast("POST /run/{service}:", "no answer came within the run timeout (0.5 s"),
        then=lambda w: w.seconds < 3 and w.requests("POST /run/{service}") == 1,
    ),
    Scenario(
        "cluster-unreachable",
        "nothing listens at the connection's endpoint",
        unreachable,
        run(),
        fails_for_retry("failed: ConnectError"),
        then=lambda w: w.seconds < 3,
    ),
    Scenario(
        "cluster-lost-while-deferred",
        "the cluster stops answering while the triggerer waits for the job: the trigger asks "
        "again until the deadline, then the task fails for a retry (which re-attaches)",
        nothing,
        submit(meanwhile=_lose_the_cluster, timeout=2.0),
        fails_for_retry("could not be asked", "ConnectError", "may still run"),
        modes=("deferrable",),
        script=GATED,
    ),
    Scenario(
        "cluster-unreachable-recorded",
        "nothing listens at the endpoint; the call records failures (on_error='record')",
        unreachable,
        run(on_error="record"),
        Succeeds(
            "an 'error' prediction naming the connection failure (an ensemble counts the model "
            "as missing)",
            lambda r: r["prediction"]["status"] == "error" and "ConnectError" in r["error"],
        ),
    ),
    Scenario(
        "cluster-unreachable-failover",
        "the first of two clusters is unreachable; the batch routes with failover",
        a_second_cluster_unreachable,
        _classify_on_dead_then_live,
        Succeeds(
            "every input served by the second cluster",
            lambda r: (
                r["succeeded"] == len(SPECIMENS)
                and [x["prediction"]["labels"][0] for x in r["results"]]
                == ["Iris setosa", "Iris versicolor", "Iris virginica"]
            ),
        ),
        then=lambda w: w.notes["dead"] not in {x["cluster"] for x in w.notes["result"]["results"]},
    ),
    # refusals: failing at once -------------------------------------------------------------
    Scenario(
        "wrong-password",
        "the cluster refuses the connection's credentials (401)",
        wrong_password,
        run(),
        fails_fast("answered 401"),
        then=lambda w: w.requests("GET /system/services/{service}") == 1,
    ),
    Scenario(
        "input-too-large",
        "the input is larger than the cluster accepts (413)",
        settings(max_body_bytes=4096),
        run(input_data="x" * 8192),
        fails_fast("answered 413", "too large"),
        then=lambda w: w.requests("POST /run/{service}") == 1,
    ),
    # jobs that go wrong ------------------------------------------------------------------------
    Scenario(
        "job-stuck-pending",
        "the job never gets a node: Pending forever",
        faults(lambda s: StuckJobs(service=s)),
        submit(timeout=1.0),
        fails_for_retry("Pending", "the job was deleted"),
        modes=WAITS,
        then=_jobs_gone,  # a retry of the task never finds a twin still waiting
    ),
    Scenario(
        "job-failed",
        "the job's pod fails (the supervisor errors out)",
        faults(lambda s: FailingJobs(service=s)),
        submit(),
        fails_fast("ended Failed", "Log tail:", "injected failure: the job's pod was evicted"),
        modes=WAITS,
        logs=(" log [lines 1-", "injected failure: the job's pod was evicted"),
    ),
    Scenario(
        "job-over-the-time-limit",
        "the job runs longer than the cluster's job time limit",
        settings(job_timeout=0.5),
        submit(),
        fails_fast("ended Failed", "exceeded the time limit of 0.5 s"),
        modes=("waiting",),
        script="sleep 30\n",
        logs=("exceeded the time limit of 0.5 s",),
    ),
    Scenario(
        "job-logs-500-without-pod",
        "the job failed before any pod existed: its logs answer 500 with an empty body",
        failed_before_its_pod,
        submit(),
        fails_fast("ended Failed"),
        modes=WAITS,
        logs=("log: (empty)",),
        then=lambda w: w.log_reads() == 1,  # read once, as "no log yet"; not retried
    ),
    Scenario(
        "service-deleted-mid-run",
        "someone deletes the service while its job runs",
        nothing,
        submit(meanwhile=_delete_the_service),
        fails_fast("service '{service}' no longer exists", "404"),
        modes=WAITS,
        script=GATED,
    ),
    Scenario(
        "triggerer-restart-mid-wait",
        "the triggerer stops while the job runs; another one picks the trigger up",
        nothing,
        _restart_the_triggerer,
        succeeds_with("Iris setosa"),
        modes=("deferrable",),
        script=GATED,
        then=lambda w: w.notes["after cleanup"] == "Running" and w.notes["same kwargs"],
    ),
    # answers that are not results ---------------------------------------------------------
    Scenario(
        "script-failed-job-succeeded",
        "the script dies (exit 3) but the job ends Succeeded, as OSCAR ignores exit codes",
        nothing,
        submit(),
        fails_fast("succeeded but printed no model result", "model weights missing"),
        modes=WAITS,
        script='echo "model weights missing" >&2\nexit 3\n',
    ),
    Scenario(
        "script-failed-run-answered-200",
        "the script dies (exit 3) and /run answers 200 with its console output",
        nothing,
        run(),
        fails_fast("no {...} document found", "model weights missing"),
        script='echo "model weights missing" >&2\nexit 3\n',
    ),
    Scenario(
        "model-status-error",
        "the model answers {'status': 'error'} (the input is not a specimen)",
        nothing,
        run(input_data="not a specimen"),
        fails_fast("model returned status 'error'", "input is not a JSON specimen"),
    ),
    Scenario(
        "model-status-error-in-a-job",
        "the model answers {'status': 'error'} in the job's log",
        nothing,
        submit(input_data="not a specimen"),
        fails_fast("model returned status 'error'", "input is not a JSON specimen"),
        modes=WAITS,
    ),
    Scenario(
        "truncated-json",
        "the model's JSON is cut off mid-document",
        nothing,
        run(),
        fails_fast("unbalanced braces, the text looks truncated"),
        script='printf \'{"status": "OK", "labels": ["Iris setosa"], "probabilities": [0.9\'\n',
    ),
    Scenario(
        "truncated-json-in-a-job",
        "the model's JSON in the job's log is cut off mid-document",
        nothing,
        submit(),
        fails_fast("printed no model result", "the text looks truncated"),
        modes=("waiting",),
        script='printf \'{"status": "OK", "labels": ["Iris setosa"], "probabilities": [0.9\'\n',
    ),
    Scenario(
        "wrong-shape",
        "two labels but one probability",
        nothing,
        run(),
        fails_fast("2 labels but 1 probabilities"),
        script='echo \'{"status": "OK", "labels": ["a", "b"], "probabilities": [0.9]}\'\n',
    ),
    Scenario(
        "not-base64",
        "the base64 payload is cut short (27 characters): taken for console text",
        nothing,
        run(),
        fails_fast("no {...} document found", "eyJzdGF0dXMiOiAiT0siLCAibGF"),
        script="echo eyJzdGF0dXMiOiAiT0siLCAibGF\n",
    ),
    Scenario(
        "binary-output-file",
        "the single output file is binary, not a document",
        nothing,
        run(),
        fails_fast("not UTF-8 text"),
        script="printf '\\377\\376\\000\\001' > \"$TMP_OUTPUT_DIR/out.bin\"\n",
    ),
    Scenario(
        "output-never-appears",
        "the job runs but never writes the output object the task waits for (its job, known "
        "from the upload, ended: no need to wait for the timeout)",
        nothing,
        submit(via="bucket", timeout=20.0),
        fails_fast("succeeded but wrote no output containing", "after the input file"),
        modes=WAITS,
        script="echo 'no output written'\n",
        buckets=True,
    ),
]

CASES = [
    pytest.param(scenario, mode, id=f"{scenario.id}-{mode}")
    for scenario in MATRIX
    for mode in scenario.modes
]


def test_the_matrix_has_at_least_fifteen_distinct_scenarios() -> None:
    ids = [scenario.id for scenario in MATRIX]
    assert len(set(ids)) == len(ids) >= 15


@pytest.mark.parametrize(("scenario", "mode"), CASES)
async def test_fault_scenario_has_the_user_visible_outcome_of_its_row(
    scenario: Scenario,
    mode: Mode,
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    fields: dict[str, Any] = {"environment": {"variables": {"GATE": str(gate)}}}
    if scenario.buckets:
        fields["input"] = [{"storage_provider": "minio.default", "path": "in"}]
        fields["output"] = [{"storage_provider": "minio.default", "path": "out"}]
    service = str(deploy(scenario.script, **fields)["name"])
    world = World(oscar, admin, monkeypatch, mode, service, gate, task_context(service))
    world.connect()
    scenario.inject(world)
    world.before = Counter(request_counts(world.cluster))

    started = time.monotonic()
    result: Any = None
    error: BaseException | None = None
    with structlog.testing.capture_logs() as logs:
        try:
            result = await scenario.act(world)
        except AirflowException as exc:
            error = exc
        finally:
            gate.touch()
    world.seconds = time.monotonic() - started
    world.notes["result"] = result

    outcome = scenario.outcome
    if isinstance(outcome, Succeeds):
        assert error is None, f"{scenario.fault}: expected success, the task failed: {error}"
        assert outcome.check(result), f"expected {outcome.what}, got {result!r}"
    else:
        assert error is not None, f"{scenario.fault}: expected a failure, got {result!r}"
        permanent = isinstance(outcome, FailsFast)
        assert isinstance(error, AirflowFailException) == permanent, (
            f"{scenario.fault}: expected {'a permanent' if permanent else 'a retryable'} "
            f"failure, got {type(error).__name__}: {error}"
        )
        for word in outcome.words:
            assert word.replace("{service}", service) in str(error), str(error)
    task_log = "\n".join(_rendered(entry) for entry in logs)
    for text in scenario.logs:
        assert text in task_log, f"{text!r} is not in the task log"
    if scenario.then is not None:
        seen = {r: n - world.before[r] for r, n in request_counts(world.cluster).items()}
        seen = {r: n for r, n in seen.items() if n and service in r}
        assert scenario.then(world), f"{scenario.id}: the cluster saw something else: {seen}"


def _rendered(entry: MutableMapping[str, Any]) -> str:
    event = str(entry.get("event", ""))
    arguments = entry.get("positional_args")
    if arguments:
        try:
            return event % tuple(arguments)
        except (TypeError, ValueError):
            return f"{event} {arguments}"
    return event
