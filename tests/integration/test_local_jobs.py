"""Job listing, statuses, logs and deletion on the embedded OSCAR (``/system/logs``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.faults import FailingJobs, StuckJobs
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import alive, wait_for_pid, wait_until

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The pid written is the script's child: it dies only if the whole process group is killed.
SLEEPER = 'sleep 30 &\necho $! > "$PID_FILE.tmp"\nmv "$PID_FILE.tmp" "$PID_FILE"\nwait\n'
GATED = 'while [ ! -e "$GATE" ]; do sleep 0.02; done\necho "passed gate"\n'


def submit(
    oscar: OscarLocal,
    service: dict[str, Any],
    job: str,
    data: bytes = b"",
    client: httpx.Client | None = None,
) -> None:
    response = (client or httpx).post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=data,
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text


def jobs_of(admin: httpx.Client, service: str) -> dict[str, dict[str, str]]:
    return admin.get(f"/system/logs/{service}").json()["jobs"]


def status_of(admin: httpx.Client, service: str, job: str) -> str | None:
    info = jobs_of(admin, service).get(job)
    return info["status"] if info else None


def wait_status(admin: httpx.Client, service: str, job: str, *wanted: str) -> dict[str, str]:
    return wait_until(
        lambda: (i := jobs_of(admin, service).get(job)) and i["status"] in wanted and i
    )


@pytest.fixture
def gated(deploy: Callable[..., dict], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A service whose jobs run until the returned gate file exists."""
    gate = tmp_path / "gate"
    return deploy(GATED, environment={"variables": {"GATE": str(gate)}}), gate


# listing and statuses --------------------------------------------------------------------


