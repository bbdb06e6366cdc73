"""Authentication, authorisation and hostile input on the embedded OSCAR."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal
from tests.helpers import wait_until

ALICE = "alice-oidc-access-token"


def invoke(oscar: OscarLocal, route: str, name: str, auth: str | None, data: bytes = b"") -> Any:
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.post(f"{oscar.endpoint}/{route}/{name}", content=data, headers=headers)


def submit(oscar: OscarLocal, service: dict[str, Any], job: str, data: bytes = b"") -> None:
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        content=data,
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 201, response.text


def finished_job(admin: httpx.Client, service: str, job: str) -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        info = admin.get(f"/system/logs/{service}").json()["jobs"].get(job)
        return info if info and info["status"] in ("Succeeded", "Failed") else None

    return wait_until(probe)


@pytest.fixture
def alice(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """A client of the OIDC user ``alice`` (a configured bearer token)."""
    monkeypatch.setitem(oscar.settings.bearer_tokens, ALICE, "alice")
    headers = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=oscar.endpoint, headers=headers) as client:
        yield client


@pytest.fixture
def alice_service(
    alice: httpx.Client, admin: httpx.Client, unique_name: Callable[[str], str]
) -> Iterator[str]:
    name = unique_name("alice")
    spec = {"name": name, "image": "local/test", "script": "echo alice-ran\n"}
    assert alice.post("/system/services", json=spec).status_code == 201
    yield name
    admin.delete(f"/system/services/{name}")


@pytest.fixture
def boto(oscar: OscarLocal) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=oscar.s3.endpoint,
        aws_access_key_id=oscar.s3.access_key,
        aws_secret_access_key=oscar.s3.secret_key,
        region_name=oscar.s3.region,
    )


# Basic auth on /system -------------------------------------------------------------------


def test_system_routes_without_credentials_answer_401_with_basic_challenge(
    oscar: OscarLocal,
) -> None:
    response = httpx.get(f"{oscar.endpoint}/system/services")
    assert (response.status_code, response.content) == (401, b"")
    assert response.headers["www-authenticate"] == 'Basic realm="Authorization Required"'


def test_wrong_password_answers_401(oscar: OscarLocal) -> None:
    response = httpx.get(f"{oscar.endpoint}/system/info", auth=(oscar.user, "wrong"))
    assert (response.status_code, response.content) == (401, b"")


def test_service_token_is_not_accepted_on_system_routes(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("true\n")
    response = httpx.get(
        f"{oscar.endpoint}/system/services/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}"},
    )
    assert response.status_code == 401


def test_unauthenticated_bucket_creation_answers_401_before_reading_the_body(
    oscar: OscarLocal,
) -> None:
    response = httpx.post(f"{oscar.endpoint}/system/buckets", content=b"not json")
    assert response.status_code == 401


# /run and /job authentication ------------------------------------------------------------


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_with_basic_auth_answers_401(
    oscar: OscarLocal, deploy: Callable[..., dict], route: str
) -> None:
    name = deploy("true\n")["name"]
    basic = base64.b64encode(f"{oscar.user}:{oscar.password}".encode()).decode()
    response = invoke(oscar, route, name, f"Basic {basic}")
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_without_authorization_answers_401(
    oscar: OscarLocal, deploy: Callable[..., dict], route: str
) -> None:
    response = invoke(oscar, route, deploy("true\n")["name"], None)
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_with_another_services_token_answers_401(
    oscar: OscarLocal, deploy: Callable[..., dict], route: str
) -> None:
    target, other = deploy("true\n"), deploy("true\n")
    response = invoke(oscar, route, target["name"], f"Bearer {other['token']}")
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_of_an_unknown_service_answers_401_not_404(
    oscar: OscarLocal, route: str
) -> None:
    response = invoke(oscar, route, "no-such-service", f"Bearer {'0' * 64}")
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_with_a_token_that_is_no_jwt_answers_502_with_both_errors(
    oscar: OscarLocal, deploy: Callable[..., dict], route: str
) -> None:
    """run.go/job.go write GetIssuerFromToken's error with 502, then append the missing-manager
    text (the handler does not return after the first write)."""
    response = invoke(oscar, route, deploy("true\n")["name"], "Bearer not-a-known-token")
    assert (response.status_code, response.text) == (
        502,
        "token is malformed: token contains an invalid number of segments"
        "Error getting oidc manager for issuer ''",
    )


@pytest.mark.parametrize("route", ["run", "job"])
def test_invocation_with_a_jwt_of_an_unknown_issuer_answers_400(
    oscar: OscarLocal, deploy: Callable[..., dict], route: str
) -> None:
    claims = base64.urlsafe_b64encode(b'{"iss":"https://elsewhere","sub":"x"}').decode()
    token = f"e30.{claims.rstrip('=')}.sig"
    response = invoke(oscar, route, deploy("true\n")["name"], f"Bearer {token}")
    assert (response.status_code, response.text) == (
        400,
        "Error getting oidc manager for issuer 'https://elsewhere'",
    )


def test_invocation_with_the_service_token_succeeds(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    service = deploy("echo ok\n", log_level="CRITICAL")
    response = invoke(oscar, "run", service["name"], f"Bearer {service['token']}")
    assert (response.status_code, response.text) == (200, "ok\n\n")


# OIDC stand-in (configured bearer tokens) ------------------------------------------------


def test_configured_bearer_token_is_accepted_on_system_routes(alice: httpx.Client) -> None:
    assert alice.get("/system/info").status_code == 200


def test_status_for_an_oidc_user_has_zero_job_counts(
    alice: httpx.Client, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """status.go: getJobsInfo and getMinioInfo run for admins only; the zero values stay."""
    deploy("true\n", output=[{"storage_provider": "minio", "path": "status-out"}])
    assert admin.get("/system/status").json()["minio"]["buckets_count"] >= 1
    status = alice.get("/system/status").json()
    assert status["oscar"]["jobs_count"] == 0
    assert status["oscar"]["pods"] == {"total": 0, "states": {}}
    assert status["minio"] == {"buckets_count": 0, "total_objects": 0}


def test_service_created_by_an_oidc_user_is_owned_by_its_subject(
    alice: httpx.Client, alice_service: str
) -> None:
    service = alice.get(f"/system/services/{alice_service}").json()
    assert (service["owner"], service["labels"]["owner_name"]) == ("alice", "alice")


def test_oidc_user_cannot_see_the_admins_private_service(
    alice: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n")["name"]
    response = alice.get(f"/system/services/{name}")
    assert (response.status_code, response.text) == (
        403,
        "User alice doesn't have permision to get this service",
    )
    assert name not in [s["name"] for s in alice.get("/system/services").json()]


def test_oidc_user_sees_a_public_service_but_cannot_modify_it(
    alice: httpx.Client, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n", visibility="public")["name"]
    assert alice.get(f"/system/services/{name}").status_code == 200
    spec = {"name": name, "image": "local/test", "script": "echo taken\n"}
    response = alice.put("/system/services", json=spec)
    assert response.status_code == 403
    assert response.text == "User alice doesn't have permision to modify this service"


def test_oidc_user_runs_its_own_service_with_its_token(
    oscar: OscarLocal, alice: httpx.Client, alice_service: str
) -> None:
    response = invoke(oscar, "run", alice_service, f"Bearer {ALICE}")
    assert response.status_code == 200
    assert "alice-ran" in response.text


def test_oidc_user_invoking_an_invisible_service_gets_404(
    oscar: OscarLocal, alice: httpx.Client, deploy: Callable[..., dict]
) -> None:
    response = invoke(oscar, "run", deploy("true\n")["name"], f"Bearer {ALICE}")
    assert response.status_code == 404


def test_oidc_user_lists_only_its_own_jobs(
    oscar: OscarLocal, alice: httpx.Client, admin: httpx.Client, alice_service: str
) -> None:
    token = admin.get(f"/system/services/{alice_service}").json()["token"]
    mine, anonymous = f"{alice_service}-mine", f"{alice_service}-anon"
    headers = {"X-Delegated-Job-ID": mine, "Authorization": f"Bearer {ALICE}"}
    httpx.post(f"{oscar.endpoint}/job/{alice_service}", headers=headers)
    headers = {"X-Delegated-Job-ID": anonymous, "Authorization": f"Bearer {token}"}
    httpx.post(f"{oscar.endpoint}/job/{alice_service}", headers=headers)
    assert set(admin.get(f"/system/logs/{alice_service}").json()["jobs"]) == {mine, anonymous}
    assert set(alice.get(f"/system/logs/{alice_service}").json()["jobs"]) == {mine}


# names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Upper-Case", 'ConfigMap "Upper-Case" is invalid'),
        ("under_score", "RFC 1123 subdomain"),
        ("-leading-dash", "RFC 1123 subdomain"),
        ("1st-digit", "DNS-1035 label"),
    ],
)
def test_names_kubernetes_refuses_answer_500_with_its_rule(
    admin: httpx.Client, name: str, words: str
) -> None:
    """create.go: the Knative backend's ConfigMap / Knative Service creation fails: 500."""
    response = admin.post(
        "/system/services", json={"name": name, "image": "local/test", "script": "true"}
    )
    assert response.status_code == 500
    assert response.text.startswith("Error creating the service: ")
    assert words in response.text
    assert admin.get(f"/system/services/{name}").status_code in (400, 404)


