"""The ensemble variants: two clusters (one lost mid-run), real output shapes, a daily schedule."""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pendulum
import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
from airflow.sdk import DAG
from airflow.sdk.definitions.mappedoperator import MappedOperator

from airflow_provider_oscar.hooks.api import RunResponse
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.faults import Drop
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.results import decode_prediction

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
PLANTS = EXAMPLES / "services" / "plants"
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width"]
# One specimen of each species, and a virginica that two of the three models take for versicolor.
SPECIMENS = ["specimen-010", "specimen-060", "specimen-110", "specimen-135"]


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> DagBag:
    return DagBag(str(EXAMPLES))


def _xcom(run: Any, task_id: str) -> Any:
    """The ``return_value`` of an unmapped task of a finished ``dag.test()`` run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value"
        )
        return XComModel.deserialize_value(session.scalars(query).one())


def _states(run: Any, task_id: str) -> list[str]:
    return sorted(ti.state for ti in run.get_task_instances() if ti.task_id == task_id)


def test_the_variant_dags_import_with_their_tasks_and_params(dagbag: DagBag) -> None:
    assert not {f: e for f, e in dagbag.import_errors.items() if "ensemble_" in f or "daily" in f}
    tasks = {
        dag_id: {t.task_id for t in dagbag.get_dag(dag_id).tasks}
        for dag_id in (
            "oscar_plant_ensemble_two_clusters",
            "oscar_plant_ensemble_real",
            "oscar_plant_daily",
        )
    }
    assert tasks["oscar_plant_ensemble_two_clusters"] >= {"deploy_classifiers", "aggregate"}
    assert tasks["oscar_plant_ensemble_real"] >= {"service_ready", "classify", "aggregate"}
    assert tasks["oscar_plant_daily"] == {"classifier_ready", "select_new_inputs", "classify"}
    real = dagbag.get_dag("oscar_plant_ensemble_real")
    assert set(real.params) == {"connections", "services", "images", "image_prefix"}
    daily = dagbag.get_dag("oscar_plant_daily")
    assert daily.schedule == "@daily"
    assert daily.catchup is False


# --------------------------------------------------------------------------- two clusters


@pytest.fixture(scope="module")
def second_oscar() -> Iterator[OscarLocal]:
    """A second embedded OSCAR, with its own S3 store: it shares nothing with the first."""
    with OscarLocal() as server:
        yield server


def _connection(server: OscarLocal, cluster_id: str) -> str:
    connection = json.loads(server.connection_json())
    connection["extra"]["cluster_id"] = cluster_id
    return json.dumps(connection)


@pytest.fixture
def two_clusters(
    oscar: OscarLocal, second_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OscarLocal]:
    """``oscar_default`` is cluster ``alpha``, ``oscar_second`` cluster ``beta`` (returned)."""
    assert second_oscar.s3.endpoint != oscar.s3.endpoint
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", _connection(oscar, "alpha"))
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_SECOND", _connection(second_oscar, "beta"))
    yield second_oscar
    second_oscar.faults.clear()


def _run_two_clusters(dagbag: DagBag) -> Any:
    dag = dagbag.get_dag("oscar_plant_ensemble_two_clusters")
    return dag.test(run_conf={"specimens": SPECIMENS})


def _by_model(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["model"]: p for p in item["provenance"]}


def test_two_cluster_ensemble_combines_all_six_models_for_every_specimen(
    dagbag: DagBag, airflow_db: None, two_clusters: OscarLocal
) -> None:
    run = _run_two_clusters(dagbag)

    assert run.state == "success"
    assert _states(run, "classify") == ["success"] * 6 * len(SPECIMENS)
    for conn_id in ("oscar_default", "oscar_second"):
        assert {s.name for s in OscarHook(conn_id).list_services()} >= set(MODELS)
    report = _xcom(run, "aggregate")
    models = [f"{cluster}/{model}" for cluster in ("alpha", "beta") for model in MODELS]
    assert sorted(report["models"]) == sorted(models)
    assert sorted(item["input"] for item in report["inputs"]) == SPECIMENS
    for item in report["inputs"]:
        assert item["missing_models"] == []
        answers = _by_model(item)
        assert {p["status"] for p in answers.values()} == {"ok"}
        for model in MODELS:  # the same model gives the same answer on either cluster
            assert answers[f"alpha/{model}"]["labels"] == answers[f"beta/{model}"]["labels"]
    assert report["accuracy"]["inputs"] == len(SPECIMENS)


def test_two_cluster_ensemble_still_agrees_on_every_specimen_when_one_cluster_is_lost(
    dagbag: DagBag, airflow_db: None, two_clusters: OscarLocal
) -> None:
    # beta's API still deploys, but every call to /run/ loses its connection mid-answer.
    two_clusters.faults.add(Drop(route="/run/", count=-1))

    run = _run_two_clusters(dagbag)

    calls = [ti for ti in run.get_task_instances() if ti.task_id == "classify"]
    assert {ti.state for ti in calls} == {"success"}  # failures are recorded, not raised
    assert _states(run, "deploy_classifiers") == ["success", "success"]
    assert _states(run, "aggregate") == ["success"]
    report = _xcom(run, "aggregate")
    lost = [f"beta/{model}" for model in MODELS]
    assert sorted(item["input"] for item in report["inputs"]) == SPECIMENS
    assert report["incomplete"] == len(SPECIMENS)
    for item in report["inputs"]:
        assert sorted(item["missing_models"]) == sorted(lost)
        answers = _by_model(item)
        assert {answers[m]["status"] for m in lost} == {"error"}
        assert all("/run/" in answers[m]["message"] for m in lost)
        assert {answers[f"alpha/{m}"]["status"] for m in MODELS} == {"ok"}
        assert item["winner"] == item["top_k"]["labels"][0]
    winners = {item["input"]: item["winner"] for item in report["inputs"]}
    assert winners["specimen-010"] == TRUTH["specimen-010"]
    assert winners["specimen-060"] == TRUTH["specimen-060"]


# --------------------------------------------------------------------------- real output shapes

IMAGE = "plants-images/garden/ivy-0001.jpg"
JPEG = b"\xff\xd8\xff\xe0 a JPEG"
IVY_CULTIVAR = "Hedera helix 'Goldheart'"  # an apostrophe, as cultivar names have
# Per wrapper: what it answers (top 5 of ~10,000 species, sums < 1) and how the body carries it.
ANSWERS: dict[str, tuple[list[str], list[float]]] = {
    "flat-json": (
        ["Hedera helix", IVY_CULTIVAR, "Hedera hibernica", "Parthenocissus quinquefolia",
         "Cymbalaria muralis"],
        [0.61, 0.12, 0.09, 0.03, 0.02],
    ),
    "legacy-nested": (
        ["Hedera hibernica", "Hedera helix", "Hedera colchica", IVY_CULTIVAR,
         "Cymbalaria muralis"],
        [0.41, 0.38, 0.05, 0.04, 0.01],
    ),
    "older-list": (
        ["Hedera helix", "Hedera hibernica", "Hedera colchica", "Fatsia japonica",
         "Parthenocissus quinquefolia"],
        [0.52, 0.21, 0.06, 0.02, 0.02],
    ),
    "python-repr": (
        [IVY_CULTIVAR, "Hedera helix", "Hedera hibernica", "Hedera algeriensis",
         "Cymbalaria muralis"],
        [0.44, 0.31, 0.08, 0.05, 0.01],
    ),
    "zipped": (
        ["Hedera helix", "Hedera hibernica", IVY_CULTIVAR, "Fatsia japonica",
         "Hedera colchica"],
        [0.57, 0.18, 0.07, 0.03, 0.02],
    ),
    "logged-base64": (
        ["Hedera helix", "Hedera hibernica", "Hedera algeriensis", IVY_CULTIVAR,
         "Parthenocissus tricuspidata"],
        [0.48, 0.27, 0.06, 0.05, 0.03],
    ),
}  # fmt: skip
SUPERVISOR_LOGS = "".join(
    f"2026-05-04 09:36:53,123 - supervisor - INFO - {line}\n"
    for line in (
        "SUPERVISOR: Initializing Binary supervisor",
        "INPUT_FILE_PATH variable set to '/tmp/tmpk2x/event-file-0c6e7a'",
        "Script file found in '/oscar/config/script.sh'",
        "Creating response",
    )
)


def _flat(service: str) -> dict[str, Any]:
    labels, probabilities = ANSWERS[service]
    return {"status": "OK", "labels": labels, "probabilities": probabilities}


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _real_bodies() -> dict[str, bytes]:
    """The synchronous body each wrapper of oscar.md §8.4 sends for its answer."""
    legacy_labels, legacy_probabilities = ANSWERS["legacy-nested"]
    legacy = {
        "status": "OK",
        "predictions": {
            "labels": legacy_labels,
            "probabilities": legacy_probabilities,
            "labels_info": [""] * 5,
            "links": {"Google Images": ["https://g/"] * 5, "Wikipedia": ["https://w/"] * 5},
        },
    }
    older = {
        "status": "ok",
        "predictions": [
            {
                "label_id": index,
                "label": label,
                "probability": probability,
                "info": {"links": {"Google images": "https://g/"}, "metadata": ""},
            }
            for index, (label, probability) in enumerate(zip(*ANSWERS["older-list"], strict=True))
        ],
    }
    repr_file = (repr(_flat("python-repr")) + "\n").encode()
    assert IVY_CULTIVAR in repr_file.decode() and "'status'" in repr_file.decode()
    return {
        # console text (a script that leaves no file): strict JSON, current flat schema
        "flat-json": (json.dumps(_flat("flat-json")) + "\n").encode(),
        # plant-classification-sync: base64 of event-file-<uuid>.json, legacy dict of lists
        "legacy-nested": _b64(json.dumps(legacy).encode()),
        # older DEEP images printing their list of dicts, after the supervisor's log lines
        "older-list": (SUPERVISOR_LOGS + json.dumps(older) + "\n").encode(),
        # hub crate, sync: base64 of output_event-file-<uuid>.json holding the Python repr
        "python-repr": _b64(repr_file),
        # several output files: base64 of a zip with the one .json among them
        "zipped": _b64(
            _zip(
                {
                    "output_event-file-1b2c.json": repr(_flat("zipped")).encode(),
                    "top5.png": b"\x89PNG\r\n\x1a\n",
                }
            )
        ),
        # log_level INFO: supervisor log lines, then base64 of the single output file
        "logged-base64": SUPERVISOR_LOGS.encode()
        + _b64(json.dumps(_flat("logged-base64")).encode()),
    }


@pytest.fixture
def real_cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """``oscar_default`` is a real cluster (``egi``) whose services answer with the real shapes;
    returns the body by service (nothing goes over the network)."""
    connection = {"conn_type": "oscar", "host": "https://oscar.example.org", "login": "u",
                  "password": "p", "extra": {"cluster_id": "egi"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps(connection))
    bodies = _real_bodies()
    bodies["broken-image"] = _b64(b"{'status': 'error', 'message': \"can't read the image\"}")

    def run_service(hook: OscarHook, name: str, data: Any, **kwargs: Any) -> RunResponse:
        assert data == JPEG
        return RunResponse(200, bodies[name], "text/plain")

    monkeypatch.setattr(OscarHook, "run_service", run_service)
    monkeypatch.setattr(OscarStorageHook, "download_bytes", lambda hook, path: JPEG)
    return bodies


def _classify(dag: DAG, service: str) -> dict[str, Any]:
    """One call of the real DAG's ``classify`` task, as the DAG maps it."""
    classify = dag.get_task("classify")
    assert isinstance(classify, MappedOperator)
    assert classify.operator_class is OscarRunServiceOperator
    operator = OscarRunServiceOperator(
        task_id="classify",
        decode=classify.partial_kwargs["decode"],
        on_error=classify.partial_kwargs["on_error"],
        service_name=service,
        input_object=IMAGE,
        input_id=IMAGE,
    )
    return operator.execute(context={"ti": MagicMock()})


