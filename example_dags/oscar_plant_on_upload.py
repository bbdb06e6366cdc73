"""Event-driven composite classification: a specimen lands in a bucket, its consensus next to it.

``oscar_plant_on_upload`` is scheduled on the Asset ``oscar_plant_inbox``, which an
``AssetWatcher`` with :class:`~airflow_provider_oscar.triggers.events.OscarBucketEventTrigger`
keeps up to date: every new object under ``plants-inbox/uploads/`` on ``oscar_default`` becomes one
asset event (in the triggerer: no worker is held while waiting). Each run reads its triggering
events (Airflow may batch several uploads into one run), sends every uploaded specimen to the
three plant classifiers at once (one mapped task per specimen and model), combines their answers
by soft vote, and writes ``<key>.consensus.json`` next to each specimen. Those writes are
published on the ``oscar://<cluster>/plants-inbox/uploads`` Asset (``<cluster>``: the
connection's ``cluster_id``, or its id), so ``oscar_plant_consensus_digest`` (below) runs on the
results in turn.

Only changes schedule runs: objects already in the inbox when the watcher first starts are its
baseline, and results written into the inbox are excluded from the watch. A manual run with an
``objects`` param (``bucket/key`` list) classifies those objects instead, e.g. to re-process one.
Deploy the classifiers once beforehand (``oscar_plant_ensemble``, or
``oscar-cli apply services/plants/plants.yaml``); each run waits until they are ready.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Connection, Param, get_current_context, task

from airflow_provider_oscar.assets import create_asset, publish_objects
from airflow_provider_oscar.compat import AirflowFailException, AirflowNotFoundException
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.operators.ensemble import OscarEnsembleOperator
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator
from airflow_provider_oscar.sensors.oscar import OscarServiceReadySensor
from airflow_provider_oscar.triggers.events import OscarBucketEventTrigger

CONNECTION = "oscar_default"
BUCKET = "plants-inbox"
FOLDER = "uploads"
MODELS = ["plants-sepal", "plants-petal-length", "plants-petal-width"]
RESULT_SUFFIX = ".consensus.json"

log = logging.getLogger(__name__)


def cluster_of(conn_id: str) -> str:
    """How ``oscar://`` URIs name the connection's cluster: its ``cluster_id`` extra, else its id.

    Read where the DAG is parsed (the DAG processor, and the worker that runs a task), so the
    consensus asset and the events published on it name the same cluster.
    """
    try:
        cluster_id = Connection.get(conn_id).extra_dejson.get("cluster_id")
    except AirflowNotFoundException:
        log.warning("no connection %s where this DAG is parsed; naming its cluster so", conn_id)
        cluster_id = None
    return str(cluster_id or conn_id).lower()


CLUSTER = cluster_of(CONNECTION)
INBOX = Asset(
    "oscar_plant_inbox",
    watchers=[
        AssetWatcher(
            name="oscar_plant_inbox_uploads",
            trigger=OscarBucketEventTrigger(
                path=f"{BUCKET}/{FOLDER}/",
                name="oscar_plant_on_upload",
                exclude=[f"*{RESULT_SUFFIX}"],
                oscar_conn_id=CONNECTION,
                poll_interval=15,
            ),
        )
    ],
)
# Named by its URI, which names the cluster: one asset per cluster the connection points at.
CONSENSUS = create_asset(cluster=CLUSTER, bucket=BUCKET, key=FOLDER)


def result_path(path: str) -> str:
    """Where the consensus of the specimen ``bucket/key`` goes: next to it."""
    return f"{path}{RESULT_SUFFIX}"


def uploads_of(events: Sequence[Any]) -> list[str]:
    """The ``bucket/key`` of each object the inbox's asset events report, once each, in order."""
    payloads = [(e.extra or {}).get("payload") or {} for e in events]
    return list(dict.fromkeys(p["path"] for p in payloads if p.get("path")))