def test_name_longer_than_39_fails_the_binding_rule_with_400(admin: httpx.Client) -> None:
    response = admin.post(
        "/system/services", json={"name": "x" * 40, "image": "local/test", "script": "true"}
    )
    assert (response.status_code, response.text) == (
        400,
        "The service specification is not valid: Key: 'Service.Name' Error:Field validation "
        "for 'Name' failed on the 'max' tag",
    )


def test_name_of_39_characters_is_accepted(
    deploy: Callable[..., dict], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("x" * 30)
    assert len(name) == 39
    assert deploy("true\n", name=name)["name"] == name


@pytest.mark.parametrize("name", ["x" * 64, "trailing_", ".dot", "semi;colon"])
def test_get_with_a_name_that_is_no_label_value_answers_400_invalid_service_name(
    admin: httpx.Client, name: str
) -> None:
    """read.go validateServiceName (validation.IsValidLabelValue)."""
    response = admin.get(f"/system/services/{name}")
    assert (response.status_code, response.text) == (400, "invalid serviceName")


def test_path_traversal_in_a_service_name_never_reaches_a_handler(admin: httpx.Client) -> None:
    response = admin.get("/system/services/..%2F..%2Fetc%2Fpasswd")
    assert response.status_code in (400, 404)
    assert "root:" not in response.text


@pytest.mark.parametrize("job", ["../../evil", "Upper", "x" * 64, "a/b"])
def test_delegated_job_id_that_is_not_a_dns_label_is_refused_by_the_jobs_api(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], job: str
) -> None:
    """job.go names the Job after the header; the Jobs API refuses the name: 500."""
    service = deploy("true\n")
    response = httpx.post(
        f"{oscar.endpoint}/job/{service['name']}",
        headers={"Authorization": f"Bearer {service['token']}", "X-Delegated-Job-ID": job},
    )
    assert response.status_code == 500
    assert f'Job.batch "{job}" is invalid' in response.text
    assert admin.get(f"/system/logs/{service['name']}").json() == {"jobs": {}}


