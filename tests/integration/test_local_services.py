"""The embedded OSCAR's service routes, driven over HTTP with oscar-python and raw httpx."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from minio import Minio
from oscar_python.client import Client

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings

SCRIPT = "#!/bin/sh\necho done\n"
# v4.1 Service struct field order (reference §4.2/§4.4); optional keys may be absent.
GO_ORDER = [
    "name",
    "cluster_id",
    "memory",
    "cpu",
    "total_memory",
    "total_cpu",
    "ephemeral_storage_request",
    "enable_gpu",
    "enable_sgx",
    "image_prefetch",
    "synchronous",
    "log_level",
    "image",
    "alpine",
    "token",
    "file_stage_in",
    "input",
    "output",
    "script",
    "image_pull_secrets",
    "expose",
    "environment",
    "annotations",
    "vo",
    "labels",
    "storage_providers",
    "clusters",
    "owner",
    "namespace",
    "interlink_node_name",
    "visibility",
    "allowed_users",
    "isolation_level",
    "bucket_list",
    "mount",
    "volume_status",
]
TOKEN = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def client(oscar: OscarLocal) -> Client:
    return Client(
        {
            "cluster_id": "local",
            "endpoint": oscar.endpoint,
            "user": oscar.user,
            "password": oscar.password,
            "ssl": False,
        }
    )


@pytest.fixture
def doomed(admin: httpx.Client, unique_name: Callable[[str], str]) -> Iterator[Callable[[], str]]:
    """Names for services a test creates itself; they are deleted afterwards."""
    names: list[str] = []

    def _name() -> str:
        names.append(unique_name("svc"))
        return names[-1]

    yield _name
    for name in names:
        admin.delete(f"/system/services/{name}")


def body(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "local/test", "script": SCRIPT, **fields}


# oscar-python lifecycle ------------------------------------------------------------------


def test_oscar_python_creates_a_service_from_a_dict(
    client: Client, doomed: Callable[[], str]
) -> None:
    name = doomed()
    response = client.create_service(body(name, cpu="0.5"))
    assert response.status_code == 201
    assert response.text == ""
    assert client.get_service(name).json()["cpu"] == "0.5"


def test_oscar_python_creates_a_service_from_an_fdl_file_with_its_script(
    client: Client, doomed: Callable[[], str], tmp_path: Path
) -> None:
    name = doomed()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_text("echo from-fdl\n")
    fdl = tmp_path / "fdl.yaml"
    fdl.write_text(
        "functions:\n  oscar:\n  - local:\n"
        f"      name: {name}\n      image: local/test\n      cpu: 1\n      memory: 512Mi\n"
        "      script: scripts/run.sh\n"
        "      environment:\n        Variables:\n          GREETING: hi\n"
    )
    assert client.create_service(str(fdl)).status_code == 201
    service = client.get_service(name).json()
    assert service["script"] == "echo from-fdl\n"
    assert (service["cpu"], service["memory"]) == ("1", "512Mi")
    assert service["environment"]["variables"] == {"GREETING": "hi"}


def test_oscar_python_lists_a_created_service(client: Client, deploy: Callable[..., dict]) -> None:
    name = deploy(SCRIPT)["name"]
    assert name in [s["name"] for s in client.list_services().json()]


def test_oscar_python_updates_a_service_and_the_change_is_visible(
    client: Client, deploy: Callable[..., dict]
) -> None:
    service = deploy(SCRIPT)
    response = client.update_service(service["name"], body(service["name"], memory="1Gi"))
    assert response.status_code == 204
    assert client.get_service(service["name"]).json()["memory"] == "1Gi"


def test_oscar_python_removes_a_service(client: Client, doomed: Callable[[], str]) -> None:
    name = doomed()
    client.create_service(body(name))
    assert client.remove_service(name).status_code == 204
    with pytest.raises(requests.HTTPError) as caught:
        client.get_service(name)
    assert caught.value.response.status_code == 404


def test_oscar_python_reads_info_config_status_and_health(client: Client) -> None:
    assert client.get_cluster_info().json()["version"] == "v4.1.2"
    assert "minio_provider" in client.get_cluster_config().json()
    assert client.get_cluster_status().json()["cluster"]["nodes_count"] == 1
    assert client.health_check().text == "Ok"


# cluster routes --------------------------------------------------------------------------


def test_health_answers_ok_without_credentials(oscar: OscarLocal) -> None:
    response = httpx.get(f"{oscar.endpoint}/health")
    assert (response.status_code, response.text) == (200, "Ok")


def test_system_info_is_compact_json_in_go_order(admin: httpx.Client) -> None:
    response = admin.get("/system/info")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.text.startswith('{"version":"v4.1.2","git_commit":')
    assert list(response.json()) == [
        "version",
        "git_commit",
        "architecture",
        "kubernetes_version",
        "serverless_backend",
    ]


def test_system_config_gives_the_local_s3_endpoint_and_keys(
    admin: httpx.Client, oscar: OscarLocal
) -> None:
    config = admin.get("/system/config").json()
    assert list(config) == ["config", "minio_provider", "allowed_image_repositories"]
    assert config["minio_provider"] == {
        "endpoint": oscar.s3.endpoint,
        "verify": False,
        "access_key": oscar.s3.access_key,
        "secret_key": oscar.s3.secret_key,
        "region": "us-east-1",
    }


def test_system_config_with_trailing_slash_redirects_permanently(admin: httpx.Client) -> None:
    response = admin.get("/system/config/")
    assert response.status_code == 301
    assert response.headers["location"] == "/system/config"


def test_system_status_reports_capacity_of_one_node(admin: httpx.Client) -> None:
    status = admin.get("/system/status").json()
    cpu = status["cluster"]["metrics"]["cpu"]
    assert cpu["total_schedulable_cores"] > 0
    assert 0 <= cpu["total_free_cores"] <= cpu["total_schedulable_cores"]
    assert [n["status"] for n in status["cluster"]["nodes"]] == ["Ready"]
    assert status["oscar"]["jobs_count"] >= 0


def test_unknown_route_answers_gins_404_text(admin: httpx.Client) -> None:
    response = admin.get("/system/nothing-here")
    assert (response.status_code, response.text) == (404, "404 page not found")


def test_known_path_with_wrong_method_answers_404_not_405(admin: httpx.Client) -> None:
    response = admin.patch("/system/services")
    assert (response.status_code, response.text) == (404, "404 page not found")


# create ----------------------------------------------------------------------------------


def test_create_answers_201_with_an_empty_body(
    admin: httpx.Client, doomed: Callable[[], str]
) -> None:
    response = admin.post("/system/services", json=body(doomed()))
    assert (response.status_code, response.content) == (201, b"")


def test_create_applies_oscar_defaults(deploy: Callable[..., dict]) -> None:
    service = deploy(SCRIPT)
    assert (service["memory"], service["cpu"], service["log_level"]) == ("256Mi", "0.2", "INFO")
    assert (service["visibility"], service["owner"]) == ("private", "cluster_admin")
    assert service["labels"]["oscar_service"] == service["name"]
    minio = service["storage_providers"]["minio"]["default"]
    assert (minio["access_key"], minio["secret_key"]) == ("hidden", "hidden")


def test_create_generates_a_64_hex_token_ignoring_a_sent_one(deploy: Callable[..., dict]) -> None:
    chosen = "a" * 64
    service = deploy(SCRIPT, token=chosen)
    assert TOKEN.match(service["token"])
    assert service["token"] != chosen


def test_log_level_is_upper_cased_and_unknown_levels_become_info(
    deploy: Callable[..., dict],
) -> None:
    assert deploy(SCRIPT, log_level="critical")["log_level"] == "CRITICAL"
    assert deploy(SCRIPT, log_level="chatty")["log_level"] == "INFO"


def test_create_with_a_duplicate_name_answers_400_with_oscars_text(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy(SCRIPT)["name"]
    response = admin.post("/system/services", json=body(name))
    assert response.status_code == 400
    assert response.text == "A service with the provided name already exists"


def test_create_without_image_names_the_failed_required_field(
    admin: httpx.Client, doomed: Callable[[], str]
) -> None:
    response = admin.post("/system/services", json={"name": doomed(), "script": SCRIPT})
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("The service specification is not valid: ")
    assert "'Service.Image'" in response.text and "'required' tag" in response.text


def test_create_with_a_body_that_is_not_json_answers_400(admin: httpx.Client) -> None:
    response = admin.post("/system/services", content=b"{name: nope")
    assert response.status_code == 400
    assert response.text.startswith("The service specification is not valid: ")


def test_create_with_an_empty_input_path_answers_400(
    admin: httpx.Client, doomed: Callable[[], str]
) -> None:
    spec = body(doomed(), input=[{"storage_provider": "minio.default", "path": "/"}])
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (400, "input path cannot be empty")


def test_create_with_an_s3_input_is_refused_as_unrecognized(
    admin: httpx.Client, doomed: Callable[[], str]
) -> None:
    spec = body(doomed(), input=[{"storage_provider": "s3.aws", "path": "b/in"}])
    response = admin.post("/system/services", json=spec)
    assert response.status_code == 400
    assert response.text == "unrecognized input (valid inputs are MinIO and dCache)"


@pytest.mark.parametrize("cpu", ["lots", "-1", "nan"])
def test_create_with_a_bad_cpu_quantity_answers_500_from_the_backend(
    admin: httpx.Client, doomed: Callable[[], str], cpu: str
) -> None:
    """types/service.go CreateResources: resource.ParseQuantity fails the Knative Service."""
    name = doomed()
    response = admin.post("/system/services", json=body(name, cpu=cpu))
    assert response.status_code == 500
    assert response.text.startswith("Error creating the service: ")
    assert admin.get(f"/system/services/{name}").status_code == 404


def test_keys_match_case_insensitively(admin: httpx.Client, doomed: Callable[[], str]) -> None:
    name = doomed()
    spec = {
        "Name": name,
        "IMAGE": "local/test",
        "Script": SCRIPT,
        "Environment": {"Variables": {"MODE": "fast"}},
    }
    assert admin.post("/system/services", json=spec).status_code == 201
    assert admin.get(f"/system/services/{name}").json()["environment"]["variables"] == {
        "MODE": "fast"
    }


def test_unknown_keys_are_ignored(admin: httpx.Client, doomed: Callable[[], str]) -> None:
    name = doomed()
    response = admin.post("/system/services", json=body(name, flavour="vanilla"))
    assert response.status_code == 201
    assert "flavour" not in admin.get(f"/system/services/{name}").json()


def test_create_accepts_any_content_type(admin: httpx.Client, doomed: Callable[[], str]) -> None:
    name = doomed()
    response = admin.post(
        "/system/services",
        content=json.dumps(body(name)),
        headers={"content-type": "text/json"},
    )
    assert response.status_code == 201


def test_slashless_paths_are_prefixed_by_the_service_name(deploy: Callable[..., dict]) -> None:
    service = deploy(
        SCRIPT,
        input=[{"storage_provider": "minio", "path": "in"}],
        output=[{"storage_provider": "minio.default", "path": "/results/"}],
    )
    name = service["name"]
    assert service["input"] == [{"storage_provider": "minio", "path": f"{name}/in"}]
    assert service["output"] == [{"storage_provider": "minio.default", "path": f"{name}/results"}]


def test_buckets_of_input_and_output_paths_are_created_with_the_input_folder(
    deploy: Callable[..., dict], s3: Minio, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("out")
    service = deploy(
        SCRIPT,
        input=[{"storage_provider": "minio", "path": "in"}],
        output=[{"storage_provider": "minio", "path": f"{bucket}/results"}],
    )
    assert s3.bucket_exists(service["name"])
    assert s3.bucket_exists(bucket)
    assert "in/" in [o.object_name for o in s3.list_objects(service["name"])]


def test_secrets_are_blanked_in_get(deploy: Callable[..., dict]) -> None:
    service = deploy(SCRIPT, environment={"secrets": {"API_KEY": "s3cr3t"}})
    assert service["environment"]["secrets"] == {"API_KEY": ""}


def test_secrets_are_blanked_in_the_service_list(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    deploy(SCRIPT, environment={"secrets": {"API_KEY": "s3cr3t"}})
    assert "s3cr3t" not in admin.get("/system/services").text


# get / list ------------------------------------------------------------------------------


def test_get_is_compact_json_with_keys_in_go_order(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy(SCRIPT)["name"]
    response = admin.get(f"/system/services/{name}")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.text.startswith(f'{{"name":"{name}","cluster_id":"","memory":"256Mi"')
    assert response.text == json.dumps(response.json(), separators=(",", ":"))
    keys = list(response.json())
    assert keys == [k for k in GO_ORDER if k in keys]
    assert set(GO_ORDER) - set(keys) <= {"image_pull_secrets", "clusters", "volume_status"}


def test_get_escapes_html_characters_as_go_does(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("echo '<b>' && true\n")["name"]
    text = admin.get(f"/system/services/{name}").text
    assert r'''"script":"echo '\u003cb\u003e' \u0026\u0026 true\n"''' in text


def test_get_escapes_line_and_paragraph_separators_as_go_does(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("echo '\u2028\u2029'\n")["name"]
    text = admin.get(f"/system/services/{name}").text
    assert r"echo '\u2028\u2029'" in text


def test_get_of_an_unknown_service_answers_404_with_an_empty_body(admin: httpx.Client) -> None:
    response = admin.get("/system/services/no-such-service")
    assert (response.status_code, response.content) == (404, b"")


def test_list_is_a_json_array_of_services(admin: httpx.Client, deploy: Callable[..., dict]) -> None:
    name = deploy(SCRIPT)["name"]
    response = admin.get("/system/services")
    assert response.text.startswith('[{"name":')
    assert name in [s["name"] for s in response.json()]


# update ----------------------------------------------------------------------------------


def test_update_answers_204_and_keeps_the_token(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy(SCRIPT)
    response = admin.put("/system/services", json=body(service["name"], token="b" * 64))
    assert (response.status_code, response.content) == (204, b"")
    assert admin.get(f"/system/services/{service['name']}").json()["token"] == service["token"]


def test_update_replaces_the_definition(admin: httpx.Client, deploy: Callable[..., dict]) -> None:
    service = deploy(SCRIPT, environment={"variables": {"A": "1"}})
    spec = body(service["name"], script="echo new\n", environment={"variables": {"B": "2"}})
    admin.put("/system/services", json=spec)
    updated = admin.get(f"/system/services/{service['name']}").json()
    assert updated["script"] == "echo new\n"
    assert updated["environment"]["variables"] == {"B": "2"}


def test_update_creates_buckets_of_new_paths(
    admin: httpx.Client, deploy: Callable[..., dict], s3: Minio, unique_name: Callable[[str], str]
) -> None:
    """update.go sets policies on every new bucket, even the admin's: MinIO knows no user
    ``cluster_admin`` and the answer is 500, written before the update goes on regardless."""
    service = deploy(SCRIPT)
    bucket = unique_name("later")
    spec = body(service["name"], output=[{"storage_provider": "minio", "path": f"{bucket}/o"}])
    spec["owner"] = service["owner"]
    response = admin.put("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        500,
        "Error creating the service: error setting MinIO policy for user/group cluster_admin: "
        "The specified user does not exist.",
    )
    assert admin.get(f"/system/services/{service['name']}").json()["output"][0]["path"] == (
        f"{bucket}/o"
    )
    assert s3.bucket_exists(bucket)
    admin.delete(f"/system/services/{service['name']}")
    assert not s3.bucket_exists(bucket)


def test_update_of_an_unknown_service_answers_404_with_an_empty_body(
    admin: httpx.Client,
) -> None:
    response = admin.put("/system/services", json=body("no-such-service"))
    assert (response.status_code, response.content) == (404, b"")


# delete ----------------------------------------------------------------------------------


def test_delete_answers_204_and_removes_the_service(
    admin: httpx.Client, doomed: Callable[[], str]
) -> None:
    name = doomed()
    admin.post("/system/services", json=body(name))
    response = admin.delete(f"/system/services/{name}")
    assert (response.status_code, response.content) == (204, b"")
    assert admin.get(f"/system/services/{name}").status_code == 404


def test_delete_removes_the_services_buckets_with_their_objects(
    admin: httpx.Client, doomed: Callable[[], str], s3: Minio, tmp_path: Path
) -> None:
    name = doomed()
    spec = body(
        name,
        input=[{"storage_provider": "minio", "path": "in"}],
        output=[{"storage_provider": "minio", "path": f"{name}-out/o"}],
    )
    admin.post("/system/services", json=spec)
    (tmp_path / "f").write_text("x")
    s3.fput_object(f"{name}-out", "o/kept.txt", str(tmp_path / "f"))
    assert admin.delete(f"/system/services/{name}").status_code == 204
    assert not s3.bucket_exists(name)
    assert not s3.bucket_exists(f"{name}-out")


def test_delete_of_an_unknown_service_answers_404_with_an_empty_body(
    admin: httpx.Client,
) -> None:
    response = admin.delete("/system/services/no-such-service")
    assert (response.status_code, response.content) == (404, b"")


# deployment ------------------------------------------------------------------------------


def test_deployment_status_is_ready_in_oscars_shape(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy(SCRIPT)["name"]
    response = admin.get(f"/system/services/{name}/deployment")
    status = response.json()
    assert response.text.startswith(f'{{"service_name":"{name}","namespace":')
    assert list(status) == [
        "service_name",
        "namespace",
        "state",
        "reason",
        "last_transition_time",
        "active_instances",
        "affected_instances",
        "resource_kind",
    ]
    assert (status["state"], status["resource_kind"]) == ("ready", "knative_service")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", status["last_transition_time"])


def test_deployment_logs_of_a_service_scaled_to_zero_are_unavailable(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """deployment.go MakeGetDeploymentLogsHandler: no pod, no logs, an explanation."""
    name = deploy(SCRIPT)["name"]
    response = admin.get(f"/system/services/{name}/deployment/logs")
    assert response.text == (
        f'{{"service_name":"{name}","available":false,'
        '"message":"Deployment logs are unavailable for this service.","entries":[]}'
    )


def test_deployment_of_an_unknown_service_answers_403(admin: httpx.Client) -> None:
    """getAuthorizedService sets 404, then the handler's 403 overwrites it (nothing written)."""
    response = admin.get("/system/services/no-such-service/deployment")
    assert (response.status_code, response.text) == (
        403,
        "You do not have permission to access this service",
    )


