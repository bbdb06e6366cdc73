"""``make stack``: the production topology on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from stack.components import StackError
from stack.runner import Stack
from stack.settings import CLUSTERS, ROOT, USERNAME, StackSettings


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT / ".stack", help="the stack's folder")
    parser.add_argument("--port", type=int, default=8080, help="UI and REST API (default 8080)")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    parser.add_argument(
        "--dags",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="another folder of DAGs (a DAG bundle named after it), beside example_dags",
    )
    args = parser.parse_args(argv)

    # Ctrl-C and SIGTERM end the wait (or the start) with KeyboardInterrupt, even when started
    # in the background, which leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    folders = {f"dags-{folder.resolve().name}": folder.resolve() for folder in args.dags}
    settings = StackSettings(
        args.root, api_port=args.port, workers=args.workers, dag_folders=folders
    )
    stack = Stack(settings)
    print(f"starting the stack in {settings.root} (logs: {settings.logs}) ...", flush=True)
    try:
        stack.start()
    except (StackError, KeyboardInterrupt) as exc:
        print(f"the stack did not start: {exc}", file=sys.stderr)
        return 1
    try:
        clusters = "\n".join(
            f"  {conn_id:<13} {settings.oscar_endpoint(conn_id)} (cluster_id {cluster})"
            for conn_id, cluster in CLUSTERS.items()
        )
        print(
            f"\nThe stack is up after {stack.started_seconds:.0f} s:\n"
            f"  URL       {settings.api_url}\n"
            f"  login     {USERNAME} / {settings.password()}\n"
            f"  executor  CeleryExecutor, {settings.workers} workers; Postgres "
            f"127.0.0.1:{settings.ports.postgres}, Redis 127.0.0.1:{settings.ports.redis}\n"
            f"OSCAR connections (in every Airflow process's environment):\n{clusters}\n"
            "The DAGs start paused: unpause and trigger oscar_plant_ensemble to see ensemble\n"
            "results. Press Ctrl-C to stop everything.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the stack ...", flush=True)
    finally:
        stack.stop()
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
