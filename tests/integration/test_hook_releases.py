"""The hook on every OSCAR release: what it reads of the release and how it adapts.

Each test runs against the embedded OSCAR playing 3.6, 3.7, 4.0 and 4.1 (``release_oscar``)
unless it names one release; requests are counted where the cluster received them.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.errors import OscarClientError, OscarDefinitionError, OscarRunCutError
from airflow_provider_oscar.fdl import parse_service
from airflow_provider_oscar.hooks.api import JOB_BODY_LIMIT
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.release import OscarRelease
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_release_test"


def connect(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> OscarHook:
    conn = json.loads(oscar.connection_json())
    conn["extra"].update({"retries": 2, "backoff": 0.01, **extra})
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return OscarHook(CONN_ID)


@pytest.fixture
def hook(release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[OscarHook]:
    made = connect(release_oscar, monkeypatch)
    yield made
    made.close()


def counted(oscar: OscarLocal) -> Callable[[], Counter[str]]:
    """Requests the cluster received from now on."""
    assert oscar.cluster is not None
    cluster = oscar.cluster
    before = Counter(request_counts(cluster))

    def since() -> Counter[str]:
        now = Counter(request_counts(cluster))
        now.subtract(before)
        return now

    return since


# the release ---------------------------------------------------------------------------------


def test_release_is_the_tag_system_info_reports_read_once_per_connection(
    hook: OscarHook, release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = counted(release_oscar)
    release = hook.release()
    assert release.version == release_oscar.profile.version
    assert release.names_jobs == (release_oscar.profile.release >= (4, 1, 0))
    assert release.has_deployment_status == (release_oscar.profile.release >= (4, 0, 0))
    again = connect(release_oscar, monkeypatch)  # another hook on the same connection
    assert again.release() == release
    assert seen()["GET /system/info"] <= 1


def test_a_release_before_3_6_is_refused_naming_the_release_and_what_is_supported() -> None:
    with pytest.raises(OscarClientError, match=r"runs v3\.5\.3; the provider supports OSCAR 3\.6"):
        OscarRelease.parse("v3.5.3").check_supported("test-cluster")
    assert OscarRelease.parse("v3.6.0").check_supported("c").since(3, 6)
    assert OscarRelease.parse("devel").names_jobs  # a development build: the newest


# readiness -----------------------------------------------------------------------------------


def test_readiness_of_a_service_on_every_release(
    hook: OscarHook, release_oscar: OscarLocal, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n")["name"]
    readiness = hook.get_readiness(name)
    assert readiness["readiness"] == "ready"
    if release_oscar.profile.release < (4, 0, 0):  # no /deployment: the service itself
        assert "has no deployment status" in readiness["readiness_note"]
    else:
        assert readiness["state"] == "ready"
        assert "readiness_note" not in readiness


def test_readiness_of_an_unknown_service_says_it_does_not_exist_on_every_release(
    hook: OscarHook,
) -> None:
    with pytest.raises(OscarClientError, match="service 'no-such-svc' does not exist") as error:
        hook.get_readiness("no-such-svc")
    assert error.value.status_code == 404  # 403 from v4.0's deployment.go, told apart


def test_readiness_of_an_unavailable_deployment_is_not_waited_on(
    oscar_at: Callable[[str], OscarLocal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Knative, deployment.go reports ``unavailable``: the service existing decides."""
    oscar = oscar_at("4.1")
    monkeypatch.setattr(oscar.cluster.config, "serverless_backend", "")  # type: ignore[union-attr]
    hook = connect(oscar, monkeypatch)
    name = f"svc-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=oscar.endpoint, auth=(oscar.user, oscar.password)) as admin:
        body = {"name": name, "image": "local/test", "script": "true\n"}
        assert admin.post("/system/services", json=body).status_code == 201
        try:
            assert admin.get(f"/system/services/{name}/deployment").json()["state"] == (
                "unavailable"
            )
            readiness = hook.get_readiness(name)
        finally:
            admin.delete(f"/system/services/{name}")
    assert readiness["readiness"] == "ready"
    assert "unavailable" in readiness["readiness_note"]


# apply_service -------------------------------------------------------------------------------


def test_apply_keeps_what_the_stored_service_has_and_the_definition_does_not_say(
    hook: OscarHook, release_oscar: OscarLocal, release_admin: httpx.Client
) -> None:
    name = f"kept-{uuid.uuid4().hex[:8]}"
    stored = {
        "name": name,
        "image": "local/test",
        "script": "true\n",
        "visibility": "public",
        "allowed_users": ["alice"],
        "isolation_level": "SERVICE",
        "memory": "512Mi",
        "environment": {"variables": {"A": "1"}},
        "labels": {"team": "plants"},
    }
    newer = release_oscar.profile.release >= (4, 1, 0)
    if newer:
        stored["kserve"] = {"type": "inference", "storage_uri": "s3://models/x", "cpu": "1"}
    assert release_admin.post("/system/services", json=stored).status_code == 201
    try:
        before = release_admin.get(f"/system/services/{name}").json()
        seen = counted(release_oscar)
        outcome = hook.apply_service({"name": name, "image": "local/test", "script": "echo\n"})
        after = release_admin.get(f"/system/services/{name}").json()
    finally:
        release_admin.delete(f"/system/services/{name}")
    assert outcome == {name: "updated"}
    assert seen()["PUT /system/services"] == 1
    assert after["script"] == "echo\n"
    for key in ("owner", "visibility", "allowed_users", "memory", "expose", "mount"):
        assert after[key] == before[key], key
    assert after["owner"] == "cluster_admin"
    assert after["environment"]["variables"] == {"A": "1"}
    assert after["labels"]["team"] == "plants"
    if newer:
        assert after["kserve"] == before["kserve"]