@pytest.mark.parametrize("path", ["../escape/in", "bucket/../../in", "./in"])
def test_storage_paths_with_dot_segments_are_refused(admin: httpx.Client, path: str) -> None:
    spec = {
        "name": f"dots-{uuid.uuid4().hex[:6]}",
        "image": "local/test",
        "script": "true",
        "input": [{"storage_provider": "minio", "path": path}],
    }
    assert admin.post("/system/services", json=spec).status_code == 400


@pytest.mark.parametrize(
    ("variables", "name"), [({"A=B": "x"}, "A=B"), ({"1ST": "x"}, "1ST"), ({"OK": "a\x00b"}, "OK")]
)
def test_environment_variables_a_process_cannot_carry_are_refused_at_create(
    admin: httpx.Client, variables: dict[str, str], name: str
) -> None:
    environment = {"variables": variables}
    spec = {"name": "envy", "image": "local/test", "script": "true", "environment": environment}
    response = admin.post("/system/services", json=spec)
    assert response.status_code == 500  # the Knative Service's pod template is refused
    assert f"Invalid value: {name!r}" in response.text


def test_secret_with_an_illegal_name_is_refused_at_create(admin: httpx.Client) -> None:
    environment = {"secrets": {"BAD NAME": "x"}}
    spec = {"name": "envy", "image": "local/test", "script": "true", "environment": environment}
    assert admin.post("/system/services", json=spec).status_code == 500


