"""``make mutation``: mutmut over the core modules, with a score per module.

Each module gets its own work folder (``.mutation/<module>/``): links to the package and the
tests, and a ``pyproject.toml`` whose ``[tool.mutmut]`` section mutates that module only and
runs its test selection (:mod:`benchmarks.mutation_modules`). mutmut keeps its results there,
so a second run retests only the functions that changed. The score is the share of mutants
killed (a timeout counts as killed, as mutmut counts it); mutants listed as equivalent in
``docs/mutation.md`` are left out of it. Scores are saved in ``benchmarks/mutation.json``
under a label (``--label before`` for a baseline; ``latest`` otherwise).

``--unit`` runs each module's unit tests only (``.mutation/<module>.unit/``): quick, and
free of the timing of the integration tests, some of which behave differently inside mutmut's
forked workers than under plain pytest.

    python -m benchmarks.mutation [MODULE ...] [--unit] [--label NAME] [--jobs N] [--report]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.mutation_modules import MODULES, Module

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
RESULTS = Path(__file__).with_name("mutation.json")
EQUIVALENTS = ROOT / "docs" / "mutation.md"
MUTMUT = Path(sys.executable).with_name("mutmut")
GOAL = 0.85
LINKED = ("airflow_provider_oscar", "tests", "example_dags", "docs")
# a test stuck on a mutant (a loop that no longer ends) fails after this many seconds
PYTEST_ARGS = ("-o", "timeout=90", "-p", "no:cacheprovider")
# mutmut's exit codes, as its `status_by_exit_code` reads them
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
_STATUS |= dict.fromkeys((36, 24, -24, 152, 255), "timeout")
_EQUIVALENT = re.compile(r"`(airflow_provider_oscar\.[^`\s]+__mutmut_\d+)`")
_SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] ")


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return json.dumps(list(values))  # a JSON list of plain strings is a TOML array


def prepare(name: str, module: Module) -> Path:
    """The module's work folder, with links to the sources and its own mutmut section."""
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = work / entry
        if not link.is_symlink():
            link.symlink_to(ROOT / entry)
    section = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["airflow_provider_oscar"]',
            f"only_mutate = {_toml_list(module.mutate)}",
            f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}",
            f"pytest_add_cli_args = {_toml_list(PYTEST_ARGS)}",
            f"also_copy = {_toml_list(['example_dags', 'docs'])}",
            "",
        ]
    )
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + section)
    return work


def run(name: str, module: Module, jobs: int | None) -> int:
    """mutmut's run over the module; its exit code."""
    work = prepare(name, module)
    children = min(filter(None, (jobs, module.jobs)), default=None)
    command = [str(MUTMUT), "run", *(["--max-children", str(children)] if children else [])]
    print(f"== {name}: {' '.join(command[1:])} (in {work.relative_to(ROOT)})", flush=True)
    with subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, text=True) as mutmut:
        assert mutmut.stdout is not None
        for line in mutmut.stdout:  # a spinner's frames come as one line: keep the last
            print(_SPINNER.split(line)[-1].rstrip(), flush=True)
    return mutmut.returncode


def equivalents() -> set[str]:
    """Mutants that ``docs/mutation.md`` lists as equivalent (each with its reason)."""
    if not EQUIVALENTS.exists():
        return set()
    return set(_EQUIVALENT.findall(EQUIVALENTS.read_text()))


def unit_only(module: Module) -> Module:
    """The module with its unit tests alone."""
    return replace(module, tests=tuple(t for t in module.tests if t.startswith("tests/unit")))


def score(name: str, module: Module, equivalent: set[str]) -> dict[str, Any]:
    """Counts by status and the score of the module's last run."""
    statuses: dict[str, str] = {}
    mutants = WORK / name / "mutants"
    for meta in sorted(mutants.rglob("*.py.meta")):
        source = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        if any(fnmatch.fnmatch(source, pattern) for pattern in module.mutate):
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            for mutant, code in codes.items():
                statuses[mutant] = _STATUS.get(code, "not checked" if code is None else "other")
    counts = Counter(statuses.values())
    listed = sorted(m for m, status in statuses.items() if m in equivalent and status != "killed")
    survivors = sorted(m for m, s in statuses.items() if s not in ("killed", "timeout", "skipped"))
    counted = len(statuses) - counts["skipped"] - len(listed)
    killed = counts["killed"] + counts["timeout"]
    return {
        "mutants": len(statuses),
        **{status: counts[status] for status in sorted(counts)},
        "equivalent": len(listed),
        "score": round(killed / counted, 4) if counted else None,
        "tests": "unit" if name.endswith(".unit") else "all",
        "survivors": [m for m in survivors if m not in equivalent],
    }


def render(scores: dict[str, dict[str, Any]]) -> str:
    rows = [("module", "mutants", "killed", "survived", "no tests", "equivalent", "score", "met")]
    for name, s in scores.items():
        value = s["score"]
        rows.append(
            (
                name,
                str(s["mutants"]),
                str(s.get("killed", 0) + s.get("timeout", 0)),
                str(s.get("survived", 0)),
                str(s.get("no tests", 0)),
                str(s["equivalent"]),
                "-" if value is None else f"{value:.1%}",
                "yes" if value is not None and value >= GOAL else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def save(label: str, scores: dict[str, dict[str, Any]]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["goal"] = GOAL
    data.setdefault(label, {}).update(scores)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--label", default="latest", help="where the scores go in mutation.json")
    parser.add_argument("--jobs", type=int, help="mutants tested at once (default: one a core)")
    parser.add_argument("--report", action="store_true", help="score the last runs only")
    parser.add_argument("--unit", action="store_true", help="run the unit tests only")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; the modules: {', '.join(MODULES)}")
    chosen = {name: MODULES[name] for name in args.modules or MODULES}
    if args.unit:
        chosen = {f"{name}.unit": unit_only(module) for name, module in chosen.items()}
    failed = []
    if not args.report:
        failed = [name for name, module in chosen.items() if run(name, module, args.jobs) != 0]
    equivalent = equivalents()
    # saved under the module's name; "tests" says which selection measured it
    scores = {
        name.removesuffix(".unit"): score(name, module, equivalent)
        for name, module in chosen.items()
    }
    for name, s in scores.items():
        for mutant in s["survivors"]:
            print(f"survived: {mutant}  ({name})")
    print(render(scores))
    save(args.label, scores)
    if failed:
        print(f"mutmut failed for {', '.join(failed)}")
    short = [n for n, s in scores.items() if s["score"] is None or s["score"] < GOAL]
    return 1 if failed or short else 0


if __name__ == "__main__":
    sys.exit(main())
