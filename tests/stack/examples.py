"""Every example DAG the drills do not run, run at once on the stack, as a user would.

Each gets what it needs first, through the clusters' own APIs: specimens in the daily inbox, a
stand-in for ``ai4oshub/plants-classification`` and two images for the real-cluster DAG, and for
the event-driven DAG an upload once its bucket watcher has taken its baseline. The manually
triggered DAGs run on a few specimens (their params); the event-driven one is triggered by the
upload; the digest DAG by the consensus it publishes.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_oscar.triggers.cursor import CURSOR_FOLDER
from tests.stack.session import StackSession

ROOT = Path(__file__).resolve().parents[2]
PLANTS = ROOT / "example_dags" / "services" / "plants"
#: One specimen of each species (the ensembles' params take them by id).
SUBSET = ["specimen-010", "specimen-060", "specimen-110"]
DAILY_INBOX = "plants-inbox/specimens/"
UPLOADS = "plants-inbox/uploads/"
IMAGES = ["plants-images/ivy.jpg", "plants-images/rose.png"]
#: The stand-in's hub module: a name of its own, as the stack's OSCARs also host the Iris
#: examples, whose image is ai4oshub/plants-classification (one module, one service).
REAL_MODULE = "plants-classification-standin"
REAL_SERVICE = REAL_MODULE
#: The answer of the stand-in: the shape of the service's legacy wrapper (top 5 as dict of lists).
REAL_ANSWER = (
    '{"status": "OK", "predictions": {"labels": ["Hedera helix", "Rosa canina", '
    '"Bellis perennis", "Taraxacum officinale", "Quercus robur"], '
    '"probabilities": [0.62, 0.14, 0.08, 0.05, 0.03]}}'
)
REAL_SCRIPT = f"#!/bin/sh\ncat > \"$TMP_OUTPUT_DIR/output.json\" <<'EOF'\n{REAL_ANSWER}\nEOF\n"
MANUAL = {
    # Nobody answers its review of the doubtful specimens: they stay abstained after 1 s.
    "oscar_plant_ensemble": {"review_timeout_seconds": 1},
    "oscar_plant_ensemble_yaml": {"inputs": SUBSET},
    "oscar_plant_ensemble_two_clusters": {"specimens": SUBSET},
    "oscar_plant_daily": {},
    "oscar_plant_ensemble_real": {"hub_modules": [REAL_MODULE]},
}
ON_UPLOAD, DIGEST = "oscar_plant_on_upload", "oscar_plant_consensus_digest"
TIMEOUT = 300.0


@dataclass
class Examples:
    """The run of each example DAG and how it ended."""

    runs: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    upload: str = ""
    seconds: float = 0.0


def run_examples(session: StackSession) -> Examples:
    airflow = session.airflow
    began = time.monotonic()
    examples = Examples()
    airflow.wait_for_dags([*MANUAL, ON_UPLOAD, DIGEST])
    _prepare_daily_inbox(session)
    _prepare_real_cluster(session)
    for dag_id in (ON_UPLOAD, DIGEST):  # their watcher and schedule only work unpaused
        airflow.unpause(dag_id)
    for dag_id, conf in MANUAL.items():
        examples.runs[dag_id] = airflow.trigger(dag_id, conf)
    examples.upload = _upload_once_watched(session)
    while len(examples.states) < len(MANUAL) + 2:
        for dag_id in (ON_UPLOAD, DIGEST):
            if dag_id not in examples.runs and (runs := airflow.runs(dag_id)):
                examples.runs[dag_id] = runs[-1]["dag_run_id"]
        for dag_id, run_id in examples.runs.items():
            state = airflow.run(dag_id, run_id)["state"]
            if state in ("success", "failed"):
                examples.states.setdefault(dag_id, state)
        if time.monotonic() - began > TIMEOUT:
            raise TimeoutError(f"example runs unfinished after {TIMEOUT:.0f} s: {examples}")
        time.sleep(1)
    examples.seconds = time.monotonic() - began
    return examples


def _prepare_daily_inbox(session: StackSession) -> None:
    s3 = session.s3()
    bucket, prefix = DAILY_INBOX.split("/", 1)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    for name in SUBSET:
        data = (PLANTS / "specimens" / f"{name}.json").read_bytes()
        s3.put_object(bucket, f"{prefix}{name}.json", io.BytesIO(data), len(data))


def _prepare_real_cluster(session: StackSession) -> None:
    body = {"name": REAL_SERVICE, "image": f"ai4oshub/{REAL_MODULE}", "script": REAL_SCRIPT}
    with session.oscar() as oscar:
        response = oscar.post("/system/services", json=body)
        assert response.status_code == 201, response.text
    s3 = session.s3()
    for path in IMAGES:
        bucket, key = path.split("/", 1)
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
        data = b"\xff\xd8\xff\xe0 not really an image " + key.encode()
        s3.put_object(bucket, key, io.BytesIO(data), len(data))


def _upload_once_watched(session: StackSession, timeout: float = 90.0) -> str:
    """Upload a specimen once the watcher's cursor exists (its baseline); the object's path."""
    s3 = session.s3()
    bucket, prefix = UPLOADS.split("/", 1)
    deadline = time.monotonic() + timeout
    while not list(s3.list_objects(bucket, prefix=f"{CURSOR_FOLDER}/", recursive=True)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bucket watcher wrote no cursor in {bucket} in {timeout:.0f} s")
        time.sleep(1)
    name = f"{prefix}{uuid.uuid4().hex[:8]}-{SUBSET[0]}.json"
    data = (PLANTS / "specimens" / f"{SUBSET[0]}.json").read_bytes()
    s3.put_object(bucket, name, io.BytesIO(data), len(data))
    return f"{bucket}/{name}"


def report_of(session: StackSession, dag_id: str, run_id: str) -> dict[str, Any]:
    """The ``aggregate`` task's report (its XCom)."""
    report: dict[str, Any] = session.airflow.xcom(dag_id, run_id, "aggregate")
    return report