@pytest.mark.parametrize("page", ["-3", "abc", "1.5", "\u00b2"])
def test_page_tokens_that_are_not_offsets_answer_400(
    admin: httpx.Client, deploy: Callable[..., dict], page: str
) -> None:
    name = deploy("true\n", output=[{"storage_provider": "minio", "path": "o"}])["name"]
    assert admin.get(f"/system/logs/{name}", params={"page": page}).status_code == 400
    assert admin.get(f"/system/buckets/{name}", params={"page": page}).status_code == 400


# object keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/abs", "a/./b"])
def test_presign_of_a_key_leaving_its_bucket_answers_400(
    admin: httpx.Client, deploy: Callable[..., dict], key: str
) -> None:
    bucket = deploy("true\n", output=[{"storage_provider": "minio", "path": "out"}])["name"]
    response = admin.post(f"/system/buckets/{bucket}/presign", json={"object_key": key})
    assert response.status_code == 400
    assert "invalid object key" in response.text


def test_storage_event_with_a_traversing_key_fails_the_job_and_writes_nothing(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], boto: Any
) -> None:
    service = deploy("echo should-not-run\n", output=[{"storage_provider": "minio", "path": "o"}])
    bait = f"escape-{uuid.uuid4().hex}"
    key = f"../../../../{bait}"
    boto.put_object(Bucket=service["name"], Key=key, Body=b"owned")
    event = {
        "Records": [
            {
                "eventSource": "minio:s3",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": service["name"], "arn": f"arn:aws:s3:::{service['name']}"},
                    "object": {"key": key},
                },
            }
        ]
    }
    job = f"{service['name']}-traversal"
    submit(oscar, service, job, json.dumps(event).encode())
    assert finished_job(admin, service["name"], job)["status"] == "Failed"
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    assert "when calling the HeadObject operation: Bad Request" in log
    assert "should-not-run" not in log
    assert _nowhere(bait, oscar.data_dir)


def test_storage_event_for_etc_passwd_fails_the_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy("cat $INPUT_FILE_PATH\n")
    event = {
        "Records": [
            {
                "eventSource": "minio:s3",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": service["name"], "arn": f"arn:aws:s3:::{service['name']}"},
                    "object": {"key": "../../etc/passwd"},
                },
            }
        ]
    }
    job = f"{service['name']}-passwd"
    submit(oscar, service, job, json.dumps(event).encode())
    assert finished_job(admin, service["name"], job)["status"] == "Failed"
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    assert "An error occurred (400) when calling the HeadObject operation: Bad Request" in log
    assert "root:" not in log


def test_uploaded_traversing_key_in_an_input_folder_fails_its_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], boto: Any
) -> None:
    service = deploy("echo should-not-run\n", input=[{"storage_provider": "minio", "path": "in"}])
    bait = f"escape-{uuid.uuid4().hex}"
    boto.put_object(Bucket=service["name"], Key=f"in/../../../../../{bait}", Body=b"owned")
    (job,) = wait_until(lambda: admin.get(f"/system/logs/{service['name']}").json()["jobs"])
    assert finished_job(admin, service["name"], job)["status"] == "Failed"
    assert _nowhere(bait, oscar.data_dir)


# request bodies --------------------------------------------------------------------------