def test_job_list_is_the_wrapped_v3_6_4_shape(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    job = f"{service['name']}-shape"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    response = admin.get(f"/system/logs/{service['name']}")
    assert response.text.startswith(f'{{"jobs":{{"{job}":{{"status":"Succeeded","creation_time":')
    assert list(response.json()) == ["jobs"]


def test_job_names_are_the_service_name_and_a_uuid4(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    (job,) = wait_until(lambda: jobs_of(admin, service["name"]))
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(f"{service['name']}-{uuid4}", job)


def test_long_service_names_are_cut_to_16_characters_in_job_names(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = f"a-rather-long-service-{time.time_ns() % 10**8}"
    service = deploy("true\n", name=name)
    httpx.post(
        f"{oscar.endpoint}/job/{name}", headers={"Authorization": f"Bearer {service['token']}"}
    )
    (job,) = wait_until(lambda: jobs_of(admin, name))
    assert job.startswith(f"{name[:16]}-") and not job.startswith(name)


def test_running_job_has_a_start_time_and_no_finish_time(
    oscar: OscarLocal, admin: httpx.Client, gated: tuple[dict[str, Any], Path]
) -> None:
    service, gate = gated
    job = f"{service['name']}-running"
    submit(oscar, service, job)
    info = wait_status(admin, service["name"], job, "Running")
    assert list(info) == ["status", "creation_time", "start_time"]
    gate.touch()


def test_finished_job_has_rfc3339_creation_start_and_finish_times(
    oscar: OscarLocal, admin: httpx.Client, gated: tuple[dict[str, Any], Path]
) -> None:
    service, gate = gated
    job = f"{service['name']}-done"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Running")
    gate.touch()
    info = wait_status(admin, service["name"], job, "Succeeded")
    assert list(info) == ["status", "creation_time", "start_time", "finish_time"]
    assert all(RFC3339.match(info[k]) for k in ("creation_time", "start_time", "finish_time"))


def test_job_of_a_failing_supervisor_ends_failed(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo never\n")
    oscar.faults.add(FailingJobs(service=service["name"]))
    job = f"{service['name']}-failed"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Failed")
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    assert "ERROR" in log and "never" not in log


def test_suspended_job_is_listed_without_timestamps(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"], status="Suspended"))
    job = f"{service['name']}-suspended"
    submit(oscar, service, job)
    assert jobs_of(admin, service["name"])[job] == {"status": "Suspended"}


def test_jobs_are_paged_by_70_with_next_page_and_remaining_jobs(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"], count=75))
    names = {f"{service['name']}-{i}" for i in range(75)}
    with httpx.Client() as client:
        for job in sorted(names):
            submit(oscar, service, job, client=client)
    first = admin.get(f"/system/logs/{service['name']}").json()
    assert (len(first["jobs"]), first["remaining_jobs"]) == (70, 5)
    second = admin.get(f"/system/logs/{service['name']}", params={"page": first["next_page"]})
    assert set(second.json()) == {"jobs"}
    assert set(first["jobs"]) | set(second.json()["jobs"]) == names


def test_a_paged_listing_misses_no_job_when_earlier_jobs_are_deleted_between_pages(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """Kubernetes continue tokens resume after the last key listed, not at an offset: jobs
    deleted from the first page while a client reads the second shift nothing out of view."""
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"], count=75))
    names = sorted(f"{service['name']}-{i:02d}" for i in range(75))
    with httpx.Client() as client:
        for job in names:
            submit(oscar, service, job, client=client)
    first = admin.get(f"/system/logs/{service['name']}").json()
    for job in names[:10]:
        assert admin.delete(f"/system/logs/{service['name']}/{job}").status_code == 204
    second = admin.get(f"/system/logs/{service['name']}", params={"page": first["next_page"]})
    assert set(first["jobs"]) | set(second.json()["jobs"]) == set(names)


def test_reusing_a_delegated_job_id_fails_as_kubernetes_does_and_leaves_the_first_job_alone(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """job.go answers the Jobs API's AlreadyExists error as a 500 with its text."""
    service = deploy('echo "first run"\n')
    job = f"{service['name']}-twice"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert (response.status_code, response.text) == (500, f'jobs.batch "{job}" already exists')
    assert list(jobs_of(admin, service["name"])) == [job]
    assert "first run" in admin.get(f"/system/logs/{service['name']}/{job}").text


def test_delegated_job_id_used_by_another_service_fails(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """Jobs of all services share one Kubernetes namespace, so their names are unique."""
    first, second = deploy("true\n"), deploy("true\n")
    job = f"{first['name']}-shared"
    submit(oscar, first, job)
    response = httpx.post(
        f"{oscar.endpoint}/job/{second['name']}",
        headers={"Authorization": f"Bearer {second['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 500
    assert jobs_of(admin, second["name"]) == {}


def test_job_list_of_an_unknown_service_answers_404_with_an_empty_body(
    admin: httpx.Client,
) -> None:
    response = admin.get("/system/logs/no-such-service")
    assert (response.status_code, response.content) == (404, b"")


def test_many_quick_jobs_all_succeed(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    names = [f"{service['name']}-{i}" for i in range(72)]
    with httpx.Client() as client:
        for job in names:
            submit(oscar, service, job, client=client)

    def all_succeeded() -> bool:
        page = admin.get(f"/system/logs/{service['name']}").json()
        rest = admin.get(f"/system/logs/{service['name']}", params={"page": page["next_page"]})
        statuses = [j["status"] for j in (page["jobs"] | rest.json()["jobs"]).values()]
        return len(statuses) == 72 and set(statuses) == {"Succeeded"}

    wait_until(all_succeeded, timeout=20)


# logs ------------------------------------------------------------------------------------


def test_job_log_is_plain_text(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo line-one\necho line-two >&2\n")
    job = f"{service['name']}-text"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    response = admin.get(f"/system/logs/{service['name']}/{job}")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "line-one\nline-two\n" in response.text


def test_job_log_with_timestamps_prefixes_every_line(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo a\necho b\n")
    job = f"{service['name']}-stamped"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    text = admin.get(f"/system/logs/{service['name']}/{job}", params={"timestamps": "true"}).text
    lines = text.splitlines()
    assert lines
    for line in lines:
        stamp = line.split(" ", 1)[0]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp), line
    # the answer (the console) closes the log, with the newline of the supervisor's print
    assert [line.split(" ", 1)[1] for line in lines[-3:]] == ["a", "b", ""]


def test_log_of_a_running_job_is_readable(
    oscar: OscarLocal, admin: httpx.Client, gated: tuple[dict[str, Any], Path]
) -> None:
    service, gate = gated
    job = f"{service['name']}-live"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Running")
    assert admin.get(f"/system/logs/{service['name']}/{job}").status_code == 200
    gate.touch()


def test_log_of_a_job_without_pod_answers_500_with_empty_body(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """logs.go: no pod, so ``c.String(500, err.Error())`` on a nil error panics (Recovery)."""
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"], status="Suspended"))
    job = f"{service['name']}-podless"
    submit(oscar, service, job)
    assert status_of(admin, service["name"], job) == "Suspended"
    response = admin.get(f"/system/logs/{service['name']}/{job}")
    assert (response.status_code, response.content) == (500, b"")


def test_log_of_a_pending_pod_answers_404_with_empty_body(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """logs.go: the pod exists but its container has not started, so GetLogs is not 200."""
    service = deploy("true\n")
    oscar.faults.add(StuckJobs(service=service["name"]))
    job = f"{service['name']}-pending"
    submit(oscar, service, job)
    assert jobs_of(admin, service["name"])[job] == {"status": "Pending"}
    response = admin.get(f"/system/logs/{service['name']}/{job}")
    assert (response.status_code, response.content) == (404, b"")


def test_log_of_an_unknown_job_answers_500_with_empty_body(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n")["name"]
    response = admin.get(f"/system/logs/{name}/{name}-no-such-job")
    assert (response.status_code, response.content) == (500, b"")


# deletion --------------------------------------------------------------------------------


def test_delete_of_one_job_answers_204_and_removes_it(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    job = f"{service['name']}-gone"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    response = admin.delete(f"/system/logs/{service['name']}/{job}")
    assert (response.status_code, response.content) == (204, b"")
    assert job not in jobs_of(admin, service["name"])


def test_delete_of_an_unknown_job_answers_404_with_an_empty_body(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n")["name"]
    response = admin.delete(f"/system/logs/{name}/{name}-no-such-job")
    assert (response.status_code, response.content) == (404, b"")


def test_deleting_a_running_job_kills_its_script(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    service = deploy(SLEEPER, environment={"variables": {"PID_FILE": str(tmp_path / "pid")}})
    job = f"{service['name']}-killed"
    submit(oscar, service, job)
    pid = wait_for_pid(tmp_path / "pid")
    assert admin.delete(f"/system/logs/{service['name']}/{job}").status_code == 204
    wait_until(lambda: not alive(pid))


def test_background_processes_of_a_finished_job_are_killed_like_a_pods(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    script = 'sleep 30 > /dev/null 2>&1 &\necho $! > "$PID_FILE"\necho left behind\n'
    service = deploy(script, environment={"variables": {"PID_FILE": str(tmp_path / "pid")}})
    job = f"{service['name']}-orphans"
    submit(oscar, service, job)
    wait_status(admin, service["name"], job, "Succeeded")
    pid = wait_for_pid(tmp_path / "pid")
    wait_until(lambda: not alive(pid), timeout=1.0)


@pytest.fixture
def mixed_jobs(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> tuple[str, dict[str, str]]:
    """A service with one Succeeded, one Failed and one Pending job: ``{status: job}``."""
    service = deploy("true\n")
    name = service["name"]
    jobs = {s: f"{name}-{s.lower()}" for s in ("Succeeded", "Failed", "Pending")}
    submit(oscar, service, jobs["Succeeded"])
    oscar.faults.add(FailingJobs(service=name))
    submit(oscar, service, jobs["Failed"])
    oscar.faults.add(StuckJobs(service=name))
    submit(oscar, service, jobs["Pending"])
    wait_until(lambda: {j["status"] for j in jobs_of(admin, name).values()} == set(jobs))
    return name, jobs


def test_delete_of_all_jobs_removes_only_succeeded_ones_by_default(
    admin: httpx.Client, mixed_jobs: tuple[str, dict[str, str]]
) -> None:
    name, jobs = mixed_jobs
    response = admin.delete(f"/system/logs/{name}")
    assert (response.status_code, response.content) == (204, b"")
    assert set(jobs_of(admin, name)) == {jobs["Failed"], jobs["Pending"]}


def test_delete_of_all_jobs_with_all_true_removes_every_job(
    admin: httpx.Client, mixed_jobs: tuple[str, dict[str, str]]
) -> None:
    name, _ = mixed_jobs
    assert admin.delete(f"/system/logs/{name}", params={"all": "true"}).status_code == 204
    assert jobs_of(admin, name) == {}


def test_deleting_a_service_kills_its_running_jobs(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    service = deploy(SLEEPER, environment={"variables": {"PID_FILE": str(tmp_path / "pid")}})
    submit(oscar, service, f"{service['name']}-orphan")
    pid = wait_for_pid(tmp_path / "pid")
    assert admin.delete(f"/system/services/{service['name']}").status_code == 204
    wait_until(lambda: not alive(pid))


# owners ----------------------------------------------------------------------------------


def test_an_oidc_user_lists_its_own_jobs_but_reads_and_deletes_anyones(
    oscar: OscarLocal,
    admin: httpx.Client,
    deploy: Callable[..., dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """logs.go: the list filters by the job-owner label; the log read and the delete of the
    succeeded jobs do not (MakeGetLogsHandler, MakeDeleteJobsHandler)."""
    for subject in ("ann", "ben"):
        monkeypatch.setitem(oscar.settings.bearer_tokens, f"{subject}-token", subject)
    ann, ben = (
        httpx.Client(base_url=oscar.endpoint, headers={"Authorization": f"Bearer {s}-token"})
        for s in ("ann", "ben")
    )
    service = deploy('echo "written by the script"\n', visibility="public")
    name = service["name"]
    for client in (ann, ben):
        client.get("/system/info")  # provisions the MinIO user
        assert client.post(f"/job/{name}").status_code == 201
    wait_until(lambda: [j["status"] for j in jobs_of(admin, name).values()] == ["Succeeded"] * 2)
    (anns,) = jobs_of(ann, name)
    (bens,) = jobs_of(ben, name)
    assert anns != bens
    assert ann.get(f"/system/logs/{name}/{bens}").status_code == 200
    assert ann.delete(f"/system/logs/{name}").status_code == 204
    assert jobs_of(admin, name) == {}