def test_every_real_output_shape_decodes_to_the_same_answer_and_joins_the_consensus(
    dagbag: DagBag, real_cluster: dict[str, bytes]
) -> None:
    dag = dagbag.get_dag("oscar_plant_ensemble_real")
    services = list(ANSWERS)
    for service in services:  # the DAG's tasks decode exactly as results.decode_prediction does
        decoded = decode_prediction(real_cluster[service], source=service)
        assert (list(decoded.labels), list(decoded.probabilities)) == ANSWERS[service]
    results = [_classify(dag, service) for service in services]
    assert [r["prediction"]["labels"] for r in results] == [ANSWERS[s][0] for s in services]
    failure = _classify(dag, "broken-image")  # recorded as this model's answer, not raised
    assert failure["prediction"]["status"] == "error"
    assert "can't read the image" in failure["prediction"]["message"]
    aggregate = dag.get_task("aggregate")
    operator = OscarEnsembleOperator(
        task_id="aggregate",
        results=[*results, failure],
        **{k: getattr(aggregate, k) for k in ("method", "top_k", "missing", "min_models")},
        abstain=aggregate.abstain,
    )
    report = operator.execute(context={})

    assert (aggregate.top_k, aggregate.missing) == (5, "zero")
    assert report["models"] == [*services, "broken-image"]
    [item] = report["inputs"]
    assert item["input"] == IMAGE
    assert item["missing_models"] == ["broken-image"]
    scores: dict[str, float] = {}
    for labels, probabilities in ANSWERS.values():  # zero-fill soft vote over the six answers
        for label, probability in zip(labels, probabilities, strict=True):
            scores[label] = scores.get(label, 0.0) + probability / len(ANSWERS)
    expected = sorted(scores, key=scores.__getitem__, reverse=True)[:5]
    assert item["top_k"]["labels"] == expected
    assert item["top_k"]["scores"] == pytest.approx([scores[label] for label in expected])
    assert item["winner"] == "Hedera helix"
    assert item["top_k"]["support"][expected.index(IVY_CULTIVAR)] == 5
    residuals = {p["model"]: p["residual"] for p in item["provenance"]}
    for service, (_, probabilities) in ANSWERS.items():
        assert residuals[service] == pytest.approx(1 - sum(probabilities))


