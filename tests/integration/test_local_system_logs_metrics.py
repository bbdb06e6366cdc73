"""``GET /system/logs`` (v3.6.5) and ``/system/metrics`` (v4.0.0): what the embedded OSCAR
served, read back from its own execution log as OSCAR reads its pod's."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

LINE = re.compile(
    r"^\[GIN-EXECUTIONS-LOGGER\] \S+ \| (?P<status>[ \d]{3}) \| +\S+ \| \S+ \| "
    r"(?P<method>\S+) +(?P<path>\S+) \| (?P<user>\S+)$"
)


@pytest.fixture
def fresh() -> Iterator[Callable[..., OscarLocal]]:
    """A new embedded OSCAR of a release (its execution log starts empty)."""
    started: list[OscarLocal] = []

    def start(version: str = "4.1", **settings: Any) -> OscarLocal:
        server = OscarLocal(oscar_version=version)
        for name, value in settings.items():
            setattr(server.settings, name, value)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def client(server: OscarLocal, token: str | None = None) -> httpx.Client:
    if token:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=server.endpoint, headers=headers)
    return httpx.Client(base_url=server.endpoint, auth=(server.user, server.password))


def deploy(admin: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    spec = {"name": name, "image": "local/test", "script": "echo ok\n", **fields}
    assert admin.post("/system/services", json=spec).status_code == 201
    return admin.get(f"/system/services/{name}").json()


def served(server: OscarLocal, admin: httpx.Client) -> dict[str, Any]:
    """Two services; sync and async calls with their tokens, one refused."""
    one = deploy(admin, "one", log_level="CRITICAL")
    two = deploy(admin, "two")
    for _ in range(2):
        response = httpx.post(
            f"{server.endpoint}/run/one",
            content=base64.b64encode(b"x"),
            headers={"Authorization": f"Bearer {one['token']}"},
        )
        assert response.status_code == 200
    response = httpx.post(
        f"{server.endpoint}/job/two", headers={"Authorization": f"Bearer {two['token']}"}
    )
    assert response.status_code == 201
    assert httpx.post(f"{server.endpoint}/job/two").status_code == 401
    return {"one": one, "two": two}


# GET /system/logs ----------------------------------------------------------------------------


def test_system_logs_list_every_run_and_job_request_with_oscars_fields(
    fresh: Callable[..., OscarLocal],
) -> None:
    server = fresh("4.1")
    with client(server) as admin:
        served(server, admin)
        logs = admin.get("/system/logs").json()["logs"]
    assert [(e["method"], e["path"], e["status"], e["user"]) for e in logs] == [
        ("POST", "/run/one", 200, "oscar"),  # a service token sets no uidOrigin
        ("POST", "/run/one", 200, "oscar"),
        ("POST", "/job/two", 201, "nil"),  # the body is no MinIO event
        ("POST", "/job/two", 401, "oscar"),
    ]
    first = logs[0]
    assert list(first) == [
        "timestamp",
        "status",
        "latency",
        "client_ip",
        "method",
        "path",
        "user",
        "raw",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", first["timestamp"])
    assert re.fullmatch(r"[\d.]+(ns|µs|ms|s)", first["latency"])
    assert first["client_ip"] == "127.0.0.1"
    assert LINE.match(first["raw"])


def test_system_logs_times_are_second_precision_before_4_0(
    fresh: Callable[..., OscarLocal],
) -> None:
    server = fresh("3.7")
    with client(server) as admin:
        deploy(admin, "one")
        httpx.post(f"{server.endpoint}/job/one")  # 401, logged all the same
        (entry,) = admin.get("/system/logs").json()["logs"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["timestamp"])
    assert re.search(r"\] \d{4}/\d\d/\d\d - \d\d:\d\d:\d\d \|", entry["raw"])


def test_a_bucket_upload_is_logged_as_minios_job_request_with_its_principal(
    fresh: Callable[..., OscarLocal],
) -> None:
    from minio import Minio

    server = fresh("4.1")
    with client(server) as admin:
        deploy(admin, "watch", input=[{"storage_provider": "minio", "path": "watch/in"}])
        s3 = server.s3
        store = Minio(s3.endpoint.split("://")[1], s3.access_key, s3.secret_key, secure=False)
        store.put_object("watch", "in/x.txt", io.BytesIO(b"x"), 1)
        logs = wait_until(lambda: admin.get("/system/logs").json()["logs"])
    ((path, status, user),) = [(e["path"], e["status"], e["user"]) for e in logs]
    assert (path, status, user) == ("/job/watch", 201, s3.access_key)


def test_system_logs_with_kubernetes_timestamps_keep_the_prefix_in_the_timestamp(
    fresh: Callable[..., OscarLocal],
) -> None:
    """parseExecutionLogs trims the logger's tag only at the start of a line: with
    ``timestamps=true`` the time Kubernetes adds stays in the first field."""
    server = fresh("4.1")
    with client(server) as admin:
        deploy(admin, "one")
        httpx.post(f"{server.endpoint}/job/one")
        (entry,) = admin.get("/system/logs", params={"timestamps": "true"}).json()["logs"]
    assert "[GIN-EXECUTIONS-LOGGER]" in entry["timestamp"]


def test_system_logs_are_for_the_admin_and_the_previous_container_does_not_exist(
    oscar: OscarLocal, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(oscar.settings.bearer_tokens, "dana-token", "dana")
    with client(oscar, "dana-token") as dana:
        refused = dana.get("/system/logs")
    assert (refused.status_code, refused.text) == (
        403,
        "OIDC tokens are not allowed for system logs",
    )
    previous = admin.get("/system/logs", params={"previous": "true"})
    assert previous.status_code == 400
    assert re.fullmatch(
        r'previous terminated container "oscar" in pod "oscar-\S+" not found', previous.text
    )


def test_an_oidc_admin_listed_in_users_admin_reads_system_logs(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(oscar.settings.bearer_tokens, "root-token", "root-user")
    monkeypatch.setattr(oscar.cluster.config, "users_admin", ["root-user"])
    with client(oscar, "root-token") as root:
        assert root.get("/system/logs").status_code == 200


def test_every_emulated_release_serves_system_logs(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    assert release_admin.get("/system/logs").status_code == 200


# /system/metrics -----------------------------------------------------------------------------


def test_metrics_summary_counts_the_requests_served(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.1")
    with client(server) as admin:
        served(server, admin)
        body = admin.get("/system/metrics").json()
    assert list(body) == ["start", "end", "totals", "sources"]
    totals = body["totals"]
    assert (totals["services_count_active"], totals["services_count_total"]) == (2, 2)
    assert (
        totals["requests_count_total"],
        totals["requests_count_sync"],
        totals["requests_count_async"],
        totals["requests_count_exposed"],
    ) == (4, 2, 2, 0)
    assert (totals["users"], totals["users_count"]) == (["nil", "oscar"], 2)
    assert (totals["countries"], totals["countries_count"]) == ([], 0)
    assert (totals["cpu_hours_total"], totals["gpu_hours_total"]) == (0, 0)
    assert [(s["name"], s["status"]) for s in body["sources"]] == [
        ("service-inventory", "ok"),
        ("prometheus", "missing"),  # no Prometheus in the embedded cluster
        ("request-logs", "ok"),
        ("country-attribution", "ok"),
        ("exposed-request-logs", "ok"),
    ]


def test_metrics_of_a_quiet_cluster_have_null_lists(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.0")
    with client(server) as admin:
        totals = admin.get("/system/metrics").json()["totals"]
    assert (totals["requests_count_total"], totals["users"], totals["countries"]) == (0, None, None)


def test_metrics_breakdown_by_service_in_json_and_csv(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.1")
    with client(server) as admin:
        served(server, admin)
        body = admin.get(
            "/system/metrics/breakdown", params={"group_by": "service", "include_users": "true"}
        ).json()
        text = admin.get(
            "/system/metrics/breakdown", params={"group_by": "service", "format": "csv"}
        )
    assert body["group_by"] == "service"
    assert body["items"] == [
        {
            "key": "one",
            "requests_count_total": 2,
            "requests_count_sync": 2,
            "requests_count_async": 0,
            "requests_count_exposed": 0,
            "unique_users_count": 1,
            "users": ["oscar"],
            "countries": [],
        },
        {
            "key": "two",
            "requests_count_total": 2,
            "requests_count_sync": 0,
            "requests_count_async": 2,
            "requests_count_exposed": 0,
            "unique_users_count": 2,
            "users": ["nil", "oscar"],
            "countries": [],
        },
    ]
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text.text)))
    assert rows[0][:3] == ["key", "membership", "requests_count_total"]
    assert rows[1:] == [
        ["one", "", "2", "2", "0", "0", "1", ""],
        ["two", "", "2", "0", "2", "0", "2", ""],
    ]


def test_metrics_breakdown_by_user_and_its_errors(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.1")
    with client(server) as admin:
        served(server, admin)
        by_user = admin.get("/system/metrics/breakdown", params={"group_by": "user"}).json()
        missing = admin.get("/system/metrics/breakdown")
        odd = admin.get("/system/metrics/breakdown", params={"group_by": "planet"})
        bad_format = admin.get(
            "/system/metrics/breakdown", params={"group_by": "user", "format": "xml"}
        )
        bad_time = admin.get("/system/metrics", params={"start": "yesterday"})
    assert by_user["items"] == [
        {"key": "nil", "membership": "unknown", "executions_count": 1, "countries": []},
        {"key": "oscar", "membership": "unknown", "executions_count": 3, "countries": []},
    ]
    assert (missing.status_code, missing.json()) == (400, {"error": "group_by is required"})
    assert (odd.status_code, odd.json()) == (400, {"error": "unsupported group_by"})
    assert (bad_format.status_code, bad_format.json()) == (400, {"error": "invalid format"})
    assert (bad_time.status_code, bad_time.json()) == (400, {"error": "invalid start timestamp"})


def test_metrics_of_one_service(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.1")
    with client(server) as admin:
        served(server, admin)
        body = admin.get("/system/metrics/one").json()
        sync = admin.get("/system/metrics/one", params={"metric": "requests-sync-per-service"})
        invalid = admin.get("/system/metrics/one", params={"metric": "speed"})
        unsupported = admin.get("/system/metrics/one", params={"metric": "countries-list"})
        ghost = admin.get("/system/metrics/ghost")
    assert [(m["metric"], m["value"]) for m in body["metrics"]] == [
        ("cpu-hours", 0),
        ("gpu-hours", 0),
        ("requests-sync-per-service", 2),
        ("requests-async-per-service", 0),
        ("requests-exposed-per-service", 0),
        ("users-per-service", 1),
    ]
    assert body["metrics"][0]["unit"] == "hours"
    assert sync.json()["value"] == 2 and sync.json()["service_id"] == "one"
    assert (invalid.status_code, invalid.json()) == (400, {"error": "invalid metric key"})
    assert unsupported.json() == {"error": "unsupported metric for value query"}
    assert ghost.status_code == 200  # v4.1.0 reads the service only for OIDC callers


def test_metrics_of_an_unknown_service_are_404_at_4_0(fresh: Callable[..., OscarLocal]) -> None:
    server = fresh("4.0")
    with client(server) as admin:
        response = admin.get("/system/metrics/ghost")
    assert (response.status_code, response.content) == (404, b"")


def test_an_oidc_user_sees_the_metrics_of_the_services_it_may_use(
    fresh: Callable[..., OscarLocal],
) -> None:
    server = fresh("4.1")
    server.settings.bearer_tokens["eve-token"] = "eve"
    with client(server) as admin:
        served(server, admin)
        with client(server, "eve-token") as eve:
            totals = eve.get("/system/metrics").json()["totals"]
            refused = eve.get("/system/metrics/one")
            admin.put("/system/services", json={**_spec(admin, "one"), "visibility": "public"})
            allowed = eve.get("/system/metrics/one")
    assert (totals["services_count_active"], totals["requests_count_total"]) == (0, 0)
    assert (refused.status_code, refused.content) == (403, b"")
    assert allowed.status_code == 200


def _spec(admin: httpx.Client, name: str) -> dict[str, Any]:
    current = admin.get(f"/system/services/{name}").json()
    return {k: current[k] for k in ("name", "image", "script", "owner")}


def test_metrics_routes_exist_from_4_0(
    release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    expected = 200 if release_oscar.profile.since("v4.0.0") else 404
    assert release_admin.get("/system/metrics").status_code == expected
