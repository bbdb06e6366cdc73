"""Hub-style services on the embedded OSCAR: the AI4OS dashboard's contract, finding services by
hub module, and deploying OSCAR Hub crates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest

from airflow_provider_oscar.deepaas import DeepaasFile, deepaas_document
from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.hub import find_service
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.service import OscarDeployServiceOperator
from airflow_provider_oscar.results import Prediction, decode_prediction
from tests.helpers import png, wait_until

ROOT = Path(__file__).resolve().parents[2]
LEAF = png(8, 8, (40, 160, 60))
PETAL = png(8, 8, (220, 60, 120))


def ask(hook: OscarHook, name: str, picture: bytes, file_name: str = "leaf.png") -> Prediction:
    document = deepaas_document({"files": DeepaasFile(file_name, picture)})
    response = hook.run_service(name, document)
    assert response.status_code == 200
    return decode_prediction(response.body, source=name)


# --- the dashboard's contract ------------------------------------------------------------------


def test_a_dashboard_deployment_is_named_and_described_as_the_dashboard_does(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    stored = dashboard("My plants")

    assert stored["name"].startswith("ai4papi-") and len(stored["name"]) == 39
    assert stored["environment"]["variables"]["PAPI_TITLE"] == "My plants"
    assert stored["image"] == "ai4oshub/plants-classification"
    assert [stored["input"][0]["path"], stored["output"][0]["path"]] == [
        f"{stored['name']}/inputs",
        f"{stored['name']}/outputs",
    ]


def test_a_synchronous_call_answers_the_models_top_five_the_same_for_the_same_picture(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]
    hook = OscarHook()

    first, again, other = ask(hook, name, LEAF), ask(hook, name, LEAF), ask(hook, name, PETAL)

    assert first.ok and len(first.labels) == 5
    assert sum(first.probabilities) < 1
    assert (again.labels, again.probabilities) == (first.labels, first.probabilities)
    assert other.labels != first.labels


def test_a_raw_picture_is_not_what_a_dashboard_deployment_reads(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]

    response = OscarHook().run_service(name, LEAF)

    assert response.status_code == 200  # the script exits 0 after the traceback
    assert b"Traceback (most recent call last)" in response.body
    assert b"return: {" not in response.body


def test_a_file_format_the_model_refuses_comes_back_as_its_error(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]

    prediction = ask(OscarHook(), name, LEAF, file_name="leaf.gif")

    assert prediction.status == "error"
    assert "Local image format error" in (prediction.message or "")


def test_a_json_upload_to_the_input_folder_writes_the_answer_and_the_log(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]
    storage = OscarStorageHook()
    document = deepaas_document({"files": DeepaasFile("leaf.png", LEAF)})

    storage.upload_bytes(f"{name}/inputs/leaf.json", json.dumps(document).encode())

    def outputs() -> list[str]:
        return sorted(o.key for o in storage.list_objects(f"{name}/outputs/"))

    wait_until(lambda: len(outputs()) == 2, timeout=30)
    keys = outputs()
    assert keys == ["outputs/leaf.json", "outputs/leaf.log"]
    answer = json.loads(storage.download_bytes(f"{name}/outputs/leaf.json"))  # strict JSON
    assert answer == {"status": "OK", **_lists(ask(OscarHook(), name, LEAF))}
    assert b"New output is" in storage.download_bytes(f"{name}/outputs/leaf.log")


def test_an_upload_that_is_not_json_leaves_only_the_log(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]
    storage = OscarStorageHook()

    storage.upload_bytes(f"{name}/inputs/leaf.png", LEAF)

    keys = wait_until(
        lambda: sorted(o.key for o in storage.list_objects(f"{name}/outputs/")) or None,
        timeout=30,
    )
    assert keys == ["outputs/leaf.log"]
    assert b"UnicodeDecodeError" in storage.download_bytes(f"{name}/outputs/leaf.log")


def test_a_job_with_the_document_logs_the_same_answer(
    dashboard: Callable[..., dict[str, Any]],
) -> None:
    name = dashboard()["name"]
    hook = OscarHook()

    hook.submit_job(name, deepaas_document({"files": DeepaasFile("leaf.png", LEAF)}))

    [job] = wait_until(
        lambda: [j for j, info in hook.list_jobs(name).items() if info.finished], timeout=30
    )
    logs = hook.get_job_logs(name, job)
    assert logs is not None
    assert decode_prediction(logs).labels == ask(hook, name, LEAF).labels


def _lists(prediction: Prediction) -> dict[str, list[Any]]:
    return {"labels": list(prediction.labels), "probabilities": list(prediction.probabilities)}


# --- finding a service by its hub module -------------------------------------------------------


def test_a_hub_module_resolves_to_the_one_service_running_it(
    dashboard: Callable[..., dict[str, Any]], unique_name: Callable[[str], str]
) -> None:
    module = unique_name("plants")
    mine = dashboard("Leaves of my garden", image=f"ai4oshub/{module}:latest")["name"]
    titled = dashboard(unique_name("Titled"), image="someone/custom-classifier")
    hook = OscarHook()

    assert find_service(hook, hub_module=module).name == mine
    title = titled["environment"]["variables"]["PAPI_TITLE"]
    assert find_service(hook, hub_module=title.upper()).name == titled["name"]
    assert find_service(hook, service_name=mine).image == f"ai4oshub/{module}:latest"


def test_no_service_or_several_for_a_hub_module_fail_listing_the_candidates(
    dashboard: Callable[..., dict[str, Any]], unique_name: Callable[[str], str]
) -> None:
    module = unique_name("plants")
    hook = OscarHook()
    with pytest.raises(OscarClientError, match=f"no service you can see runs hub module '{module}"):
        find_service(hook, hub_module=module)
    first = dashboard(image=f"ai4oshub/{module}")["name"]
    second = dashboard(image=f"ai4oshub/{module}")["name"]

    with pytest.raises(OscarClientError, match="2 services run hub module") as several:
        find_service(hook, hub_module=module)
    assert first in str(several.value) and second in str(several.value)
    with pytest.raises(OscarClientError, match="does not exist"):
        find_service(hook, service_name=unique_name("missing"))


# --- OSCAR Hub crates --------------------------------------------------------------------------


def test_the_deploy_operator_deploys_a_crate_from_a_local_oscar_hub_folder(
    oscar_default: OscarLocal, admin: httpx.Client, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("cowsay")
    operator = OscarDeployServiceOperator(
        task_id="deploy",
        hub_service="cowsay",
        hub_local_path=str(ROOT / "example_dags" / "services"),
        service_name=name,
    )
    try:
        assert operator.execute({"ti": MagicMock()}) == {name: "created"}
        stored = admin.get(f"/system/services/{name}").json()
        assert stored["script"] == (ROOT / "example_dags/services/cowsay/cowsay.sh").read_text()
        answer = OscarHook().run_service(name, {"message": "moo from the hub"})
        assert b"moo from the hub" in answer.body
    finally:
        admin.delete(f"/system/services/{name}")


def test_the_deploy_operator_takes_a_definition_or_a_crate_not_both() -> None:
    with pytest.raises(ValueError, match="exactly one of definition and hub_service"):
        OscarDeployServiceOperator(task_id="d", definition="x.yaml", hub_service="cowsay")
    with pytest.raises(ValueError, match="service_name renames a hub_service"):
        OscarDeployServiceOperator(task_id="d", definition="x.yaml", service_name="y")