# --------------------------------------------------------------------------- daily schedule


def _upload_specimens(storage: OscarStorageHook, inbox: str, names: list[str]) -> list[datetime]:
    for name in names:
        data = (PLANTS / "specimens" / f"{name}.json").read_bytes()
        storage.upload_bytes(f"{inbox}{name}.json", data, create_bucket=True)
    return [o.last_modified for o in storage.list_objects(inbox) if o.last_modified is not None]


def _objects(storage: OscarStorageHook, inbox: str) -> dict[str, tuple[str, bytes]]:
    """Every object under ``inbox``: key → (etag, content)."""
    return {
        o.key: (o.etag, storage.download_bytes(f"{o.bucket}/{o.key}"))
        for o in storage.list_objects(inbox)
    }


def _top_label(storage: OscarStorageHook, path: str) -> str:
    return decode_prediction(storage.download_bytes(path)).labels[0]


def _interval_containing(moment: datetime) -> pendulum.DateTime:
    """The logical date ``dag.test`` needs for the daily interval holding ``moment``.

    For a manual run dag.test infers the interval that ends at the logical date.
    """
    return pendulum.instance(moment).in_tz("UTC").start_of("day").add(days=1)


@pytest.fixture
def inbox(oscar_default: OscarLocal) -> str:
    """A fresh inbox prefix with the classifiers deployed."""
    OscarHook().apply_service(PLANTS / "plants.yaml")
    return f"plants-inbox/{uuid.uuid4().hex[:8]}/"