def test_job_body_over_etcds_limit_answers_500_and_creates_no_job(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    """The Job object carries the body in its pod template: etcd refuses objects over 1.5 MiB."""
    service = deploy("true\n")
    body = b"A" * (1536 * 1024 + 4)
    response = invoke(oscar, "job", service["name"], f"Bearer {service['token']}", body)
    assert (response.status_code, response.text) == (500, "etcdserver: request is too large")
    assert admin.get(f"/system/logs/{service['name']}").json() == {"jobs": {}}


# what scripts leave behind ---------------------------------------------------------------


def test_symlinked_output_pointing_outside_is_not_followed_in_a_sync_response(
    oscar: OscarLocal, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner.txt").write_text("TOP SECRET TOO")
    script = (
        f'ln -s "{secret}" "$TMP_OUTPUT_DIR/link.txt"\n'
        f'ln -s "{tmp_path / "dir"}" "$TMP_OUTPUT_DIR/linked-dir"\n'
        'echo public > "$TMP_OUTPUT_DIR/real.txt"\n'
    )
    service = deploy(script, log_level="CRITICAL")
    response = invoke(oscar, "run", service["name"], f"Bearer {service['token']}")
    assert base64.b64decode(response.text) == b"public\n"


def test_symlinked_output_pointing_outside_is_not_uploaded(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict], s3: Minio, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    script = f'ln -s "{secret}" "$TMP_OUTPUT_DIR/link.txt"\necho ok > "$TMP_OUTPUT_DIR/real.txt"\n'
    service = deploy(script, output=[{"storage_provider": "minio", "path": "out"}])
    job = f"{service['name']}-links"
    submit(oscar, service, job)
    assert finished_job(admin, service["name"], job)["status"] == "Succeeded"
    keys = [o.object_name for o in s3.list_objects(service["name"], recursive=True)]
    assert sorted(keys) == ["out/real.txt"]
    assert secret.read_text() == "TOP SECRET"


def test_output_directory_replaced_by_a_symlink_yields_no_outputs(
    oscar: OscarLocal, deploy: Callable[..., dict], tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    script = f'rm -rf "$TMP_OUTPUT_DIR"\nln -s "{tmp_path}" "$TMP_OUTPUT_DIR"\necho console\n'
    service = deploy(script, log_level="CRITICAL")
    response = invoke(oscar, "run", service["name"], f"Bearer {service['token']}")
    assert (response.status_code, response.text) == (200, "console\n\n")
    assert (tmp_path / "secret.txt").read_text() == "TOP SECRET"


def test_script_directories_live_inside_the_data_directory(
    oscar: OscarLocal, deploy: Callable[..., dict]
) -> None:
    script = 'echo "$TMP_INPUT_DIR $TMP_OUTPUT_DIR $INPUT_FILE_PATH $HOME $TMPDIR $PWD"\n'
    service = deploy(script, log_level="CRITICAL")
    response = invoke(oscar, "run", service["name"], f"Bearer {service['token']}", b"aGk=")
    root = str(oscar.data_dir.resolve())
    paths = response.text.split()
    assert len(paths) == 6
    assert all(str(Path(p).resolve()).startswith(root + "/") for p in paths), paths


def test_job_directories_are_removed_when_the_job_ends(
    oscar: OscarLocal, admin: httpx.Client, deploy: Callable[..., dict]
) -> None:
    service = deploy('echo "$TMP_OUTPUT_DIR"; echo x > "$TMP_OUTPUT_DIR/o.txt"\n')
    job = f"{service['name']}-tidy"
    submit(oscar, service, job)
    finished_job(admin, service["name"], job)
    log = admin.get(f"/system/logs/{service['name']}/{job}").text
    # "Searching for files to upload in folder '<TMP_OUTPUT_DIR>'"
    output_dir = re.findall(rf"'({re.escape(str(oscar.data_dir))}/\S+/output)'", log)[0]
    assert not Path(output_dir).exists()
    assert not Path(output_dir).parent.exists()


def _nowhere(name: str, data_dir: Path) -> bool:
    """No file called ``name`` near the data directory (where a traversal would land)."""
    places = [data_dir, data_dir.parent, data_dir / "jobs", Path.cwd(), Path.home()]
    return not any((place / name).exists() for place in places) and not list(data_dir.rglob(name))
