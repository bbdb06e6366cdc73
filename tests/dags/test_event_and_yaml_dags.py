"""The event-driven and the declarative example DAGs, end to end on the embedded OSCAR.

``dag.test()`` has no triggerer and no scheduler, so an asset-scheduled DAG is run this way:
the DAG's own ``AssetWatcher`` trigger runs against the embedded OSCAR and reports real uploads;
its events are registered exactly as the triggerer registers them
(``AssetManager.register_asset_change`` with ``extra={"from_trigger": True, "payload": ...}``)
and attached to the run ``dag.test()`` creates, as the scheduler attaches the events that
triggered an asset-scheduled run. The tasks then read them from ``triggering_asset_events``
through the ordinary Task SDK path.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
from airflow.sdk import Asset
from airflow.sdk.module_loading import import_string

from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.triggers.events import OscarBucketEventTrigger

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
PLANTS = EXAMPLES / "services" / "plants"
TRUTH = json.loads((PLANTS / "specimens" / "truth.json").read_text())


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> DagBag:
    return DagBag(str(EXAMPLES))


@pytest.fixture
def classifiers(oscar_default: OscarLocal) -> OscarLocal:
    """The three plant classifiers, deployed on ``oscar_default``."""
    OscarHook().apply_service(PLANTS / "plants.yaml")
    return oscar_default


def _watched(dag: Any) -> Asset:
    """The one Asset a DAG is scheduled on."""
    (asset,) = dag.timetable.asset_condition.objects
    assert isinstance(asset, Asset)
    return asset


@contextlib.contextmanager
def consuming(events: Mapping[Asset, list[dict[str, Any]]]) -> Iterator[None]:
    """Make the run ``dag.test()`` creates consume asset events with these extras."""
    import airflow.models.dagrun as dagrun_module
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    create = dagrun_module.get_or_create_dagrun

    def create_consuming(**kwargs: Any) -> Any:
        run = create(**kwargs)
        session = kwargs["session"]
        for asset, extras in events.items():
            model = session.scalar(
                select(AssetModel).where(AssetModel.name == asset.name, AssetModel.uri == asset.uri)
            )
            assert model is not None, f"{asset} is not in the metadata database"
            for extra in extras:
                event = AssetManager.register_asset_change(
                    asset=model.to_serialized(), extra=extra, session=session
                )
                assert event is not None
                run.consumed_asset_events.append(event)
        session.commit()
        return run

    with mock.patch.object(dagrun_module, "get_or_create_dagrun", create_consuming):
        yield


def _asset_events(asset: Asset, run_id: str) -> list[dict[str, Any]]:
    """The extras of the events a run's tasks emitted on ``asset``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == asset.uri, AssetEvent.source_run_id == run_id)
        )
        return [dict(row.extra or {}) for row in rows]


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value"
        )
        return XComModel.deserialize_value(session.scalars(query).one())