def test_a_stored_service_of_every_release_round_trips_through_the_fdl_model(
    hook: OscarHook, release_admin: httpx.Client, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n", visibility="public", labels={"x": "y"})["name"]
    stored = release_admin.get(f"/system/services/{name}").json()
    sent = parse_service(stored).to_api()
    assert {key: sent[key] for key in stored} == stored  # every field, as it came
    assert {key: sent[key] for key in set(sent) - set(stored)} in (
        {},
        {"ephemeral_storage_request": ""},
    )
    assert hook.get_service(name) == parse_service(stored)


def test_apply_refuses_a_secret_with_an_empty_value_instead_of_storing_it(
    hook: OscarHook, release_deploy: Callable[..., dict]
) -> None:
    service = release_deploy("true\n", environment={"secrets": {"KEY": "value"}})
    assert service["environment"]["secrets"] == {"KEY": ""}  # what OSCAR shows
    with pytest.raises(OscarDefinitionError, match="secret 'KEY' has an empty value"):
        hook.apply_service(service)


def test_a_create_kubernetes_refuses_is_reported_once_not_retried(
    hook: OscarHook, release_oscar: OscarLocal
) -> None:
    seen = counted(release_oscar)
    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception, match="Error creating the service") as error:
        hook.apply_service({"name": name, "image": "x", "script": "true\n", "cpu": "lots"})
    assert getattr(error.value, "status_code", None) == 500
    assert seen()["POST /system/services"] == 1


# invocations ---------------------------------------------------------------------------------


def test_a_job_input_over_what_an_environment_variable_holds_is_refused_before_sending(
    hook: OscarHook, release_oscar: OscarLocal, release_deploy: Callable[..., dict]
) -> None:
    name = release_deploy("true\n")["name"]
    seen = counted(release_oscar)
    big = b"x" * (JOB_BODY_LIMIT // 4 * 3 + 3)  # just over the limit once base64-encoded
    with pytest.raises(OscarClientError, match="MAX_ARG_STRLEN") as error:
        hook.submit_job(name, big)
    assert "via='bucket'" in str(error.value)
    assert seen()[f"POST /job/{name}"] == 0
    assert hook.list_jobs(name) == {}
    hook.submit_job(name, b"x" * (JOB_BODY_LIMIT // 4 * 3 - 3))  # just under: it goes
    assert len(hook.list_jobs(name)) == 1


def test_a_run_cut_at_the_write_timeout_names_it_suggests_warming_and_is_sent_once(
    hook: OscarHook,
    release_oscar: OscarLocal,
    release_deploy: Callable[..., dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert release_oscar.cluster is not None
    monkeypatch.setattr(release_oscar.cluster.settings, "run_timeout", 0.5)
    name = release_deploy("sleep 2\n", log_level="CRITICAL")["name"]
    seen = counted(release_oscar)
    with pytest.raises(OscarRunCutError) as error:
        hook.run_service(name, "x", timeout=30)
    message = str(error.value)
    assert "without an answer" in message and "write timeout" in message.lower()
    assert "min_scale" in message and "may have happened" in message
    assert seen()[f"POST /run/{name}"] == 1


def test_a_bearer_token_that_is_no_jwt_is_refused_at_once_not_retried_as_a_cold_start(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, deploy: Callable[..., dict]
) -> None:
    name = deploy("true\n", visibility="public")["name"]
    conn = json.loads(oscar.connection_json())
    conn.update(login=None, password=None)
    conn["extra"].update(oidc_token=f"opaque-{uuid.uuid4().hex}", retries=3, backoff=0.01)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    hook = OscarHook(CONN_ID)
    seen = counted(oscar)
    with pytest.raises(OscarClientError, match="not one") as error:
        hook.submit_job(name, "x")
    assert error.value.status_code == 502
    assert seen()[f"POST /job/{name}"] == 1


def test_an_oidc_users_first_job_on_4_1_provisions_its_minio_user_first(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, deploy: Callable[..., dict]
) -> None:
    """job.go (v4.1): 403 ``MinIO user not provisioned`` until a /system request; the hook
    makes one and submits again."""
    name = deploy("true\n", visibility="public")["name"]
    token = f"newcomer-{uuid.uuid4().hex}"
    monkeypatch.setitem(oscar.settings.bearer_tokens, token, f"newcomer-{uuid.uuid4().hex[:6]}")
    conn = json.loads(oscar.connection_json())
    conn.update(login=None, password=None)
    conn["extra"].update(oidc_token=token, retries=1, backoff=0.01)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    hook = OscarHook(CONN_ID)
    seen = counted(oscar)
    assert hook.submit_job(name, "x") is True
    assert seen()[f"POST /job/{name}"] == 2
    assert seen()["GET /system/info"] == 1
    assert len(hook.list_jobs(name)) == 1
