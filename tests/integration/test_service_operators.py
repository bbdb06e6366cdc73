"""Deploying and deleting services with the operators, against the embedded OSCAR over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest

from airflow_provider_oscar.compat import AirflowException, AirflowFailException, TaskDeferred
from airflow_provider_oscar.links import OscarServiceLink
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.operators.service import (
    OscarDeleteServiceOperator,
    OscarDeployServiceOperator,
)
from airflow_provider_oscar.triggers.oscar import OscarServiceReadyTrigger
from tests.helpers import CRASH_LOG, fail_deployment, resume

DEPLOY_DELAY = 1.0


@pytest.fixture
def ctx() -> dict[str, Any]:
    return {"ti": MagicMock()}


@pytest.fixture
def on_oscar(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarLocal:
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())
    return oscar


@pytest.fixture(scope="module")
def slow_oscar(oscar: OscarLocal) -> Iterator[OscarLocal]:
    """An OSCAR whose new services are ``pending`` for DEPLOY_DELAY s (sharing the S3 store)."""
    with OscarLocal(settings=Settings(deploy_delay=DEPLOY_DELAY), s3=oscar.s3) as server:
        yield server


@pytest.fixture
def on_slow_oscar(slow_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[OscarLocal]:
    """Point the default connection at the slow OSCAR; services made there are deleted after."""
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", slow_oscar.connection_json())
    yield slow_oscar
    with httpx.Client(base_url=slow_oscar.endpoint, auth=admin_auth(slow_oscar)) as admin:
        for service in admin.get("/system/services").json():
            admin.delete(f"/system/services/{service['name']}")


@pytest.fixture
def cleanup(admin: httpx.Client) -> Iterator[list[str]]:
    """Names of services on the session OSCAR to delete after the test."""
    names: list[str] = []
    yield names
    for name in names:
        admin.delete(f"/system/services/{name}")


def admin_auth(oscar: OscarLocal) -> tuple[str, str]:
    return oscar.user, oscar.password


def service(name: str, script: str = "echo hi\n") -> dict[str, Any]:
    return {"name": name, "image": "local/test", "script": script}


def fdl(*names: str, cluster: str = "local") -> dict[str, Any]:
    return {"functions": {"oscar": [{cluster: service(n)} for n in names]}}


@pytest.mark.usefixtures("on_oscar")
def test_deploy_creates_a_service_from_one_service_mapping(
    admin: httpx.Client, unique_name: Callable[[str], str], cleanup: list[str], ctx: dict
) -> None:
    name = unique_name("dep")
    cleanup.append(name)
    op = OscarDeployServiceOperator(task_id="deploy", definition=service(name), deferrable=False)
    assert op.execute(ctx) == {name: "created"}
    assert admin.get(f"/system/services/{name}").json()["script"] == "echo hi\n"


@pytest.mark.usefixtures("on_oscar")
def test_deploy_updates_a_service_that_exists(
    admin: httpx.Client, unique_name: Callable[[str], str], cleanup: list[str], ctx: dict
) -> None:
    name = unique_name("dep")
    cleanup.append(name)
    OscarDeployServiceOperator(task_id="first", definition=service(name)).execute(ctx)
    op = OscarDeployServiceOperator(task_id="again", definition=service(name, "echo bye\n"))
    assert op.execute(ctx) == {name: "updated"}
    assert admin.get(f"/system/services/{name}").json()["script"] == "echo bye\n"


@pytest.mark.usefixtures("on_oscar")
def test_deploy_reads_an_fdl_file_with_its_script_beside_it(
    admin: httpx.Client,
    unique_name: Callable[[str], str],
    cleanup: list[str],
    ctx: dict,
    tmp_path: Path,
) -> None:
    name = unique_name("dep")
    cleanup.append(name)
    (tmp_path / "run.sh").write_text("echo from-file\n")
    (tmp_path / "svc.yaml").write_text(
        f"functions:\n  oscar:\n  - local:\n      name: {name}\n      image: local/test\n"
        "      script: run.sh\n"
    )
    op = OscarDeployServiceOperator(task_id="deploy", definition=str(tmp_path / "svc.yaml"))
    assert op.execute(ctx) == {name: "created"}
    assert admin.get(f"/system/services/{name}").json()["script"] == "echo from-file\n"


@pytest.mark.usefixtures("on_oscar")
def test_deploy_with_a_cluster_id_applies_only_that_clusters_services(
    admin: httpx.Client, unique_name: Callable[[str], str], cleanup: list[str], ctx: dict
) -> None:
    mine, other = unique_name("dep"), unique_name("dep")
    cleanup.extend([mine, other])
    document = {"functions": {"oscar": [{"here": service(mine)}, {"elsewhere": service(other)}]}}
    op = OscarDeployServiceOperator(task_id="deploy", definition=document, cluster_id="here")
    assert op.execute(ctx) == {mine: "created"}
    assert admin.get(f"/system/services/{other}").status_code == 404


@pytest.mark.usefixtures("on_oscar")
def test_deploy_persists_the_service_link_data(
    on_oscar: OscarLocal, unique_name: Callable[[str], str], cleanup: list[str], ctx: dict
) -> None:
    name = unique_name("dep")
    cleanup.append(name)
    OscarDeployServiceOperator(task_id="deploy", definition=service(name)).execute(ctx)
    ctx["ti"].xcom_push.assert_any_call(
        key=OscarServiceLink.persist_key(),
        value={
            "endpoint": on_oscar.endpoint,
            "service": name,
            "job": None,
            "bucket": None,
            "key": None,
        },
    )


@pytest.mark.usefixtures("on_oscar")
def test_deploy_of_an_invalid_definition_fails_without_retry(ctx: dict) -> None:
    op = OscarDeployServiceOperator(task_id="deploy", definition={"name": "Bad_Name"})
    with pytest.raises(AirflowFailException, match="Bad_Name"):
        op.execute(ctx)


# waiting for readiness in the worker -----------------------------------------------------


@pytest.mark.usefixtures("on_slow_oscar")
def test_deploy_waits_in_the_worker_until_every_service_is_ready(
    slow_oscar: OscarLocal, unique_name: Callable[[str], str], ctx: dict
) -> None:
    names = [unique_name("rdy"), unique_name("rdy")]
    op = OscarDeployServiceOperator(
        task_id="deploy", definition=fdl(*names), poll_interval=0.05, deferrable=False
    )
    assert op.execute(ctx) == dict.fromkeys(names, "created")
    with httpx.Client(base_url=slow_oscar.endpoint, auth=admin_auth(slow_oscar)) as admin:
        for name in names:
            assert admin.get(f"/system/services/{name}/deployment").json()["state"] == "ready"


@pytest.mark.usefixtures("on_slow_oscar")
def test_deploy_fails_when_a_service_is_not_ready_within_the_timeout(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    op = OscarDeployServiceOperator(
        task_id="deploy",
        definition=service(unique_name("rdy")),
        ready_timeout=0.2,
        poll_interval=0.05,
        deferrable=False,
    )
    with pytest.raises(AirflowException, match=r"not ready within 0\.2 s"):
        op.execute(ctx)


def test_deploy_fails_on_a_failed_deployment_and_logs_its_deployment_logs(
    on_slow_oscar: OscarLocal,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
    ctx: dict,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("bad")
    fail_deployment(on_slow_oscar, monkeypatch, name)
    op = OscarDeployServiceOperator(task_id="deploy", definition=service(name), deferrable=False)
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):
        op.execute(ctx)
    assert CRASH_LOG in capsys.readouterr().out


# waiting for readiness in the triggerer --------------------------------------------------


@pytest.mark.usefixtures("on_slow_oscar")
def test_deferrable_deploy_defers_to_the_first_service_not_yet_ready(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    names = [unique_name("rdy"), unique_name("rdy")]
    op = OscarDeployServiceOperator(
        task_id="deploy", definition=fdl(*names), ready_timeout=30, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, OscarServiceReadyTrigger)
    assert trigger.service_name == names[0]
    assert trigger.oscar_conn_id == "oscar_default"
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {
        "applied": dict.fromkeys(names, "created"),
        "pending": names[1:],
        "deadline": trigger.deadline,
    }
    assert timedelta(seconds=29) < deferred.value.timeout <= timedelta(seconds=30)


@pytest.mark.usefixtures("on_slow_oscar")
async def test_deferred_deploy_returns_the_applied_services_once_ready(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    name = unique_name("rdy")
    op = OscarDeployServiceOperator(
        task_id="deploy", definition=service(name), poll_interval=0.05, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert await resume(op, ctx, deferred.value) == {name: "created"}


@pytest.mark.usefixtures("on_slow_oscar")
def test_resumed_deploy_defers_again_for_a_pending_service_not_yet_ready(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    ready, pending = unique_name("rdy"), unique_name("rdy")
    OscarDeployServiceOperator(
        task_id="create", definition=service(pending), wait_for_ready=False
    ).execute(ctx)
    op = OscarDeployServiceOperator(task_id="deploy", definition={}, deferrable=True)
    applied = {ready: "created", pending: "created"}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete(
            ctx,
            event={"status": "success", "service": ready},
            applied=applied,
            pending=[pending],
            deadline=9e9,
        )
    assert deferred.value.trigger.service_name == pending
    assert deferred.value.kwargs == {"applied": applied, "pending": [], "deadline": 9e9}


async def test_deferred_deploy_fails_on_a_failed_deployment(
    on_slow_oscar: OscarLocal,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
    ctx: dict,
) -> None:
    name = unique_name("bad")
    op = OscarDeployServiceOperator(
        task_id="deploy", definition=service(name), poll_interval=0.05, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    fail_deployment(on_slow_oscar, monkeypatch, name)
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):
        await resume(op, ctx, deferred.value)


@pytest.mark.usefixtures("on_slow_oscar")
async def test_deferred_deploy_fails_when_the_trigger_times_out(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    op = OscarDeployServiceOperator(
        task_id="deploy",
        definition=service(unique_name("rdy")),
        ready_timeout=0.3,
        poll_interval=0.05,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    with pytest.raises(AirflowException, match="is not ready: deployment is pending"):
        await resume(op, ctx, deferred.value)


# deleting --------------------------------------------------------------------------------


@pytest.mark.usefixtures("on_oscar")
def test_delete_removes_the_service(
    admin: httpx.Client, deploy: Callable[..., dict], ctx: dict
) -> None:
    name = deploy("true\n")["name"]
    assert OscarDeleteServiceOperator(task_id="delete", service_name=name).execute(ctx) is True
    assert admin.get(f"/system/services/{name}").status_code == 404


@pytest.mark.usefixtures("on_oscar")
def test_delete_of_a_missing_service_succeeds_by_default(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    op = OscarDeleteServiceOperator(task_id="delete", service_name=unique_name("gone"))
    assert op.execute(ctx) is False


@pytest.mark.usefixtures("on_oscar")
def test_delete_of_a_missing_service_fails_when_it_must_exist(
    unique_name: Callable[[str], str], ctx: dict
) -> None:
    name = unique_name("gone")
    op = OscarDeleteServiceOperator(task_id="delete", service_name=name, missing_ok=False)
    with pytest.raises(AirflowFailException, match=f"service '{name}' does not exist"):
        op.execute(ctx)