async def _events_for_uploads(
    trigger: OscarBucketEventTrigger, upload: Any, count: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Run the watcher's trigger, upload once it has its baseline, collect ``count`` events."""
    classpath, kwargs = trigger.serialize()
    fast = import_string(classpath)(**{**kwargs, "poll_interval": 0.05})
    storage = OscarStorageHook()
    payloads: list[dict[str, Any]] = []

    async def pump() -> None:
        async for event in fast.run():
            payloads.append(event.payload)

    task = asyncio.create_task(pump())
    try:
        deadline = time.monotonic() + timeout
        while await storage.astat(fast.cursor) is None:  # the baseline is recorded
            assert time.monotonic() < deadline, "the watcher never recorded its baseline"
            await asyncio.sleep(0.02)
        upload()
        while len(payloads) < count:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, f"events so far: {payloads}"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return payloads


# --------------------------------------------------------------------------- event-driven


def test_the_upload_dag_is_scheduled_on_a_watched_asset_and_publishes_an_oscar_asset(
    dagbag: DagBag,
) -> None:
    dag = dagbag.get_dag("oscar_plant_on_upload")
    inbox = _watched(dag)
    assert inbox.name == "oscar_plant_inbox"
    (watcher,) = inbox.watchers
    assert isinstance(watcher.trigger, OscarBucketEventTrigger)
    assert watcher.trigger.path == "plants-inbox/uploads/"
    (outlet,) = dag.get_task("write_consensus").outlets
    assert outlet.uri == "oscar://oscar_default/plants-inbox/uploads"
    digest = dagbag.get_dag("oscar_plant_consensus_digest")
    assert _watched(digest) == outlet


def _example(name: str) -> Any:
    """An example DAG file, imported as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_uploads_of_reads_each_object_once_from_the_trigger_payloads() -> None:
    uploads_of = _example("oscar_plant_on_upload").uploads_of
    events = [
        mock.Mock(extra={"from_trigger": True, "payload": {"path": "b/x.json"}}),
        mock.Mock(extra={"from_trigger": True, "payload": {"path": "b/y.json"}}),
        mock.Mock(extra={"from_trigger": True, "payload": {"path": "b/x.json"}}),
        mock.Mock(extra={}),
    ]
    assert uploads_of(events) == ["b/x.json", "b/y.json"]


def test_an_upload_runs_the_composite_classification_and_its_consensus_lands_next_to_it(
    dagbag: DagBag, airflow_db: None, classifiers: OscarLocal
) -> None:
    dag = dagbag.get_dag("oscar_plant_on_upload")
    inbox = _watched(dag)
    storage = OscarStorageHook()
    if not storage.get_client().bucket_exists("plants-inbox"):
        storage.get_client().make_bucket("plants-inbox")
    folder = f"plants-inbox/uploads/{uuid.uuid4().hex[:8]}"
    specimens = ["specimen-010", "specimen-110"]

    def upload() -> None:
        for name in specimens:
            data = (PLANTS / "specimens" / f"{name}.json").read_bytes()
            storage.upload_bytes(f"{folder}/{name}.json", data)

    payloads = asyncio.run(_events_for_uploads(inbox.watchers[0].trigger, upload, 2))
    paths = [f"{folder}/{name}.json" for name in specimens]
    assert sorted(p["path"] for p in payloads) == paths

    with consuming({inbox: [{"from_trigger": True, "payload": p} for p in payloads]}):
        run = dag.test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}

    for name, path in zip(specimens, paths, strict=True):
        consensus = json.loads(storage.download_bytes(f"{path}.consensus.json"))
        assert consensus["input"] == path
        assert consensus["winner"] == TRUTH[name]
        assert consensus["models"] == ["plants-sepal", "plants-petal-length", "plants-petal-width"]
        assert consensus["missing_models"] == []
    consensus_asset = dag.get_task("write_consensus").outlets[0]
    (published,) = _asset_events(consensus_asset, run.run_id)
    assert published["objects"] == [f"{p}.consensus.json" for p in paths]
    assert published["uris"] == [f"oscar://oscar_default/{p}.consensus.json" for p in paths]

    digest = dagbag.get_dag("oscar_plant_consensus_digest")
    with consuming({consensus_asset: [published]}):
        digest_run = digest.test()
    assert digest_run.state == "success"
    assert _xcom(digest_run, "consensus_digest") == {
        f"{path}.consensus.json": TRUTH[name] for name, path in zip(specimens, paths, strict=True)
    }


# --------------------------------------------------------------------------- declarative

# One specimen of each species, and a virginica that two of the three models take for versicolor.
SUBSET = ["specimen-010", "specimen-060", "specimen-110", "specimen-135"]
AGGREGATION = ("method", "weights", "top_k", "missing", "floor", "rrf_k", "num_classes")


def _python_calls(dag: Any) -> list[dict[str, Any]]:
    """The keyword arguments of every ``classify`` call the Python DAG maps."""
    return list(dag.get_task("classify").expand_input.value)


def _python_ensemble(dag: Any, specimens: list[str]) -> dict[str, Any]:
    """The Python DAG's own ``classify`` and ``aggregate`` tasks, executed for ``specimens``."""
    from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
    from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator

    context: dict[str, Any] = {"ti": mock.MagicMock()}
    results = [
        OscarRunServiceOperator(task_id=f"classify_{n}", **kwargs).execute(context)
        for n, kwargs in enumerate(_python_calls(dag))
        if kwargs["input_id"] in specimens
    ]
    aggregate = dag.get_task("aggregate")
    return OscarEnsembleOperator(
        task_id="aggregate_subset",
        results=results,
        **{name: getattr(aggregate, name) for name in AGGREGATION},
        min_models=aggregate.min_models,
        abstain=aggregate.abstain,
        truth={k: v for k, v in aggregate.truth.items() if k in specimens},
    ).execute(context)


def test_the_yaml_and_python_plant_ensembles_declare_the_same_calls_and_aggregation(
    dagbag: DagBag,
) -> None:
    python = dagbag.get_dag("oscar_plant_ensemble_soft_vote")
    declared = dagbag.get_dag("oscar_plant_ensemble_yaml")
    planned = declared.get_task("plan_calls").python_callable(params={"inputs": []})
    assert {
        (c["service_name"], c["input_id"], str(Path(c["input_path"]).resolve())) for c in planned
    } == {
        (c["service_name"], c["input_id"], str(Path(c["input_path"]).resolve()))
        for c in _python_calls(python)
    }
    assert len(planned) == 120 and {c["oscar_conn_id"] for c in planned} == {"oscar_default"}
    ours, theirs = declared.get_task("aggregate"), python.get_task("aggregate")
    for name in (*AGGREGATION, "min_models", "abstain", "truth", "trigger_rule"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert declared.get_task("classify").partial_kwargs["retries"] == 2


def test_the_yaml_and_python_plant_ensembles_agree_on_every_winner_and_score(
    dagbag: DagBag, airflow_db: None, classifiers: OscarLocal
) -> None:
    run = dagbag.get_dag("oscar_plant_ensemble_yaml").test(run_conf={"inputs": SUBSET})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    declared = _xcom(run, "aggregate")
    python = _python_ensemble(dagbag.get_dag("oscar_plant_ensemble_soft_vote"), SUBSET)

    assert declared["models"] == python["models"]
    assert [i["input"] for i in declared["inputs"]] == SUBSET
    for ours, theirs in zip(declared["inputs"], python["inputs"], strict=True):
        assert ours["input"] == theirs["input"]
        assert ours["winner"] == theirs["winner"]
        assert ours["top_k"]["labels"] == theirs["top_k"]["labels"]
        assert ours["top_k"]["scores"] == pytest.approx(theirs["top_k"]["scores"])
        assert ours["abstained"] == theirs["abstained"]
    assert declared["accuracy"]["ensemble"] == python["accuracy"]["ensemble"]
    report_key = f"plants-reports/oscar_plant_ensemble_yaml/{run.run_id.replace(':', '_')}.json"
    assert json.loads(OscarStorageHook().download_bytes(report_key))["inputs"] == declared["inputs"]
