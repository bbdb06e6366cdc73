"""OscarHook's cluster and service operations against the embedded OSCAR."""

from __future__ import annotations

import ast
import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from airflow_provider_oscar.errors import OscarApiError, OscarClientError, OscarDefinitionError
from airflow_provider_oscar.fdl import Service, load_fdl
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.transport import client_options
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_services_test"
SERVICES = Path(__file__).resolve().parents[2] / "example_dags" / "services"
SCRIPT = "#!/bin/sh\necho hello\n"


@pytest.fixture
def hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", oscar.connection_json())
    return OscarHook(CONN_ID)


@pytest.fixture
def name(unique_name: Callable[[str], str], admin: httpx.Client) -> Iterator[str]:
    """A fresh service name; the service is deleted after the test if it was created."""
    service = unique_name("hook-svc")
    yield service
    admin.delete(f"/system/services/{service}")


def fdl(name: str, script: str = "run.sh", **fields: Any) -> dict[str, Any]:
    definition = {"name": name, "image": "local/test", "script": script, **fields}
    return {"functions": {"oscar": [{"oscar-local": definition}]}}


def intercept(hook: OscarHook, answer: Callable[[httpx.Request], httpx.Response | None]) -> None:
    """Let ``answer`` reply to some requests; the embedded OSCAR answers all others."""
    real = httpx.HTTPTransport()

    def handle(request: httpx.Request) -> httpx.Response:
        return answer(request) or real.handle_request(request)

    options = client_options(hook.settings)
    hook._client = httpx.Client(transport=httpx.MockTransport(handle), **options)


# cluster ------------------------------------------------------------------------------------


def test_get_info_returns_the_cluster_version(hook: OscarHook) -> None:
    assert hook.get_info()["version"] == "v4.1.2"


def test_get_config_returns_the_minio_provider(hook: OscarHook, oscar: OscarLocal) -> None:
    assert hook.get_config()["minio_provider"]["endpoint"] == oscar.s3.endpoint


def test_get_status_returns_node_capacity(hook: OscarHook) -> None:
    nodes = hook.get_status()["cluster"]["nodes"]
    assert nodes[0]["cpu"]["capacity_cores"] > 0


# reading services -----------------------------------------------------------------------------


def test_list_services_includes_a_deployed_service(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(SCRIPT)
    listed = {s.name: s for s in hook.list_services()}
    assert listed[service["name"]].token == service["token"]


def test_get_service_returns_the_typed_definition(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(SCRIPT, environment={"variables": {"MODE": "fast"}})
    got = hook.get_service(service["name"])
    assert got is not None
    assert (got.script, got.environment.variables) == (SCRIPT, {"MODE": "fast"})


def test_get_service_of_an_unknown_name_is_none(hook: OscarHook) -> None:
    assert hook.get_service("no-such-service") is None


def test_get_service_token_returns_the_token_oscar_generated(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(SCRIPT)
    assert hook.get_service_token(service["name"]) == service["token"]


def test_get_service_token_of_an_unknown_service_names_it(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError, match="service 'no-such-service' does not exist"):
        hook.get_service_token("no-such-service")


def test_get_deployment_reports_a_ready_knative_service(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(SCRIPT)
    status = hook.get_deployment(service["name"])
    assert (status["service_name"], status["state"]) == (service["name"], "ready")


def test_get_deployment_logs_of_a_service_scaled_to_zero_has_none(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(SCRIPT)
    logs = hook.get_deployment_logs(service["name"])
    assert (logs["available"], logs["entries"]) == (False, [])


def test_get_deployment_of_an_unknown_service_is_a_client_error(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError) as caught:
        hook.get_deployment("no-such-service")
    assert caught.value.status_code == 403  # deployment.go: 403 for an unknown service too
    assert caught.value.service == "no-such-service"


# applying services ----------------------------------------------------------------------------


def test_apply_from_an_fdl_file_creates_the_service_with_its_script(
    hook: OscarHook, name: str, tmp_path: Path, admin: httpx.Client
) -> None:
    (tmp_path / "run.sh").write_text(SCRIPT)
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(fdl(name)))
    assert hook.apply_service(tmp_path / "svc.yaml") == {name: "created"}
    assert admin.get(f"/system/services/{name}").json()["script"] == SCRIPT


def test_apply_of_an_existing_service_updates_it_and_keeps_its_token(
    hook: OscarHook, name: str, tmp_path: Path, admin: httpx.Client
) -> None:
    (tmp_path / "run.sh").write_text(SCRIPT)
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(fdl(name, memory="128Mi")))
    hook.apply_service(str(path))
    token = admin.get(f"/system/services/{name}").json()["token"]
    path.write_text(yaml.safe_dump(fdl(name, memory="512Mi")))
    assert hook.apply_service(str(path)) == {name: "updated"}
    after = admin.get(f"/system/services/{name}").json()
    assert (after["memory"], after["token"]) == ("512Mi", token)


def test_apply_merges_the_fdl_top_level_storage_providers(
    hook: OscarHook, name: str, tmp_path: Path, admin: httpx.Client
) -> None:
    document = fdl(name, script=SCRIPT)
    document["storage_providers"] = {
        "s3": {"aws": {"access_key": "AK", "secret_key": "SK", "region": "eu-west-1"}}
    }
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(document))
    hook.apply_service(tmp_path / "svc.yaml")
    providers = admin.get(f"/system/services/{name}").json()["storage_providers"]
    assert providers["s3"]["aws"]["region"] == "eu-west-1"
    assert "default" in providers["minio"]


def test_apply_accepts_fdl_yaml_text(hook: OscarHook, name: str) -> None:
    assert hook.apply_service(yaml.safe_dump(fdl(name, script=SCRIPT))) == {name: "created"}


def test_apply_accepts_an_fdl_mapping(hook: OscarHook, name: str) -> None:
    assert hook.apply_service(fdl(name, script=SCRIPT)) == {name: "created"}


def test_apply_accepts_a_single_service_mapping(
    hook: OscarHook, name: str, admin: httpx.Client
) -> None:
    definition = {"name": name, "image": "local/test", "script": SCRIPT, "cpu": 0.5}
    assert hook.apply_service(definition) == {name: "created"}
    assert admin.get(f"/system/services/{name}").json()["cpu"] == "0.5"


def test_apply_picks_the_services_of_the_given_cluster_id(
    hook: OscarHook, name: str, admin: httpx.Client
) -> None:
    document = fdl(name, script=SCRIPT)
    elsewhere = {"name": name, "image": "other/image", "script": SCRIPT}
    document["functions"]["oscar"].append({"remote": elsewhere})
    assert hook.apply_service(document, cluster_id="oscar-local") == {name: "created"}
    assert admin.get(f"/system/services/{name}").json()["image"] == "local/test"


def test_applied_example_service_renamed_from_its_fdl_classifies_a_specimen(
    hook: OscarHook, name: str
) -> None:
    (service,) = [s for s in load_fdl(SERVICES / "plants" / "plants.yaml") if "sepal" in s.name]
    renamed = service.model_copy(update={"name": name, "input": None, "output": None})
    assert hook.apply_service(renamed) == {name: "created"}
    specimen = json.loads((SERVICES / "plants" / "specimens" / "specimen-005.json").read_text())
    response = hook.run_service(name, specimen)
    result = ast.literal_eval(base64.b64decode(response.body).decode())
    assert (result["status"], result["labels"][0]) == ("OK", "Iris setosa")


def test_apply_of_an_invalid_definition_is_refused_before_any_request(
    hook: OscarHook, name: str
) -> None:
    with pytest.raises(OscarDefinitionError, match="script"):
        hook.apply_service(fdl(name, script=""))


def test_apply_refused_by_oscar_is_an_error_with_its_reason(hook: OscarHook, name: str) -> None:
    service = Service(name=name, image="local/test", script=SCRIPT, memory="lots")
    with pytest.raises(OscarApiError, match=r"answered 500: Error creating the service: quant"):
        hook.apply_service(service)


def test_apply_updates_when_oscar_reports_the_service_was_created_meanwhile(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]], admin: httpx.Client
) -> None:
    existing = deploy(SCRIPT, memory="128Mi")
    name = existing["name"]

    def not_there_yet(request: httpx.Request) -> httpx.Response | None:
        # another writer creates the service between our GET and our POST (v4.1: 400)
        if request.method == "GET" and request.url.path == f"/system/services/{name}":
            return httpx.Response(404)
        return None

    intercept(hook, not_there_yet)
    definition = {"name": name, "image": "local/test", "script": SCRIPT, "memory": "256Mi"}
    assert hook.apply_service(definition) == {name: "updated"}
    assert admin.get(f"/system/services/{name}").json()["memory"] == "256Mi"