def test_daily_run_classifies_what_arrived_in_its_interval_once_and_reruns_change_nothing(
    dagbag: DagBag, airflow_db: None, inbox: str
) -> None:
    storage = OscarStorageHook()
    names = ["specimen-005", "specimen-075", "specimen-145"]
    arrived = _upload_specimens(storage, inbox, names)
    logical_date = _interval_containing(min(arrived))
    assert all(logical_date - timedelta(days=1) <= t < logical_date for t in arrived)
    dag = dagbag.get_dag("oscar_plant_daily")

    first = dag.test(logical_date=logical_date, run_conf={"inbox": inbox})

    assert first.state == "success"
    after_first = _objects(storage, inbox)
    prefix = inbox.split("/", 1)[1]
    assert sorted(after_first) == sorted(
        f"{prefix}{n}.json{suffix}" for n in names for suffix in ("", ".prediction.json")
    )
    for name in names:
        assert _top_label(storage, f"{inbox}{name}.json.prediction.json") == TRUTH[name]

    again = dag.test(logical_date=logical_date, run_conf={"inbox": inbox})

    assert again.state == "success"
    assert _states(again, "classify") == ["skipped"]
    assert _objects(storage, inbox) == after_first


def test_daily_run_leaves_inputs_outside_its_interval_alone(
    dagbag: DagBag, airflow_db: None, inbox: str
) -> None:
    storage = OscarStorageHook()
    arrived = _upload_specimens(storage, inbox, ["specimen-050"])
    day_before = _interval_containing(arrived[0]) - timedelta(days=1)

    run = dagbag.get_dag("oscar_plant_daily").test(
        logical_date=day_before, run_conf={"inbox": inbox}
    )

    assert run.state == "success"
    assert _states(run, "classify") == ["skipped"]
    assert list(_objects(storage, inbox)) == [inbox.split("/", 1)[1] + "specimen-050.json"]


