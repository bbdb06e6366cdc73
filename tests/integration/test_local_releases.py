"""What differs between the OSCAR releases the embedded OSCAR plays (3.6.5, 3.7.1, 4.0.0, 4.1.2).

Each test runs once per release; the expected answer of each release is written out in the
test (from grycap/oscar's source at that tag, see docs/fidelity.md), never computed from the
profile under test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.profiles import profile_for
from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import stays, wait_until

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def pick(oscar: OscarLocal, **by_release: Any) -> Any:
    """The expectation written for this release (keys ``v3_6``, ``v3_7``, ``v4_0``, ``v4_1``)."""
    major, minor, _ = oscar.profile.release
    return by_release[f"v{major}_{minor}"]


def submit(oscar: OscarLocal, service: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", **headers},
    )


def jobs(admin: httpx.Client, service: str) -> dict[str, dict[str, str]]:
    return admin.get(f"/system/logs/{service}").json()["jobs"]


@pytest.fixture
def oidc_user(
    release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], httpx.Client]]:
    """``oidc_user("alice")``: a client with a bearer token the release accepts for alice."""
    clients: list[httpx.Client] = []

    def user(subject: str) -> httpx.Client:
        token = f"{subject}-{uuid.uuid4().hex}"
        monkeypatch.setitem(release_oscar.settings.bearer_tokens, token, subject)
        client = httpx.Client(
            base_url=release_oscar.endpoint, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return client

    yield user
    for client in clients:
        client.close()


# /system/info and the routes each release registers --------------------------------------


def test_system_info_reports_the_release_tag(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    expected = pick(release_oscar, v3_6="v3.6.5", v3_7="v3.7.1", v4_0="v4.0.0", v4_1="v4.1.2")
    assert release_admin.get("/system/info").json()["version"] == expected


def test_deployment_routes_exist_from_v4_0(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n")["name"]
    exists = pick(release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True)
    for path in (f"/system/services/{name}/deployment", f"/system/services/{name}/deployment/logs"):
        response = release_admin.get(path)
        if exists:
            assert response.status_code == 200
        else:
            assert (response.status_code, response.text) == (404, "404 page not found")


@pytest.mark.parametrize(
    ("tag", "kueue", "volumes", "families"),
    [
        ("v3.6.5", False, False, {"buckets", "system_logs"}),
        ("v3.7.1", True, False, {"buckets", "system_logs", "quotas"}),
        ("v4.0.0", False, False, {"deployment", "metrics", "config_update"}),
        ("v4.0.0", True, True, {"quotas", "volumes", "deployment", "metrics"}),
        ("v4.1.2", True, False, {"quotas", "federation", "lifecycle", "service_auth"}),
    ],
)
def test_route_families_follow_main_go_and_its_config_switches(
    tag: str, kueue: bool, volumes: bool, families: set[str]
) -> None:
    flags = {"serverless_backend": True, "kueue_enable": kueue, "volume_enable": volumes}
    served = set(profile_for(tag).route_families(flags))
    assert families <= served
    absent = {
        "v3.6.5": {"quotas", "deployment", "metrics", "volumes", "federation", "lifecycle"},
        "v3.7.1": {"deployment", "metrics", "volumes", "federation", "lifecycle"},
        "v4.0.0": {"federation", "lifecycle", "service_auth"} | ({"quotas"} - families),
        "v4.1.2": {"volumes"},
    }[tag]
    assert not absent & served


# services --------------------------------------------------------------------------------


def test_duplicate_create_is_409_up_to_4_0_and_400_from_4_1(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n")["name"]
    spec = {"name": name, "image": "local/test", "script": "true"}
    response = release_admin.post("/system/services", json=spec)
    expected = pick(release_oscar, v3_6=409, v3_7=409, v4_0=409, v4_1=400)
    assert (response.status_code, response.text) == (
        expected,
        "A service with the provided name already exists",
    )


def test_update_gives_a_new_token_before_4_0_and_keeps_it_after(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    service = release_deploy("true\n")
    assert release_admin.put("/system/services", json=service).status_code == 204
    token = release_admin.get(f"/system/services/{service['name']}").json()["token"]
    kept = pick(release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True)
    assert (token == service["token"]) is kept
    assert len(token) == 64


def test_service_fields_are_those_of_the_release(
    release_oscar: OscarLocal, release_deploy: Callable[..., dict]
) -> None:
    keys = set(release_deploy("true\n"))
    has = {
        "delegation": pick(release_oscar, v3_6=True, v3_7=True, v4_0=True, v4_1=False),
        "rescheduler_threshold": pick(release_oscar, v3_6=True, v3_7=True, v4_0=True, v4_1=False),
        "volume_status": pick(release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True),
        "ephemeral_storage_request": pick(
            release_oscar, v3_6=False, v3_7=False, v4_0=False, v4_1=True
        ),
    }
    assert {key: key in keys for key in has} == has


def test_user_service_labels_from_4_0(
    release_oscar: OscarLocal, release_deploy: Callable[..., dict]
) -> None:
    labels = release_deploy("true\n")["labels"]
    expected = pick(release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True)
    assert ("oscar.grycap/user-service" in labels) is expected
    assert (labels.get("owner_name") == "oscar") is expected
    assert labels["oscar_service"] == labels["applicationId"]


def test_bucket_only_paths_get_the_service_prefix_from_4_1_and_panic_before(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    """v4.1.0 normalizeStoragePaths prefixes the service name; before, createBuckets reads
    the folder as ``splitPath[1]`` and panics (Gin's Recovery: 500, empty), after the
    service was created."""
    bucket = f"bkt-{uuid.uuid4().hex[:8]}"
    if release_oscar.profile.since("v4.1.0"):
        service = release_deploy("true\n", output=[{"storage_provider": "minio", "path": bucket}])
        assert service["output"][0]["path"] == f"{service['name']}/{bucket}"
        return
    name = f"svc-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "image": "local/test", "script": "true\n"}
    spec["output"] = [{"storage_provider": "minio", "path": bucket}]
    response = release_admin.post("/system/services", json=spec)
    try:
        assert (response.status_code, response.content) == (500, b"")
        assert release_admin.get(f"/system/services/{name}").json()["output"][0]["path"] == bucket
    finally:
        release_admin.delete(f"/system/services/{name}")


def test_a_private_service_of_another_user_reads_as_200_empty_before_4_0_and_403_after(
    release_oscar: OscarLocal,
    release_deploy: Callable[..., dict],
    oidc_user: Callable[[str], httpx.Client],
) -> None:
    name = release_deploy("true\n")["name"]
    response = oidc_user("carol").get(f"/system/services/{name}")
    expected = pick(
        release_oscar,
        v3_6=(200, ""),
        v3_7=(200, ""),
        v4_0=(403, "User carol doesn't have permision to get this service"),
        v4_1=(403, "User carol doesn't have permision to get this service"),
    )
    assert (response.status_code, response.text) == expected


# cluster status and configuration --------------------------------------------------------


def test_status_metrics_of_the_release(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    status = release_admin.get("/system/status").json()
    cpu = status["cluster"]["metrics"]["cpu"]
    node_cpu = status["cluster"]["nodes"][0]["cpu"]
    schedulable = pick(release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True)
    assert ("total_schedulable_cores" in cpu) is schedulable
    assert isinstance(cpu["total_free_cores"], int)
    assert node_cpu["capacity_cores"] == round(release_oscar.settings.total_cpu * 1000)


def test_config_fields_and_defaults_of_the_release(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    body = release_admin.get("/system/config").json()
    config = body["config"]
    assert config.get("kueue_enable") == pick(
        release_oscar, v3_6=None, v3_7=True, v4_0=True, v4_1=True
    )
    assert config.get("volume_enable") == pick(
        release_oscar, v3_6=None, v3_7=None, v4_0=True, v4_1=True
    )
    assert ("minio_quota_enabled" in config) is pick(
        release_oscar, v3_6=False, v3_7=False, v4_0=False, v4_1=True
    )
    assert ("allowed_image_repositories" in body) is pick(
        release_oscar, v3_6=False, v3_7=False, v4_0=True, v4_1=True
    )
    assert config["oidc_groups"] == [""]  # parseStringSlice("") of an unset OIDC_GROUPS


# jobs ------------------------------------------------------------------------------------


def test_delegated_job_id_names_the_job_only_from_4_1(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    service = release_deploy("true\n")
    wanted = f"{service['name']}-delegated"
    assert submit(release_oscar, service, **{"X-Delegated-Job-ID": wanted}).status_code == 201
    (name,) = wait_until(lambda: jobs(release_admin, service["name"]))
    honoured = pick(release_oscar, v3_6=False, v3_7=False, v4_0=False, v4_1=True)
    if honoured:
        assert name == wanted
    else:
        assert re.fullmatch(f"{service['name']}-{UUID4}", name)


def test_job_names_cut_service_names_of_25_or_more_to_16_characters(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    name = f"long-{uuid.uuid4().hex[:20]}"  # 25 characters
    service = release_deploy("true\n", name=name)
    assert submit(release_oscar, service).status_code == 201
    (job,) = wait_until(lambda: jobs(release_admin, name))
    assert re.fullmatch(f"{name[:16]}-{UUID4}", job)


def test_jobs_without_a_pod_are_listed_as_suspended_from_3_7(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    from airflow_provider_oscar.local.faults import StuckJobs

    service = release_deploy("true\n")
    release_oscar.faults.add(StuckJobs(service=service["name"], status="Suspended"))
    assert submit(release_oscar, service).status_code == 201
    listed = pick(release_oscar, v3_6=False, v3_7=True, v4_0=True, v4_1=True)
    if listed:
        (info,) = wait_until(lambda: list(jobs(release_admin, service["name"]).values()))
        assert info == {"status": "Suspended"}
    else:  # v3.6 lists pods
        stays(lambda: jobs(release_admin, service["name"]) == {}, 0.3)


def test_invoking_an_unknown_service_is_404_before_4_0_and_401_after(
    release_oscar: OscarLocal,
) -> None:
    expected = pick(release_oscar, v3_6=404, v3_7=404, v4_0=401, v4_1=401)
    for route in ("run", "job"):
        response = httpx.post(
            f"{release_oscar.endpoint}/{route}/no-such-service",
            headers={"Authorization": f"Bearer {'0' * 64}"},
        )
        assert (response.status_code, response.content) == (expected, b"")


def test_a_job_body_over_128_kib_gives_a_job_that_fails_at_start(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    """job.go puts the body in the EVENT variable: execve refuses a string over MAX_ARG_STRLEN."""
    service = release_deploy("echo ran\n")
    response = httpx.post(
        f"{release_oscar.endpoint}/job/{service['name']}",
        content=b"A" * (128 * 1024),
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert (response.status_code, response.content) == (201, b"")
    (name,) = wait_until(lambda: jobs(release_admin, service["name"]))
    info = wait_until(
        lambda: (i := jobs(release_admin, service["name"])[name])["status"] == "Failed" and i
    )
    assert "finish_time" in info
    log = release_admin.get(f"/system/logs/{service['name']}/{name}")
    assert (log.status_code, log.text) == (200, "")


# OIDC callers ----------------------------------------------------------------------------


def test_log_access_of_an_oidc_user_to_someone_elses_private_service(
    release_oscar: OscarLocal,
    release_deploy: Callable[..., dict],
    oidc_user: Callable[[str], httpx.Client],
) -> None:
    """logs.go authorizeRequest: v3.x lets anyone in when ``allowed_users`` is empty; v4.x
    lets only the owner in, and a refusal is 200 with nothing written."""
    name = release_deploy("true\n")["name"]
    response = oidc_user("dave").get(f"/system/logs/{name}")
    if pick(release_oscar, v3_6=True, v3_7=True, v4_0=False, v4_1=False):
        assert (response.status_code, response.json()) == (200, {"jobs": {}})
    else:
        assert (response.status_code, response.content) == (200, b"")


def test_an_oidc_user_invokes_a_public_service_of_its_vo_and_needs_a_minio_user_from_4_1(
    release_oscar: OscarLocal, oidc_user: Callable[[str], httpx.Client]
) -> None:
    owner = oidc_user("erin")
    name = f"erin-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "image": "local/test", "script": "true\n", "visibility": "public"}
    assert owner.post("/system/services", json=spec).status_code == 201
    try:
        frank = f"frank-{uuid.uuid4().hex[:8]}"  # a user no other test has met
        newcomer = oidc_user(frank)  # never made a direct /system request
        response = newcomer.post(f"/job/{name}")
        expected = pick(
            release_oscar,
            v3_6=(201, ""),
            v3_7=(201, ""),
            v4_0=(201, ""),
            v4_1=(403, f"MinIO user not provisioned for {frank}; submit a direct request first"),
        )
        assert (response.status_code, response.text) == expected
        assert newcomer.get("/system/info").status_code == 200  # provisions frank
        assert newcomer.post(f"/job/{name}").status_code == 201
    finally:
        owner.delete(f"/system/services/{name}")


# owners and Kueue (update.go, job.go, run.go) --------------------------------------------


def test_an_admin_update_stores_the_owner_it_was_sent(
    release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    """update.go restores the old owner only for OIDC callers; an admin's body is stored."""
    service = release_deploy("true\n")
    assert service["owner"] == "cluster_admin"
    assert release_admin.put("/system/services", json={**service, "owner": ""}).status_code == 204
    assert release_admin.get(f"/system/services/{service['name']}").json()["owner"] == ""


def test_jobs_of_a_service_without_owner_stay_suspended_under_kueue_from_3_7(
    release_oscar: OscarLocal, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    """job.go: with KUEUE_ENABLE (default from v3.7.0) a job of a service not owned by
    cluster_admin is created suspended in the service's LocalQueue; an admin-made service has
    none, so Kueue never admits it."""
    service = release_deploy("echo ran\n")
    release_admin.put("/system/services", json={**service, "owner": ""})
    service = release_admin.get(f"/system/services/{service['name']}").json()
    assert submit(release_oscar, service).status_code == 201
    if pick(release_oscar, v3_6=False, v3_7=True, v4_0=True, v4_1=True):
        (name,) = wait_until(lambda: jobs(release_admin, service["name"]))
        stays(lambda: jobs(release_admin, service["name"])[name] == {"status": "Suspended"}, 0.5)
    else:
        wait_until(
            lambda: (
                [j["status"] for j in jobs(release_admin, service["name"]).values()]
                == ["Succeeded"]
            )
        )


def test_run_of_a_service_kueue_cannot_admit_answers_400_invalid_workload(
    release_oscar: OscarLocal,
    release_admin: httpx.Client,
    release_deploy: Callable[..., dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run.go: VerifyWorkload waits for admission (30 s by default), then refuses."""
    monkeypatch.setattr(release_oscar.settings, "kueue_admission_timeout", 0.2)
    service = release_deploy("echo ran\n", log_level="CRITICAL")
    release_admin.put("/system/services", json={**service, "owner": ""})
    service = release_admin.get(f"/system/services/{service['name']}").json()
    response = httpx.post(
        f"{release_oscar.endpoint}/run/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    expected = pick(
        release_oscar,
        v3_6=(200, "ran\n\n"),
        v3_7=(400, "invalid workload: try to reduce the service resource (cpu, memory, etc.)"),
        v4_0=(400, "invalid workload: try to reduce the service resource (cpu, memory, etc.)"),
        v4_1=(400, "invalid workload: try to reduce the service resource (cpu, memory, etc.)"),
    )
    assert (response.status_code, response.text) == expected


def test_jobs_of_an_oidc_users_service_wait_for_its_kueue_quota(
    release_oscar: OscarLocal,
    release_admin: httpx.Client,
    oidc_user: Callable[[str], httpx.Client],
    tmp_path: Any,
) -> None:
    """Kueue admits the LocalQueue's jobs while the user's ClusterQueue quota (2 CPU) lasts."""
    gate = tmp_path / "gate"
    owner = oidc_user("gina")
    name = f"gina-{uuid.uuid4().hex[:8]}"
    script = 'while [ ! -e "$GATE" ]; do sleep 0.02; done\n'
    variables = {"GATE": str(gate)}
    spec = {"name": name, "image": "x", "script": script, "cpu": "1.5"}
    spec["environment"] = {"variables": variables}
    assert owner.post("/system/services", json=spec).status_code == 201
    try:
        service = release_admin.get(f"/system/services/{name}").json()
        for _ in range(2):
            assert submit(release_oscar, service).status_code == 201
        kueue = pick(release_oscar, v3_6=False, v3_7=True, v4_0=True, v4_1=True)
        expected = ["Running", "Suspended"] if kueue else ["Running", "Running"]
        wait_until(
            lambda: sorted(j["status"] for j in jobs(release_admin, name).values()) == expected
        )
        gate.touch()
        wait_until(
            lambda: (
                [j["status"] for j in jobs(release_admin, name).values()]
                == ["Succeeded", "Succeeded"]
            )
        )
    finally:
        gate.touch()
        release_admin.delete(f"/system/services/{name}")