def test_deployment_of_a_service_scaled_to_zero_is_ready_with_no_instance(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """deploymentStatusFromKnativeService: Ready=True counts the current pods only."""
    name = deploy(SCRIPT)["name"]
    status = admin.get(f"/system/services/{name}/deployment").json()
    assert (status["state"], status["active_instances"], status["reason"]) == (
        "ready",
        0,
        "Runtime service is ready.",
    )
    kept = deploy(SCRIPT, synchronous={"min_scale": 2, "max_scale": 3})["name"]
    assert admin.get(f"/system/services/{kept}/deployment").json()["active_instances"] == 2


@pytest.mark.parametrize("state", ["failed", "degraded"])
def test_deployment_of_a_service_whose_revision_is_not_ready(
    admin: httpx.Client, deploy: Callable[..., dict], state: str
) -> None:
    name = deploy(SCRIPT, synchronous={"min_scale": 2})["name"]
    fault = {"kind": "deployment", "service": name, "state": state, "reason": "ImagePullBackOff"}
    assert admin.post("/local/faults", json=fault).status_code == 201
    status = admin.get(f"/system/services/{name}/deployment").json()
    assert (status["state"], status["reason"]) == (state, "ImagePullBackOff")
    assert 0 < status["affected_instances"] <= status["active_instances"]
    if state == "degraded":
        assert status["affected_instances"] < status["active_instances"]


def test_service_carries_its_deployment_summary_when_asked(
    admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """read.go ?include=deployment (v4.0.0): the summary, without service name and namespace."""
    name = deploy(SCRIPT)["name"]
    plain = admin.get(f"/system/services/{name}").json()
    assert "deployment" not in plain and plain["volume_status"] == {"enabled": False}
    summary = admin.get(f"/system/services/{name}", params={"include": "deployment"}).json()
    assert list(summary["deployment"]) == [
        "state",
        "reason",
        "last_transition_time",
        "active_instances",
        "affected_instances",
        "resource_kind",
    ]


# without a serverless backend -------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_only(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """An OSCAR without Knative (SERVERLESS_BACKEND unset): jobs only (the session's S3)."""
    with OscarLocal(settings=Settings(serverless_backend=False), s3=oscar.s3) as server:
        yield server


def test_without_a_serverless_backend_there_is_no_run_route(jobs_only: OscarLocal) -> None:
    """main.go registers /run only with a backend; info.go has no serverless_backend then."""
    with httpx.Client(
        base_url=jobs_only.endpoint, auth=(jobs_only.user, jobs_only.password)
    ) as admin:
        spec = {"name": "only-jobs", "image": "x", "script": "echo ran\n"}  # no buckets
        assert admin.post("/system/services", json=spec).status_code == 201
        service = admin.get("/system/services/only-jobs").json()
        headers = {"Authorization": f"Bearer {service['token']}"}
        response = httpx.post(f"{jobs_only.endpoint}/run/only-jobs", headers=headers)
        assert (response.status_code, response.text) == (404, "404 page not found")
        assert "serverless_backend" not in admin.get("/system/info").json()
        assert "serverless_backend" not in admin.get("/system/config").json()["config"]
        deployment = admin.get("/system/services/only-jobs/deployment").json()
        assert deployment == {
            "service_name": "only-jobs",
            "namespace": "oscar-svc",
            "state": "unavailable",
            "reason": "Current deployment visibility is unavailable for this service runtime.",
            "active_instances": 0,
            "affected_instances": 0,
            "resource_kind": "unavailable",
        }
        response = httpx.post(f"{jobs_only.endpoint}/job/only-jobs", headers=headers)
        assert response.status_code == 201
