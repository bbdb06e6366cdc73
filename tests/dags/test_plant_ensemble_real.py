"""``oscar_plant_ensemble_real`` end to end on embedded OSCARs hosting hub-style services.

The services are deployed as the AI4OS dashboard deploys a module (``ai4papi-<uuid>``,
``PAPI_TITLE``, the dashboard's script) with the stand-in model; the DAG runs unchanged, finding
them by hub module. Each test names its own module (image ``ai4oshub/<module>``): the session's
OSCAR also hosts the Iris examples, whose FDL names the image ``ai4oshub/plants-classification``.
The pictures are PNGs the tests make.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.results import decode_prediction
from example_dags.services.deepaas import papi
from tests.helpers import png, return_values
from tests.ui.plugin_client import plugin_client

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
COLOURS = {"ivy": (30, 110, 40), "poppy": (210, 30, 30), "daisy": (240, 240, 230)}


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> DagBag:
    return DagBag(str(EXAMPLES))


@pytest.fixture
def module() -> str:
    return f"plants-{uuid.uuid4().hex[:8]}"


def _conf(prefix: str, module: str, **changes: Any) -> dict[str, Any]:
    """A whole run configuration (``dag.test`` keeps what a run set in the DAG's params)."""
    return {
        "connections": ["oscar_default"],
        "hub_modules": [module],
        "images": [],
        "image_prefix": prefix,
        "via": "run",
        "warm_up": True,
        **changes,
    }


def _deploy(server: OscarLocal, module: str) -> str:
    definition = papi.service_definition(module, image=f"ai4oshub/{module}", cpu=0.2, memory_mb=256)
    with httpx.Client(base_url=server.endpoint, auth=(server.user, server.password)) as admin:
        response = admin.post("/system/services", json=definition)
    assert response.status_code == 201, response.text
    return str(definition["name"])


def _delete(server: OscarLocal, name: str) -> None:
    with httpx.Client(base_url=server.endpoint, auth=(server.user, server.password)) as admin:
        admin.delete(f"/system/services/{name}")


@pytest.fixture
def clusters(
    oscar_default: OscarLocal,
    oscar_at: Callable[[str], OscarLocal],
    monkeypatch: pytest.MonkeyPatch,
    module: str,
) -> Iterator[dict[str, tuple[OscarLocal, str]]]:
    """Two clusters (OSCAR 4.1 ``alpha`` and 4.0 ``beta``, sharing one S3 store), each with
    the module deployed as the dashboard does: ``{conn id: (server, service name)}``."""
    second = oscar_at("4.0")
    found = {}
    pairs = (("oscar_default", oscar_default, "alpha"), ("oscar_beta", second, "beta"))
    for conn_id, server, cluster_id in pairs:
        connection = json.loads(server.connection_json())
        connection["extra"]["cluster_id"] = cluster_id
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        found[conn_id] = (server, _deploy(server, module))
    yield found
    for server, name in found.values():
        _delete(server, name)


@pytest.fixture
def photographs(oscar_default: OscarLocal) -> tuple[str, dict[str, bytes]]:
    """Three pictures under a fresh prefix (and a note the DAG must leave out)."""
    prefix = f"plants-images/{uuid.uuid4().hex[:8]}/"
    storage = OscarStorageHook()
    pictures = {f"{prefix}{name}.png": png(12, 9, rgb) for name, rgb in COLOURS.items()}
    for key, data in pictures.items():
        storage.upload_bytes(key, data, create_bucket=True)
    storage.upload_bytes(f"{prefix}notes.txt", b"taken in the park")
    return prefix, pictures


def _runs(server: OscarLocal, name: str) -> int:
    assert server.cluster is not None
    return request_counts(server.cluster)[f"POST /run/{name}"]


def test_synchronous_calls_on_two_clusters_give_a_consensus_per_picture(
    dagbag: DagBag,
    clusters: dict[str, tuple[OscarLocal, str]],
    photographs: tuple[str, dict],
    module: str,
) -> None:
    prefix, pictures = photographs
    dag = dagbag.get_dag("oscar_plant_ensemble_real")
    before = {conn: _runs(server, name) for conn, (server, name) in clusters.items()}

    run = dag.test(run_conf=_conf(prefix, module, connections=list(clusters)))

    assert run.state == "success"
    calls = return_values(run, "classify")
    assert [c.get("error") for c in calls] == [None] * 2 * len(pictures)
    [report] = return_values(run, "aggregate")
    assert report["models"] == [f"alpha/{module}", f"beta/{module}"]
    assert sorted(item["input"] for item in report["inputs"]) == sorted(pictures)
    # each service ran once per picture, plus its warm-up call: counted where it happened
    for conn, (server, name) in clusters.items():
        assert _runs(server, name) - before[conn] == len(pictures) + 1
    ready = return_values(run, "service_ready")
    assert sorted(r["warm_up"]["status_code"] for r in ready) == [200, 200]
    server, name = clusters["oscar_default"]
    for item in report["inputs"]:  # the same model twice: the consensus is its own answer
        alone = _ask(name, pictures[item["input"]])
        assert item["top_k"]["labels"] == alone["labels"]
        assert item["missing_models"] == []
        assert item["top_k"]["support"] == [2] * 5
    assert report["pictures"] == {
        key: {"conn_id": "oscar_default", "object": key} for key in pictures
    }


def _ask(name: str, picture: bytes) -> dict[str, Any]:
    from airflow_provider_oscar.deepaas import DeepaasFile, deepaas_document

    document = deepaas_document({"files": DeepaasFile("p.png", picture)})
    prediction = decode_prediction(OscarHook().run_service(name, document).body)
    return {"labels": list(prediction.labels), "probabilities": list(prediction.probabilities)}


def test_bucket_uploads_give_the_same_consensus_and_leave_each_answer_and_log(
    dagbag: DagBag, oscar: OscarLocal, photographs: tuple[str, dict], module: str
) -> None:
    prefix, pictures = photographs
    name = _deploy(oscar, module)
    try:
        dag = dagbag.get_dag("oscar_plant_ensemble_real")
        run = dag.test(run_conf=_conf(prefix, module, via="bucket", warm_up=False))

        assert run.state == "success"
        [report] = return_values(run, "aggregate")
        assert report["models"] == [module]
        outputs = OscarStorageHook().list_objects(f"{name}/outputs/")
        assert Counter(o.key.rsplit(".", 1)[1] for o in outputs) == {"json": 3, "log": 3}
        for item in report["inputs"]:
            assert item["top_k"]["labels"] == _ask(name, pictures[item["input"]])["labels"]
        assert {s for s in (t.state for t in run.get_task_instances()) if s} >= {"success"}
    finally:
        _delete(oscar, name)


def test_no_service_running_the_module_leaves_every_model_missing_and_fails_clearly(
    dagbag: DagBag, photographs: tuple[str, dict]
) -> None:
    prefix, _ = photographs
    dag = dagbag.get_dag("oscar_plant_ensemble_real")

    run = dag.test(run_conf=_conf(prefix, "no-such-module"))

    assert run.state == "failed"
    states = {t.task_id: t.state for t in run.get_task_instances() if t.map_index in (-1, 0)}
    assert states["service_ready"] == "failed"


def test_the_results_page_shows_each_pictures_thumbnail(
    dagbag: DagBag,
    oscar: OscarLocal,
    photographs: tuple[str, dict],
    monkeypatch: pytest.MonkeyPatch,
    module: str,
) -> None:
    prefix, pictures = photographs
    name = _deploy(oscar, module)
    try:
        dag = dagbag.get_dag("oscar_plant_ensemble_real")
        run = dag.test(run_conf=_conf(prefix, module, warm_up=False))
        assert run.state == "success"
        key = sorted(pictures)[0]
        with plugin_client(monkeypatch) as (client, _):
            page = client.get(f"/results/{dag.dag_id}/{run.run_id}")
            picture = client.get(
                f"/results/{dag.dag_id}/{run.run_id}/picture",
                params={"task_id": "aggregate", "input": key},
            )
            unknown = client.get(
                f"/results/{dag.dag_id}/{run.run_id}/picture",
                params={"task_id": "aggregate", "input": f"{prefix}notes.txt"},
            )
    finally:
        _delete(oscar, name)

    assert page.status_code == 200 and page.text.count('class="thumb"') == len(pictures)
    assert picture.status_code == 200
    assert (picture.headers["content-type"], picture.content) == ("image/png", pictures[key])
    assert unknown.status_code == 404