def test_apply_updates_when_an_older_oscar_answers_409_to_a_duplicate(
    hook: OscarHook, deploy: Callable[..., dict[str, Any]], admin: httpx.Client
) -> None:
    name = deploy(SCRIPT, memory="128Mi")["name"]

    def older_server(request: httpx.Request) -> httpx.Response | None:
        if request.method == "GET" and request.url.path == f"/system/services/{name}":
            return httpx.Response(404)
        if request.method == "POST" and request.url.path == "/system/services":
            return httpx.Response(409, text="A service with the provided name already exists")
        return None

    intercept(hook, older_server)
    definition = {"name": name, "image": "local/test", "script": SCRIPT, "memory": "256Mi"}
    assert hook.apply_service(definition) == {name: "updated"}
    assert admin.get(f"/system/services/{name}").json()["memory"] == "256Mi"


def test_apply_re_reads_the_token_after_an_update(
    hook: OscarHook, name: str, oscar: OscarLocal
) -> None:
    definition = {"name": name, "image": "local/test", "script": SCRIPT}
    hook.apply_service(definition)
    before = hook.get_service_token(name)
    assert oscar.cluster is not None
    rotated = oscar.cluster.state.rotate_token(name)  # OSCAR < 4.1 rotated it on every PUT
    hook.apply_service(definition)
    assert rotated != before
    assert hook.get_service_token(name) == rotated


# deleting services ----------------------------------------------------------------------------


def test_delete_service_removes_it(hook: OscarHook, name: str, admin: httpx.Client) -> None:
    hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
    assert hook.delete_service(name) is True
    assert admin.get(f"/system/services/{name}").status_code == 404


def test_delete_of_an_unknown_service_is_false(hook: OscarHook) -> None:
    assert hook.delete_service("no-such-service") is False


# buckets ----------------------------------------------------------------------------------------


def test_presign_returns_a_url_that_downloads_the_object(
    hook: OscarHook, s3: Any, admin: Any, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("hook-presign")
    # through OSCAR: presign reads the bucket's tags, which only OSCAR's buckets have
    assert admin.post("/system/buckets", json={"bucket_name": bucket}).status_code == 201
    s3.put_object(bucket, "a/b.txt", io.BytesIO(b"payload"), 7)
    signed = hook.presign(bucket, "a/b.txt", operation="download", expires=120)
    assert signed.method == "GET"
    assert httpx.get(signed.url).content == b"payload"


def test_presign_for_an_unknown_bucket_is_a_client_error(hook: OscarHook) -> None:
    with pytest.raises(OscarClientError, match="not found"):
        hook.presign("no-such-bucket-here", "k", operation="download")
