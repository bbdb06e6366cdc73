"""``make demo``: the plant ensemble DAG on an embedded OSCAR, with its cross-validated table.

Starts an embedded OSCAR on loopback, points ``oscar_default`` at it, prepares a throw-away
Airflow home (SQLite), runs ``oscar_plant_ensemble`` with ``dag.test()`` (the human review times
out after a few seconds: nobody is asked) and prints, per model and for the plain and the
calibrated ensemble, the cross-validated accuracy, log loss, Brier score and calibration error
with their bootstrap intervals, and where the ensemble wins and where it does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "oscar_plant_ensemble"
REVIEW_SECONDS = 3
METRICS = (
    ("accuracy", "accuracy", True),
    ("log_loss", "log loss", False),
    ("brier", "Brier", False),
)
METRICS += (("ece", "ECE", False),)


def _prepare_airflow(home: Path) -> None:
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )


@contextlib.contextmanager
def review_timeouts() -> Iterator[None]:
    """Let human-in-the-loop requests time out while ``dag.test()`` runs.

    From Airflow 3.3 a waiting review parks in ``awaiting_input`` and the scheduler's timeout
    sweep (``SchedulerJobRunner.check_awaiting_input_timeouts``) resolves it; ``dag.test()`` runs
    no scheduler, so this calls that sweep every half second. Before 3.3, ``dag.test()`` runs the
    review's trigger itself and this does nothing.
    """
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    sweep = getattr(SchedulerJobRunner, "check_awaiting_input_timeouts", None)
    if sweep is None:
        yield
        return
    stop = threading.Event()
    scheduler = SimpleNamespace(log=logging.getLogger("airflow.jobs.scheduler_job_runner"))

    def loop() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(Exception):  # a locked SQLite file: the next round retries
                sweep(scheduler)

    thread = threading.Thread(target=loop, name="review-timeouts", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _interval(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "-"
    if metric.get("low") is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _table(report: dict[str, Any]) -> str:
    evaluation, baseline = report["evaluation"], report["baseline"]
    fit = report["calibration"]["fit"]
    rows: list[tuple[str, dict[str, Any]]] = list(evaluation["models"].items())
    rows += [("soft vote, equal weights", baseline)]
    rows += [(f"calibrated ({fit['pool'].replace('_', '-')} pool)", evaluation["ensemble"])]
    header = ["", *(label for _, label, _ in METRICS)]
    cells = [[name, *(_interval(m.get(key)) for key, _, _ in METRICS)] for name, m in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *cells]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(evaluation["models"]) + 2, "")
    ci = round(100 * evaluation["confidence"])
    return "\n".join(
        [
            f"cross-validated over {evaluation['inputs']} specimens in 5 folds "
            f"(each scored by models and a calibration that never saw it); "
            f"[{ci} % bootstrap interval, {evaluation['bootstrap']} resamples]",
            "",
            *lines,
        ]
    )


def _verdict(report: dict[str, Any]) -> str:
    evaluation = report["evaluation"]
    ours = evaluation["ensemble"]
    lines = ["where the calibrated ensemble wins and where it does not:"]
    for key, label, higher in METRICS:
        values = {m: v[key]["value"] for m, v in evaluation["models"].items()}
        best = (max if higher else min)(values, key=values.__getitem__)
        mine, theirs = ours[key]["value"], values[best]
        if abs(mine - theirs) < 1e-12:
            word = "ties"
        elif (mine > theirs) == higher:
            word = "beats"
        else:
            word = "LOSES to"
        lines.append(
            f"  {label:<9} {mine:.3f} {word} the best model's {theirs:.3f} ({best})"
            + ("" if word != "LOSES to" else "  <- not better than one model here")
        )
    weights = {m: v["weight"] for m, v in report["calibration"]["fit"]["models"].items()}
    lines.append(
        "  learned weights (on all 150): "
        + ", ".join(f"{m} {w:.2f}" for m, w in weights.items())
        + f"; pooled temperature {report['calibration']['fit']['temperature']:.2f}"
    )
    return "\n".join(lines)


def _doubts(report: dict[str, Any]) -> str:
    truth, evaluation = report["truth"], report["evaluation"]["ensemble"]
    wrong = [i for i in report["inputs"] if i["winner"] != truth[i["input"]]]
    abstained = [i for i in report["inputs"] if i["abstained"]]
    reviews = (report.get("reviews") or {}).get("reviews") or {}
    lines = [
        f"abstained on {len(abstained)} specimens (margin below "
        f"{report['method']['abstain']['min_margin']}): coverage "
        f"{_interval(evaluation['coverage'])}, accuracy where it answered "
        f"{_interval(evaluation['selective_accuracy'])}",
    ]
    review = report.get("reviews") or {}
    if review:
        outcome = (
            f"nobody answered within {REVIEW_SECONDS} s, so they stay abstained"
            if review.get("timed_out")
            else f"{review.get('reviewed')} labelled by {review.get('responded_by')}"
        )
        lines.append(f"human review: {review.get('asked')} sent to Airflow's HITL; {outcome}")
    for item in sorted(
        {i["input"]: i for i in wrong + abstained}.values(), key=lambda i: i["input"]
    ):
        known, review = truth[item["input"]], reviews.get(item["input"]) or {}
        mark = "right" if item["winner"] == known else "WRONG"
        note = "abstained" if item["abstained"] else ""
        if review.get("status") == "reviewed":
            note += f", a person said {review['label']}"
        lines.append(
            f"  {item['input']}  truth {known:<16} ensemble {item['winner']:<16} "
            f"p={item['top_k']['scores'][0]:.2f}  {mark}  {note}"
        )
    return "\n".join(lines)


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="oscar-demo-airflow-"))
    _prepare_airflow(home)
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.utils import db

    from airflow_provider_oscar.hooks.storage import OscarStorageHook
    from airflow_provider_oscar.local.server import OscarLocal

    logging.getLogger("airflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.monotonic()
    print("preparing a throw-away Airflow database ...", flush=True)
    db.resetdb()
    with OscarLocal() as oscar:
        os.environ["AIRFLOW_CONN_OSCAR_DEFAULT"] = oscar.connection_json()
        print(f"embedded OSCAR at {oscar.endpoint}; running {DAG_ID} ...", flush=True)
        dag = DagBag(str(ROOT / "example_dags")).get_dag(DAG_ID)
        if dag is None:
            print(f"{DAG_ID} did not load", file=sys.stderr)
            return 1
        run_start = time.monotonic()
        with review_timeouts():
            run = dag.test(run_conf={"review_timeout_seconds": REVIEW_SECONDS})
        elapsed = time.monotonic() - run_start
        if run.state != "success":
            print(f"{DAG_ID} ended {run.state}", file=sys.stderr)
            return 1
        report_key = f"plants-reports/{DAG_ID}/{run.run_id.replace(':', '_')}.json"
        report = json.loads(OscarStorageHook().download_bytes(report_key))
    print()
    print(_table(report))
    print()
    print(_verdict(report))
    print()
    print(_doubts(report))
    print(f"\nDAG run {elapsed:.1f} s (set-up included: {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
