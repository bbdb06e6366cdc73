"""Operators and the readiness sensor on hub services: hub_module, input_format, warm_up."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

import httpx
import pytest
import structlog.testing
from airflow.sdk import Context

from airflow_provider_oscar.compat import AirflowFailException
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.batch import OscarBatchInvokeOperator
from airflow_provider_oscar.operators.ensemble import model_names
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator, OscarSubmitJobOperator
from airflow_provider_oscar.operators.service import OscarRestoreMinScaleOperator
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor
from airflow_provider_oscar.warmup import MIN_SCALE_LABEL
from tests.helpers import png

LEAF, PETAL = png(6, 6, (30, 140, 50)), png(6, 6, (200, 40, 90))
Deploy = Callable[..., dict[str, Any]]
pytestmark = pytest.mark.usefixtures("oscar_default")


def context(map_index: int = -1) -> Context:
    ti = SimpleNamespace(
        dag_id="hub_operators",
        run_id=f"manual__{uuid.uuid4()}",
        task_id="classify",
        map_index=map_index,
        try_number=1,
        xcom_push=MagicMock(),
    )
    return cast(Context, {"ti": ti})


@pytest.fixture
def pictures(oscar_default: OscarLocal) -> dict[str, str]:
    """Two pictures in a bucket, one of them without an extension."""
    storage, prefix = OscarStorageHook(), f"hub-pictures/{uuid.uuid4().hex[:8]}"
    paths = {"leaf": f"{prefix}/leaf.png", "petal": f"{prefix}/petal"}
    storage.upload_bytes(paths["leaf"], LEAF, create_bucket=True)
    storage.upload_bytes(paths["petal"], PETAL, create_bucket=True)
    return paths


@pytest.fixture
def deployed(dashboard: Deploy, unique_name: Callable[[str], str]) -> tuple[str, str]:
    """A module of its own (image ``ai4oshub/<module>``) deployed as the dashboard does:
    ``(module, service name)``."""
    module = unique_name("plants")
    return module, dashboard(image=f"ai4oshub/{module}")["name"]


# --- synchronous runs --------------------------------------------------------------------------


def test_a_hub_module_is_called_with_the_document_it_reads_when_the_format_is_auto(
    deployed: tuple[str, str], pictures: dict[str, str]
) -> None:
    hub, name = deployed

    result = OscarRunServiceOperator(
        task_id="classify", hub_module=hub, input_format="auto", input_object=pictures["leaf"]
    ).execute(context())

    assert (result["service"], result["hub_module"]) == (name, hub)
    assert result["input_object"] == pictures["leaf"] and result["oscar_conn_id"] == "oscar_default"
    assert result["prediction"]["status"] == "ok" and len(result["prediction"]["labels"]) == 5


def test_a_picture_without_extension_is_typed_by_its_content(
    dashboard: Deploy, pictures: dict[str, str]
) -> None:
    name = dashboard()["name"]

    operator = OscarRunServiceOperator(
        task_id="classify",
        service_name=name,
        input_format="deepaas",
        input_object=pictures["petal"],
    )

    result = operator.execute(context())

    assert result["input"] == "petal" and result["prediction"]["status"] == "ok"


def test_auto_sends_a_plain_service_its_input_as_it_is(deploy: Deploy) -> None:
    name = deploy('printf "got: "; cat "$INPUT_FILE_PATH"\n')["name"]

    result = OscarRunServiceOperator(
        task_id="run", service_name=name, input_format="auto", input_data="hello", decode="text"
    ).execute(context())

    assert result["text"] == "got: hello"


def test_a_raw_picture_to_a_dashboard_deployment_fails_naming_the_traceback(
    dashboard: Deploy, pictures: dict[str, str]
) -> None:
    name = dashboard()["name"]
    operator = OscarRunServiceOperator(
        task_id="classify", service_name=name, input_object=pictures["leaf"], decode="prediction"
    )

    with pytest.raises(AirflowFailException, match="UnicodeDecodeError"):
        operator.execute(context())


def test_an_input_that_cannot_be_typed_or_a_colliding_argument_fails_naming_the_input(
    dashboard: Deploy,
) -> None:
    name = dashboard()["name"]
    untyped = OscarRunServiceOperator(
        task_id="c", service_name=name, input_format="deepaas", input_data=b"notes", input_id="n1"
    )
    clash = OscarRunServiceOperator(
        task_id="c",
        service_name=name,
        input_format="deepaas",
        input_data=LEAF,
        deepaas_arguments={"files": "other"},
    )

    with pytest.raises(AirflowFailException, match="input 'n1': the data has no file name"):
        untyped.execute(context())
    with pytest.raises(AirflowFailException, match="'files' is given both as the file"):
        clash.execute(context())


def test_a_model_error_is_recorded_with_its_message_for_the_ensemble(
    dashboard: Deploy, oscar_default: OscarLocal
) -> None:
    name = dashboard()["name"]
    storage = OscarStorageHook()
    storage.upload_bytes("hub-pictures/leaf.gif", b"GIF89a....", create_bucket=True)

    result = OscarRunServiceOperator(
        task_id="classify",
        service_name=name,
        input_format="deepaas",
        input_object="hub-pictures/leaf.gif",
        on_error="record",
    ).execute(context())

    assert result["prediction"]["status"] == "error"
    assert "Local image format error" in result["prediction"]["message"]


def test_the_operator_warms_a_cold_service_before_its_call(deploy: Deploy, tmp_path: Path) -> None:
    marker = tmp_path / "up"
    script = (
        f'echo call >> "{marker}.calls"\n'
        f'if [ ! -f "{marker}" ]; then sleep 1; touch "{marker}"; fi\n'
        'cat "$INPUT_FILE_PATH"\n'
    )
    name = deploy(script)["name"]

    result = OscarRunServiceOperator(
        task_id="run", service_name=name, input_data="real call", decode="text", warm_up="call"
    ).execute(context())

    assert result["text"] == "real call"
    assert (tmp_path / "up.calls").read_text().splitlines() == ["call", "call"]


def test_min_scale_is_raised_for_one_call_and_put_back(deploy: Deploy, admin: httpx.Client) -> None:
    name = deploy("echo hi\n", synchronous={"min_scale": 0, "max_scale": 2})["name"]

    OscarRunServiceOperator(
        task_id="run", service_name=name, input_data="x", decode="text", warm_up="min_scale"
    ).execute(context())

    stored = admin.get(f"/system/services/{name}").json()
    assert stored["synchronous"]["min_scale"] == 0 and MIN_SCALE_LABEL not in stored["labels"]


def test_operators_refuse_a_service_and_a_module_together_or_neither() -> None:
    with pytest.raises(ValueError, match="exactly one of service_name and hub_module"):
        OscarRunServiceOperator(task_id="a", service_name="s", hub_module="m", input_data="x")
    with pytest.raises(ValueError, match="exactly one of service_name and hub_module"):
        OscarSubmitJobOperator(task_id="a", input_data="x")
    with pytest.raises(ValueError, match="input_format must be one of"):
        OscarBatchInvokeOperator(task_id="a", service_name="s", inputs=[], input_format="b64")
    with pytest.raises(ValueError, match="warm_up must be"):
        OscarServiceReadySensor(task_id="a", service_name="s", warm_up="hot")  # type: ignore[arg-type]


# --- asynchronous runs -------------------------------------------------------------------------


def test_a_bucket_upload_to_a_hub_module_reads_the_json_answer_and_logs_the_console(
    deployed: tuple[str, str], pictures: dict[str, str]
) -> None:
    hub, name = deployed
    sync = OscarRunServiceOperator(
        task_id="c", hub_module=hub, input_format="auto", input_object=pictures["leaf"]
    ).execute(context())
    operator = OscarSubmitJobOperator(
        task_id="classify",
        hub_module=hub,
        input_format="auto",
        input_object=pictures["leaf"],
        via="bucket",
        poll_interval=0.1,
        timeout=60,
        deferrable=False,
    )

    with structlog.testing.capture_logs() as logs:
        result = operator.execute(context())

    assert result["service"] == name and result["hub_module"] == hub
    assert sorted(o.rsplit(".", 1)[1] for o in result["outputs"]) == ["json", "log"]
    assert all(o.startswith(f"{name}/outputs/") for o in result["outputs"])
    assert result["prediction"]["labels"] == sync["prediction"]["labels"]
    console = [e for e in logs if str(e["event"]).startswith("OSCAR output")]
    assert console and "New output is" in str(console[0]["event"])


def test_a_job_to_a_hub_module_decodes_the_answer_from_the_jobs_log(
    deployed: tuple[str, str], pictures: dict[str, str]
) -> None:
    hub, _ = deployed

    result = OscarSubmitJobOperator(
        task_id="classify",
        hub_module=hub,
        input_format="auto",
        input_object=pictures["leaf"],
        poll_interval=0.1,
        timeout=60,
        deferrable=False,
    ).execute(context())

    assert result["prediction"]["status"] == "ok" and result["hub_module"] == hub


# --- readiness, warm-up ------------------------------------------------------------------------


def test_the_sensor_finds_a_hub_module_and_warms_it_with_a_call(
    deployed: tuple[str, str],
) -> None:
    hub, name = deployed
    sensor = OscarServiceReadySensor(
        task_id="ready", hub_module=hub, warm_up="call", poke_interval=0.05, timeout=30
    )

    deployment = sensor.execute(context())

    assert sensor.service_name == name
    assert deployment["warm_up"]["warm_up"] == "call"
    assert deployment["warm_up"]["status_code"] == 200


def test_the_sensor_keeps_a_pod_up_and_the_teardown_puts_min_scale_back(
    deployed: tuple[str, str], admin: httpx.Client
) -> None:
    hub, name = deployed
    sensor = OscarServiceReadySensor(
        task_id="ready", hub_module=hub, warm_up="min_scale", poke_interval=0.05, timeout=30
    )

    deployment = sensor.execute(context())
    raised = admin.get(f"/system/services/{name}").json()
    restored = OscarRestoreMinScaleOperator(task_id="cool", hub_module=hub).execute(context())

    assert deployment["warm_up"] == {"warm_up": "min_scale", "service": name, "min_scale_before": 0}
    assert deployment["active_instances"] >= 1
    assert raised["synchronous"]["min_scale"] == 1 and raised["labels"][MIN_SCALE_LABEL] == "0"
    assert restored is True
    assert admin.get(f"/system/services/{name}").json()["synchronous"]["min_scale"] == 0


# --- the batch operator ------------------------------------------------------------------------


def test_the_batch_operator_sends_each_picture_as_a_document_to_the_hub_module(
    deployed: tuple[str, str], pictures: dict[str, str]
) -> None:
    hub, name = deployed

    result = OscarBatchInvokeOperator(
        task_id="batch",
        hub_module=hub,
        input_format="auto",
        input_objects=[pictures["leaf"], pictures["petal"]],
        concurrency=2,
    ).execute(context())

    assert (result["service"], result["hub_module"], result["succeeded"]) == (name, hub, 2)
    assert [r["prediction"]["status"] for r in result["results"]] == ["ok", "ok"]
    assert model_names([{**result, "cluster": "c"}]) == [hub]
