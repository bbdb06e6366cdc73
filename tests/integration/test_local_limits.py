"""Capacity, job slots and time limits, on a dedicated small embedded OSCAR (1 CPU)."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from tests.helpers import alive, stays, wait_for_pid, wait_until

JOB_TIMEOUT = 1.5
RUN_TIMEOUT = 1.0
GATED = 'while [ ! -e "$GATE" ]; do sleep 0.02; done\necho "passed gate"\n'
# The pid written is the script's child: it dies only if the whole process group is killed.
SLEEPER = (
    'sleep 30 &\necho $! > "$PID_FILE.tmp"\nmv "$PID_FILE.tmp" "$PID_FILE"\nwait\n'
    'touch "$PID_FILE.survived"\n'
)


@pytest.fixture(scope="module")
def small() -> Iterator[OscarLocal]:
    """One CPU of job slots, short time limits, 64 KiB request bodies."""
    settings = Settings(
        total_cpu=1.0,
        job_timeout=JOB_TIMEOUT,
        run_timeout=RUN_TIMEOUT,
        max_body_bytes=64 * 1024,
    )
    with OscarLocal(settings=settings) as server:
        yield server


@pytest.fixture
def small_admin(small: OscarLocal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small.endpoint, auth=(small.user, small.password)) as client:
        yield client


@pytest.fixture
def small_deploy(small_admin: httpx.Client) -> Iterator[Callable[..., dict[str, Any]]]:
    names: list[str] = []

    def _deploy(script: str, **fields: Any) -> dict[str, Any]:
        name = f"svc-{uuid.uuid4().hex[:8]}"
        spec = {"name": name, "image": "local/test", "cpu": "1", "script": script, **fields}
        assert small_admin.post("/system/services", json=spec).status_code == 201
        names.append(name)
        return small_admin.get(f"/system/services/{name}").json()

    yield _deploy
    for name in names:
        small_admin.delete(f"/system/services/{name}")


def submit(server: OscarLocal, service: dict[str, Any], job: str) -> None:
    response = httpx.post(
        f"{server.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201


def run(server: OscarLocal, service: dict[str, Any], data: bytes = b"") -> httpx.Response:
    return httpx.post(
        f"{server.endpoint}/run/{service['name']}",
        content=data,
        headers={"Authorization": f"Bearer {service['token']}"},
        timeout=30,
    )


def job_info(admin: httpx.Client, service: str, job: str) -> dict[str, str]:
    return admin.get(f"/system/logs/{service}").json()["jobs"].get(job) or {}


def wait_status(admin: httpx.Client, service: str, job: str, status: str) -> dict[str, str]:
    return wait_until(lambda: (i := job_info(admin, service, job)).get("status") == status and i)


def cpu_metrics(admin: httpx.Client) -> dict[str, float]:
    return admin.get("/system/status").json()["cluster"]["metrics"]["cpu"]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    yield path
    path.touch()  # never leave a gated job holding the only CPU


# job slots -------------------------------------------------------------------------------


def test_job_waits_pending_while_the_job_slots_are_full(
    small: OscarLocal,
    small_admin: httpx.Client,
    small_deploy: Callable[..., dict],
    gate: Path,
) -> None:
    service = small_deploy(GATED, environment={"variables": {"GATE": str(gate)}})
    first, second = f"{service['name']}-first", f"{service['name']}-second"
    submit(small, service, first)
    wait_status(small_admin, service["name"], first, "Running")
    submit(small, service, second)
    waiting = job_info(small_admin, service["name"], second)
    assert (waiting["status"], "start_time" in waiting) == ("Pending", False)
    gate.touch()
    wait_status(small_admin, service["name"], second, "Succeeded")
    assert job_info(small_admin, service["name"], first)["status"] == "Succeeded"


def test_status_shows_the_used_cpu_and_the_pending_pod(
    small: OscarLocal,
    small_admin: httpx.Client,
    small_deploy: Callable[..., dict],
    gate: Path,
) -> None:
    service = small_deploy(GATED, environment={"variables": {"GATE": str(gate)}})
    """status.go: CPU in integer millicores (Quantity.MilliValue), pods counted by phase."""
    wait_until(lambda: cpu_metrics(small_admin)["total_free_cores"] == 1000)  # idle first
    submit(small, service, f"{service['name']}-a")
    wait_status(small_admin, service["name"], f"{service['name']}-a", "Running")
    submit(small, service, f"{service['name']}-b")
    status = small_admin.get("/system/status").json()
    assert status["cluster"]["metrics"]["cpu"]["total_free_cores"] == 0
    assert status["cluster"]["nodes"][0]["cpu"] == {
        "capacity_cores": 1000,
        "usage_cores": 1000,
        "request_cores": 1000,
    }
    states = status["oscar"]["pods"]["states"]
    assert list(states) == ["Failed", "Pending", "Running", "Succeeded", "Unknown"]
    assert (states["Running"], states["Pending"]) == (1, 1)
    gate.touch()
    wait_until(lambda: cpu_metrics(small_admin)["total_free_cores"] == 1000)


def test_job_waiting_behind_a_sync_run_starts_when_the_run_ends(
    small: OscarLocal,
    small_admin: httpx.Client,
    small_deploy: Callable[..., dict],
    gate: Path,
) -> None:
    service = small_deploy(GATED, environment={"variables": {"GATE": str(gate)}})
    responses: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: responses.append(run(small, service)))
    caller.start()
    wait_until(lambda: cpu_metrics(small_admin)["total_free_cores"] == 0)
    job = f"{service['name']}-after-run"
    submit(small, service, job)
    assert job_info(small_admin, service["name"], job)["status"] == "Pending"
    gate.touch()
    caller.join(10)
    assert responses[0].status_code == 200
    wait_status(small_admin, service["name"], job, "Succeeded")


def test_job_larger_than_the_cluster_still_runs_when_the_cluster_is_idle(
    small: OscarLocal, small_admin: httpx.Client, small_deploy: Callable[..., dict]
) -> None:
    service = small_deploy("echo big\n", cpu="4")
    job = f"{service['name']}-big"
    submit(small, service, job)
    wait_status(small_admin, service["name"], job, "Succeeded")


# time limits -----------------------------------------------------------------------------


def test_job_over_the_time_limit_is_killed_and_failed(
    small: OscarLocal,
    small_admin: httpx.Client,
    small_deploy: Callable[..., dict],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    service = small_deploy(SLEEPER, environment={"variables": {"PID_FILE": str(pid_file)}})
    job = f"{service['name']}-slow"
    submit(small, service, job)
    pid = wait_for_pid(pid_file)
    wait_status(small_admin, service["name"], job, "Failed")
    wait_until(lambda: not alive(pid), timeout=1.0)
    assert not Path(f"{pid_file}.survived").exists()
    log = small_admin.get(f"/system/logs/{service['name']}/{job}").text
    assert f"time limit of {JOB_TIMEOUT:g} s" in log


def test_job_over_the_time_limit_frees_its_slot(
    small: OscarLocal,
    small_admin: httpx.Client,
    small_deploy: Callable[..., dict],
    tmp_path: Path,
) -> None:
    slow = small_deploy("sleep 30\n")
    quick = small_deploy("true\n")
    submit(small, slow, f"{slow['name']}-slow")
    wait_status(small_admin, slow["name"], f"{slow['name']}-slow", "Running")
    submit(small, quick, f"{quick['name']}-quick")
    wait_status(small_admin, quick["name"], f"{quick['name']}-quick", "Succeeded")


def test_sync_run_over_the_write_timeout_is_cut_without_a_response_and_its_script_killed(
    small: OscarLocal, small_deploy: Callable[..., dict], tmp_path: Path
) -> None:
    """main.go http.Server{WriteTimeout}: past it nothing reaches the client, not even a 504."""
    pid_file = tmp_path / "pid"
    service = small_deploy(SLEEPER, environment={"variables": {"PID_FILE": str(pid_file)}})
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        run(small, service)
    assert RUN_TIMEOUT <= time.monotonic() - started < RUN_TIMEOUT + 5
    wait_until(lambda: not alive(wait_for_pid(pid_file)), timeout=1.0)


# body limits -----------------------------------------------------------------------------


def test_run_body_over_the_limit_answers_413(
    small: OscarLocal, small_deploy: Callable[..., dict]
) -> None:
    service = small_deploy("echo never\n")
    response = run(small, service, base64.b64encode(b"x" * 64 * 1024))
    assert response.status_code == 413
    assert "too large" in response.text


def test_run_body_over_the_limit_without_content_length_answers_413(
    small: OscarLocal, small_deploy: Callable[..., dict]
) -> None:
    service = small_deploy("echo never\n")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"A" * 4096

    response = httpx.post(
        f"{small.endpoint}/run/{service['name']}",
        content=chunks(),
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 413


def test_service_definition_over_the_limit_answers_413(small_admin: httpx.Client) -> None:
    spec = {"name": "too-big", "image": "local/test", "script": "#" * 70 * 1024}
    assert small_admin.post("/system/services", json=spec).status_code == 413
    assert small_admin.get("/system/services/too-big").status_code == 404


# bounded sync runs and request memory (a second small OSCAR) ------------------------------

BUDGET = 200 * 1024


@pytest.fixture(scope="module")
def bounded(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """4 GiB of node memory, 200 KiB of request bodies in flight, no fault injection."""
    settings = Settings(
        total_memory_bytes=4 * 1024**3, max_request_memory=BUDGET, faults_enabled=False
    )
    with OscarLocal(settings=settings, s3=oscar.s3) as server:
        yield server


@pytest.fixture
def bounded_admin(bounded: OscarLocal) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounded.endpoint, auth=(bounded.user, bounded.password)) as client:
        yield client


def gated_runs(
    server: OscarLocal, service: dict[str, Any], bodies: list[bytes]
) -> tuple[list[threading.Thread], list[httpx.Response]]:
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda b=body: answers.append(run(server, service, b)))
        for body in bodies
    ]
    for thread in threads:
        thread.start()
    return threads, answers


STARTS = 'touch "$MARKS/$$"\nwhile [ ! -e "$GATE" ]; do sleep 0.02; done\necho done\n'


@pytest.mark.parametrize(
    "limits", [{"synchronous": {"max_scale": 1}}, {"memory": "3Gi"}], ids=["max_scale", "memory"]
)
def test_sync_runs_beyond_the_services_pods_wait_for_a_free_one(
    bounded: OscarLocal,
    bounded_admin: httpx.Client,
    tmp_path: Path,
    limits: dict[str, Any],
) -> None:
    """Knative: one request per pod (ContainerConcurrency 1), at most max_scale pods, and no
    more pods than the node's memory holds (here one 3Gi pod on 4Gi)."""
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    marks.mkdir()
    name = f"svc-{uuid.uuid4().hex[:8]}"
    variables = {"MARKS": str(marks), "GATE": str(gate)}
    spec = {"name": name, "image": "x", "script": STARTS, "environment": {"variables": variables}}
    assert bounded_admin.post("/system/services", json={**spec, **limits}).status_code == 201
    service = bounded_admin.get(f"/system/services/{name}").json()
    try:
        threads, answers = gated_runs(bounded, service, [b"", b""])
        wait_until(lambda: len(list(marks.iterdir())) == 1)
        stays(lambda: len(list(marks.iterdir())) == 1, 0.5)
        gate.touch()
        for thread in threads:
            thread.join(20)
        assert [a.status_code for a in answers] == [200, 200]
        assert len(list(marks.iterdir())) == 2
    finally:
        gate.touch()
        bounded_admin.delete(f"/system/services/{name}")