def test_daily_run_without_interval_classifies_every_input_without_a_result(
    dagbag: DagBag, airflow_db: None, inbox: str
) -> None:
    storage = OscarStorageHook()
    _upload_specimens(storage, inbox, ["specimen-020", "specimen-100"])
    kept = b'{"status": "OK", "labels": ["kept"], "probabilities": [1.0]}'
    storage.upload_bytes(f"{inbox}specimen-020.json.prediction.json", kept)

    run = dagbag.get_dag("oscar_plant_daily").test(logical_date=None, run_conf={"inbox": inbox})

    assert run.state == "success"
    assert run.data_interval_start is None
    classified = [
        ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id == "classify"
    ]
    assert classified == [f"{inbox}specimen-100.json"]
    assert _top_label(storage, f"{inbox}specimen-020.json.prediction.json") == "kept"
    assert _top_label(storage, f"{inbox}specimen-100.json.prediction.json") == TRUTH["specimen-100"]


# --------------------------------------------------------------------------- human review


def _answer_review_through_the_api(
    dag_id: str, labels: dict[str, str], answered: dict[str, Any], stop: threading.Event
) -> None:
    """Act as a reviewer: wait for the review request of ``dag_id`` in Airflow's public REST API
    (``GET /api/v2/dags/{dag}/dagRuns/~/hitlDetails``), then answer it (``PATCH .../hitlDetails``)
    with ``labels`` for the inputs it asks about."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        while not stop.wait(0.5):
            listed = client.get(f"/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails")
            waiting = [
                d for d in listed.json().get("hitl_details", []) if not d["response_received"]
            ]
            if not waiting:
                continue
            detail = waiting[0]
            ti = detail["task_instance"]
            answered["asked"] = sorted(detail["params"])
            answered["body"] = detail["body"]
            response = client.patch(
                f"/api/v2/dags/{dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                f"{ti['task_id']}/{ti['map_index']}/hitlDetails",
                json={
                    "chosen_options": detail["options"],
                    "params_input": {i: labels.get(i, "abstain") for i in detail["params"]},
                },
            )
            answered["status"] = response.status_code
            answered["response"] = response.json()
            return


def test_a_reviewer_answering_through_the_rest_api_labels_the_doubtful_specimens(
    dagbag: DagBag, airflow_db: None, oscar_default: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    dag = dagbag.get_dag("oscar_plant_ensemble")
    answered: dict[str, Any] = {}
    stop = threading.Event()
    labels = {"specimen-071": "Iris versicolor", "specimen-139": "Iris virginica"}
    reviewer = threading.Thread(
        target=_answer_review_through_the_api,
        args=("oscar_plant_ensemble", labels, answered, stop),
        daemon=True,
    )
    reviewer.start()
    try:
        run = dag.test(run_conf={"review_timeout_seconds": 600})
    finally:
        stop.set()
        reviewer.join()
    assert run.state == "success"
    assert answered["status"] == 200, answered
    assert answered["response"]["responded_by"]["name"]  # who answered is recorded
    # the request listed every doubtful specimen, each model's answer and the consensus
    report = _xcom(run, "aggregate")
    doubts = sorted(item["input"] for item in report["inputs"] if item["abstained"])
    assert answered["asked"] == doubts and set(labels) <= set(doubts)
    assert "| input | plants-sepal | plants-petal-length |" in answered["body"]
    outcome = _xcom(run, "review_doubts")
    assert outcome["timed_out"] is False and outcome["reviewed"] == 2
    for name in doubts:
        review = outcome["reviews"][name]
        if name in labels:
            assert (review["label"], review["status"]) == (labels[name], "reviewed")
            assert review["by"] == answered["response"]["responded_by"]["name"]
        else:
            assert review == {"label": None, "status": "abstained", "by": None, "at": None}
    # the report object in the bucket carries the reviews too, per input
    saved = json.loads(OscarStorageHook().download_bytes(report["report_object"]))
    reviewed = {i["input"]: i["review"]["label"] for i in saved["inputs"] if "review" in i}
    assert reviewed == {name: labels.get(name) for name in doubts}
    # and the calibration was cross-validated: fold f's specimens pooled by a fit without f
    calibration = report["calibration"]
    assert calibration["source"] == "fitted" and calibration["in_sample"] is False
    assert set(calibration["folds"]) == {"0", "1", "2", "3", "4"}
    folds = {
        s["specimen"]: s["fold"]
        for s in json.loads((PLANTS / "specimens" / "iris.json").read_text())
    }
    assert all(item["fold"] == folds[item["input"]] for item in report["inputs"])
