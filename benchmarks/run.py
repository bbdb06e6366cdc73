"""``make bench``: run every benchmark in one process, print the table, save results.json
(``python -m benchmarks.run benchmarks.<module> ...`` runs some and updates only theirs)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks.figures import Figure, render, save

MODULES = [
    "benchmarks.local_run",
    "benchmarks.s3_front",
    "benchmarks.ensemble",
    "benchmarks.ensemble_peers",
    "benchmarks.fanout",
    "benchmarks.polling",
    "benchmarks.imports",
    "benchmarks.triggers_memory",
    "benchmarks.exactly_once",
    "benchmarks.stack_latency",
]
RESULTS = Path(__file__).with_name("results.json")


def main(names: list[str]) -> int:
    figures: list[Figure] = []
    for module in names or MODULES:
        print(f"running {module} ...", flush=True)
        figures += importlib.import_module(module).measure()
    print(render(figures))
    save(figures, RESULTS)
    print(f"saved {RESULTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
