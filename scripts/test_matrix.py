"""Run the test suite against several Airflow releases, one virtual environment each.

    python scripts/test_matrix.py                       # 3.1, 3.2 and 3.3 (latest patches)
    python scripts/test_matrix.py --airflow 3.1.8       # one release
    python scripts/test_matrix.py --full                # the whole suite, not the fast subset
    python scripts/test_matrix.py -- -k deploy          # extra arguments go to pytest

The fast subset is the unit tests, the wheel's discovery by ``airflow providers``, the hook,
operator and sensor tests against the embedded OSCAR, and the example DAGs' import and the
lifecycle DAG's ``dag.test()``. The big ``dag.test()`` runs are left to ``--full``: Airflow 3.1
and 3.2 rebuild their in-process execution API for every task, which makes a 90-task DAG take
many minutes there.

Each release gets ``.matrix/airflow-<version>`` (``uv venv`` with this interpreter, then
``uv pip install "apache-airflow==<version>" -e ".[local,test]"``; reused while pyproject.toml
is unchanged). Dependencies resolve as of the day after the release (``--exclude-newer``), as
Airflow's constraints file of that release would pin them: an unconstrained install of an older
Airflow picks up newer fastapi and cadwyn releases that break its in-process execution API.
Only this provider's own dependencies whose minimum came out later (oscar-python) are exempt.
In each venv, the provider must be discovered by ``airflow providers list/hooks/links/triggers``
and the tests run. A table of the results closes the run; the exit status is non-zero when any
release failed. Downloads from PyPI on the first run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / ".matrix"
# The latest patch of each supported minor release, and the day after its upload to PyPI.
RELEASES = {"3.1.8": "2026-03-12", "3.2.2": "2026-05-30", "3.3.2": "2026-09-18"}
VERSIONS = list(RELEASES)
# Our dependencies whose required minimum is newer than some of those releases.
NEWER_THAN_AIRFLOW = ["oscar-python"]
FAST_TESTS = [
    "tests/unit",
    "tests/dags/test_example_dags.py",
    "tests/integration/test_wheel.py",
    "tests/integration/test_hook_connection.py",
    "tests/integration/test_hook_async.py",
    "tests/integration/test_hook_retries.py",
    "tests/integration/test_service_operators.py",
    "tests/integration/test_invoke_operators.py",
    "tests/integration/test_sensors.py",
    "--deselect",
    "tests/dags/test_example_dags.py::test_plant_ensemble_classifies_every_specimen_with_all_three_models",
]
# What each ``airflow providers`` listing must show for the provider to count as discovered.
PROVIDER_CHECKS = {
    "list": "airflow-provider-oscar",
    "hooks": "airflow_provider_oscar.hooks.oscar.OscarHook",
    "links": "airflow_provider_oscar.links.",
    "triggers": "airflow_provider_oscar.triggers.",
}


@dataclass
class Outcome:
    version: str
    installed: str = "-"
    providers: str = "-"
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.installed != "FAILED"
            and self.providers == "ok"
            and not (self.failed or self.errors)
        )


def find_uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        sys.exit("uv not found: run `make setup` (it installs .tools/bin/uv) or pip install uv")
    return found


def base_interpreter() -> str:
    """The interpreter behind this one (uv makes the matrix venvs with the same Python)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base).resolve())


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)


def install(uv: str, version: str, venv: Path, log: Path) -> str:
    stamp = venv / ".matrix-stamp"
    resolution = []
    if version in RELEASES:
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        resolution = [f"--exclude-newer={RELEASES[version]}"] + [
            f"--exclude-newer-package={name}={tomorrow}" for name in NEWER_THAN_AIRFLOW
        ]
    key = (ROOT / "pyproject.toml").read_bytes() + " ".join([version, *resolution[:1]]).encode()
    digest = hashlib.sha256(key).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return "reused"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": str(venv)}
    steps = [
        [uv, "venv", "--clear", "--python", base_interpreter(), str(venv)],
        [
            uv,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            *resolution,
            f"apache-airflow=={version}",
            "-e",
            ".[local,test]",
        ],
    ]
    for cmd in steps:
        if run(cmd, log, env) != 0:
            return "FAILED"
    stamp.write_text(digest)
    return "fresh"


def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    return env


def check_providers(venv: Path, log: Path) -> str:
    """``airflow providers <what>`` lists the provider's distribution, hook, links, triggers."""
    missing = []
    with tempfile.TemporaryDirectory(prefix="matrix-home-") as home:
        for what, needle in PROVIDER_CHECKS.items():
            result = subprocess.run(
                [str(venv / "bin" / "airflow"), "providers", what, "-o", "plain"],
                cwd=ROOT,
                env=airflow_env(Path(home)),
                capture_output=True,
                text=True,
            )
            with log.open("a") as out:
                out.write(f"\n$ airflow providers {what}\n{result.stdout}{result.stderr}")
            if result.returncode != 0 or needle not in result.stdout:
                missing.append(what)
    return "ok" if not missing else "missing in " + ",".join(missing)


def run_tests(venv: Path, tests: list[str], extra: list[str], outcome: Outcome, log: Path) -> None:
    report = venv / "junit.xml"
    report.unlink(missing_ok=True)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *tests,
            *extra,
        ],
        log,
        env,
    )
    outcome.seconds = time.monotonic() - started
    if not report.exists():
        outcome.errors += 1
        outcome.failures.append("pytest wrote no report (see the log)")
        return
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            outcome.failed += 1
            outcome.failures.append(name)
        elif case.find("error") is not None:
            outcome.errors += 1
            outcome.failures.append(name)
        elif case.find("skipped") is not None:
            outcome.skipped += 1
        else:
            outcome.passed += 1


def table(outcomes: list[Outcome]) -> str:
    head = ("airflow", "venv", "providers CLI", "passed", "failed", "errors", "skipped", "time")
    rows = [
        (
            o.version,
            o.installed,
            o.providers,
            str(o.passed),
            str(o.failed),
            str(o.errors),
            str(o.skipped),
            f"{o.seconds:.0f} s",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--airflow", action="append", help=f"release to test (repeatable; default {VERSIONS})"
    )
    parser.add_argument("--full", action="store_true", help="the whole suite, not the subset")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    versions = args.airflow or os.environ.get("AIRFLOW_VERSIONS", "").split() or VERSIONS
    tests = ["tests"] if args.full else FAST_TESTS
    uv = find_uv()
    MATRIX.mkdir(exist_ok=True)
    outcomes = []
    for version in versions:
        venv = MATRIX / f"airflow-{version}"
        log = MATRIX / f"airflow-{version}.log"
        log.write_text("")
        outcome = Outcome(version)
        print(f"== Airflow {version}: installing into {venv.relative_to(ROOT)}", flush=True)
        outcome.installed = install(uv, version, venv, log)
        if outcome.installed != "FAILED":
            outcome.providers = check_providers(venv, log)
            print(f"== Airflow {version}: providers {outcome.providers}; testing", flush=True)
            run_tests(venv, tests, args.pytest_args, outcome, log)
        outcomes.append(outcome)
        print(
            f"== Airflow {version}: {outcome.passed} passed, {outcome.failed} failed, "
            f"{outcome.errors} errors ({log.relative_to(ROOT)})",
            flush=True,
        )
    print()
    print(table(outcomes))
    for outcome in outcomes:
        for name in outcome.failures:
            print(f"  {outcome.version}: {name}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