@task
def uploaded_specimens(
    triggering_asset_events: Mapping[Any, Sequence[Any]] | None = None,
) -> list[str]:
    """The objects to classify: those of the triggering uploads (or the ``objects`` param)."""
    requested = list(get_current_context()["params"]["objects"])
    if requested:
        log.info("classifying the %d objects given in the run's params", len(requested))
        return list(dict.fromkeys(requested))
    events = list((triggering_asset_events or {}).get(INBOX, []))
    paths = uploads_of(events)
    log.info("%d asset events name %d new specimens: %s", len(events), len(paths), paths)
    if not paths:
        raise AirflowFailException("no triggering upload and no 'objects' param: nothing to do")
    return paths


@task
def plan_calls(paths: list[str]) -> list[dict[str, str]]:
    """One ``classify`` call per (specimen, model); the input id is the object's path."""
    return [
        {"service_name": model, "input_object": path, "input_id": path}
        for path in paths
        for model in MODELS
    ]


@task(outlets=[CONSENSUS])
def write_consensus(report: dict[str, Any]) -> list[str]:
    """Write each specimen's consensus next to it, and publish the objects as asset events."""
    storage = OscarStorageHook(CONNECTION)
    written = []
    for item in report["inputs"]:
        document = {
            "input": item["input"],
            "winner": item["winner"],
            "top_k": item["top_k"],
            "abstained": item["abstained"],
            "missing_models": item["missing_models"],
            "method": report["method"],
            "models": report["models"],
        }
        path = result_path(item["input"])
        storage.upload_bytes(
            path, json.dumps(document, indent=2).encode(), content_type="application/json"
        )
        written.append(path)
    publish_objects(get_current_context(), written, cluster=CLUSTER)
    log.info("wrote %s", written)
    return written


with DAG(
    dag_id="oscar_plant_on_upload",
    description="Classify each specimen uploaded to a bucket with three models, as it arrives",
    schedule=[INBOX],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Every task calls OSCAR: a lost worker or a cluster hiccup costs seconds, not minutes.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params={
        "objects": Param(
            [],
            type="array",
            items={"type": "string"},
            description="bucket/key objects to classify instead of the triggering uploads",
        )
    },
    tags=["oscar", "composite-ai", "event-driven", "example"],
    doc_md=__doc__,
) as dag:
    ready = OscarServiceReadySensor.partial(
        task_id="classifiers_ready",
        oscar_conn_id=CONNECTION,
        poke_interval=10,
        timeout=600,
        mode="reschedule",
    ).expand(service_name=MODELS)
    paths = uploaded_specimens()
    classify = OscarRunServiceOperator.partial(
        task_id="classify",
        oscar_conn_id=CONNECTION,
        map_index_template="{{ task.service_name }} · {{ task.input_object }}",
        on_error="record",
    ).expand_kwargs(plan_calls(paths))
    aggregate = OscarEnsembleOperator(
        task_id="aggregate",
        results=classify.output,
        method="soft_vote",
        top_k=3,
        min_models=2,
        abstain={"min_margin": 0.1},
        oscar_conn_id=CONNECTION,
        trigger_rule="all_done",
    )
    ready >> classify
    write_consensus(aggregate.output)


@task
def consensus_digest(
    triggering_asset_events: Mapping[Any, Sequence[Any]] | None = None,
) -> dict[str, str]:
    """The winner of each consensus object the triggering asset events name."""
    storage = OscarStorageHook(CONNECTION)
    winners = {}
    for event in (triggering_asset_events or {}).get(CONSENSUS, []):
        for path in (event.extra or {}).get("objects", []):
            winners[path] = json.loads(storage.download_bytes(path))["winner"]
    log.info("new consensus results: %s", winners)
    return winners


with DAG(
    dag_id="oscar_plant_consensus_digest",
    description="Runs on the consensus results oscar_plant_on_upload publishes as an Asset",
    schedule=[CONSENSUS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["oscar", "event-driven", "example"],
) as digest_dag:
    consensus_digest()
