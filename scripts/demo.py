"""``make demo``: the plant ensemble DAG on an embedded OSCAR, with its results table.

Starts an embedded OSCAR on loopback, points ``oscar_default`` at it, prepares a throw-away
Airflow home (SQLite), runs ``oscar_plant_ensemble`` with ``dag.test()`` and prints each
specimen's per-model and consensus labels and the accuracies.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "oscar_plant_ensemble"


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


def _table(report: dict) -> str:
    models = report["models"]
    truth = report.get("truth", {})
    short = {m: m.removeprefix("plants-") for m in models}
    header = ["specimen", "truth", *short.values(), "ensemble", "score", ""]
    rows = []
    for item in report["inputs"]:
        top1 = {p["model"]: (p["labels"] or ["(missing)"])[0] for p in item["provenance"]}
        known = truth.get(item["input"], "?")
        mark = "ok" if item["winner"] == known else "WRONG"
        if item["abstained"]:
            mark += " (abstained)"
        name = lambda label: label.removeprefix("Iris ")  # noqa: E731
        rows.append(
            [
                item["input"],
                name(known),
                *(name(top1.get(m, "-")) for m in models),
                name(item["winner"]),
                f"{item['top_k']['scores'][0]:.3f}",
                mark,
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    accuracy = report["accuracy"]
    lines.append("")
    lines.append(f"held-out specimens: {accuracy['inputs']}")
    for model, value in accuracy["models"].items():
        lines.append(f"  {model:<24} accuracy {value:.3f}")
    mean = sum(accuracy["models"].values()) / len(accuracy["models"])
    lines.append(f"  {'mean of the models':<24} accuracy {mean:.3f}")
    lines.append(f"  {'ensemble (soft vote)':<24} accuracy {accuracy['ensemble']:.3f}")
    lines.append(
        f"  coverage {accuracy['coverage']:.3f}, accuracy where it did not abstain "
        f"{accuracy['selective_accuracy']:.3f}"
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
        run = dag.test()
        elapsed = time.monotonic() - run_start
        if run.state != "success":
            print(f"{DAG_ID} ended {run.state}", file=sys.stderr)
            return 1
        report_key = f"plants-reports/{DAG_ID}/{run.run_id.replace(':', '_')}.json"
        report = json.loads(OscarStorageHook().download_bytes(report_key))
    print()
    print(_table(report))
    print(f"\nDAG run {elapsed:.1f} s (set-up included: {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
