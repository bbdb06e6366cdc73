"""The production stack, started once for the tests of this folder.

Postgres, Redis, the CeleryExecutor with two workers, the scheduler, DAG processor, triggerer and
API server, and two embedded OSCARs (``oscar_default``, ``oscar_second``): what ``make stack``
starts, in a throw-away folder, with short failure-detection timeouts so that a drill takes
seconds rather than minutes. Tests drive it as a user would, through Airflow's REST API and the
real scheduler, and count side effects on the clusters (``GET /local/counts``).

Postgres and Redis come from Debian's packages (``make test`` installs them when root). Without
them these tests skip on a developer machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402
from tests.stack.drills import Drills, run_drills  # noqa: E402
from tests.stack.examples import Examples, run_examples  # noqa: E402
from tests.stack.session import TEST_SETTINGS, StackSession, check_programs  # noqa: E402


@pytest.fixture(scope="package")
def stack() -> Iterator[StackSession]:
    """The stack for ``tests/stack``, in its own throw-away folder and environment."""
    check_programs()
    root = Path(tempfile.mkdtemp(prefix="oscar-stack-tests-"))
    began = time.monotonic()
    settings = StackSettings(root, overrides=TEST_SETTINGS)
    say = lambda line: print(f"\n[stack] {line}", flush=True)  # noqa: E731
    try:
        with Stack(settings, say=say) as running, running.client() as airflow:
            print(f"\n[stack] up in {time.monotonic() - began:.0f} s at {settings.api_url}")
            yield StackSession(running, airflow)
    finally:
        if os.environ.get("OSCAR_STACK_KEEP"):
            print(f"\n[stack] kept {root} (OSCAR_STACK_KEEP)")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def drills(stack: StackSession) -> Drills:
    """The triggerer and worker drills (once), with what they saw."""
    return run_drills(stack)


@pytest.fixture(scope="package")
def examples(stack: StackSession, drills: Drills) -> Examples:
    """Every other example DAG run once (after the drills, which count on the same services)."""
    return run_examples(stack)