def test_request_bodies_beyond_the_memory_budget_are_refused_until_memory_frees(
    bounded: OscarLocal, bounded_admin: httpx.Client, tmp_path: Path
) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    marks.mkdir()
    name = f"svc-{uuid.uuid4().hex[:8]}"
    variables = {"MARKS": str(marks), "GATE": str(gate)}
    spec = {"name": name, "image": "x", "script": STARTS, "environment": {"variables": variables}}
    assert bounded_admin.post("/system/services", json=spec).status_code == 201
    service = bounded_admin.get(f"/system/services/{name}").json()
    try:
        threads, answers = gated_runs(bounded, service, [base64.b64encode(b"a" * 110_000)])
        wait_until(lambda: len(list(marks.iterdir())) == 1)  # holds ~147 KB of the budget
        refused = run(bounded, service, base64.b64encode(b"b" * 60_000))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        gate.touch()
        threads[0].join(20)
        assert answers[0].status_code == 200
        assert run(bounded, service, base64.b64encode(b"c" * 60_000)).status_code == 200
    finally:
        gate.touch()
        bounded_admin.delete(f"/system/services/{name}")


def test_fault_injection_can_be_switched_off(
    bounded: OscarLocal, bounded_admin: httpx.Client
) -> None:
    fault = {"kind": "error", "status": 500, "route": "/system/info"}
    response = bounded_admin.post("/local/faults", json=fault)
    assert (response.status_code, response.text) == (404, "404 page not found")
    assert bounded_admin.get("/system/info").status_code == 200
