"""Browser tests against ``airflow standalone`` with the embedded OSCAR.

One Airflow for the session, in its own throw-away home and environment (the rest of the suite's
``AIRFLOW_*`` settings never reach it), with ``oscar_default`` (the embedded OSCAR) and
``oscar_unreachable`` (a closed port) stored in its metadata DB, the example DAGs, and a run of
``oscar_plant_ensemble_soft_vote`` triggered as soon as the DAG is parsed. Tests that need the run's
results wait for it; the others run meanwhile.

The browser is Debian's chromium (``/usr/bin/chromium``, or ``$OSCAR_UI_CHROMIUM``) driven by
Playwright; ``make test`` installs it when it can. Without it these tests skip on a developer
machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.local.server import OscarLocal

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.ui import PASSWORDS, AirflowStandalone, oscar_connection  # noqa: E402
from tests.helpers import unavailable  # noqa: E402

CHROMIUM = Path(os.environ.get("OSCAR_UI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
DAG_ID = "oscar_plant_ensemble_soft_vote"  # one mapped task per call: 30 inputs
ECHO_SERVICE = "ui-echo"
VIEWER = "viewer"
ECHO_SCRIPT = 'echo "hello from the OSCAR page test"\ncat "$INPUT_FILE_PATH"\n'


def _unavailable(reason: str) -> None:
    unavailable("browser tests", reason, "run `make test` as root to install it")


@dataclass
class UiSession:
    """What the tests share: Airflow, the embedded OSCAR and the triggered run."""

    airflow: AirflowStandalone
    oscar: OscarLocal
    run_id: str
    unreachable_endpoint: str
    echo_job: str
    setup_seconds: float
    _run_state: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.airflow.url

    def token(self, username: str) -> str:
        """An API token of one of the standalone's users (``admin`` or :data:`VIEWER`)."""
        passwords = json.loads((self.airflow.home / PASSWORDS).read_text())
        response = httpx.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": passwords[username]},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text
        return str(response.json()["access_token"])

    def finished_run(self, timeout: float = 240.0) -> str:
        """Wait for the ensemble run (once) and return its final state."""
        if self._run_state is None:
            self._run_state = self.airflow.wait_for_run(DAG_ID, self.run_id, timeout=timeout)
        return self._run_state


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _submit_echo_job(oscar: OscarLocal) -> str:
    """A service with one finished job, so the page has jobs and logs to show."""
    with httpx.Client(
        base_url=oscar.endpoint, auth=(oscar.user, oscar.password), timeout=30
    ) as admin:
        body = {"name": ECHO_SERVICE, "image": "local/echo", "script": ECHO_SCRIPT}
        response = admin.post("/system/services", json=body)
        assert response.status_code == 201, response.text
        token = admin.get(f"/system/services/{ECHO_SERVICE}").json()["token"]
        job = "ui-echo-job-1"
        response = httpx.post(
            f"{oscar.endpoint}/job/{ECHO_SERVICE}",
            content=b"aGVsbG8K",  # "hello"
            headers={"Authorization": f"Bearer {token}", "X-Delegated-Job-ID": job},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 30
        while True:
            jobs = admin.get(f"/system/logs/{ECHO_SERVICE}").json().get("jobs") or {}
            if (jobs.get(job) or {}).get("status") in ("Succeeded", "Failed"):
                return job
            assert time.monotonic() < deadline, f"the echo job did not finish: {jobs}"
            time.sleep(0.2)


@pytest.fixture(scope="package")
def ui() -> Iterator[UiSession]:
    """Airflow standalone + embedded OSCAR + a triggered ensemble run, for ``tests/ui``."""
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="oscar-ui-tests-"))
    # A viewer may read DAGs, runs and XComs but no connection (the simple auth manager's roles).
    users = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer"}
    airflow = AirflowStandalone(home, env=users, start_timeout=170)
    try:
        with OscarLocal() as oscar, airflow:
            airflow.add_connection(
                "oscar_default", oscar_connection(oscar, "The embedded OSCAR of the UI tests")
            )
            unreachable = f"http://127.0.0.1:{_closed_port()}"
            airflow.add_connection(
                "oscar_unreachable",
                {
                    "conn_type": "oscar",
                    "host": unreachable,
                    "login": "oscar",
                    "password": "never-shown-secret",
                    "description": "A cluster that is down",
                    "extra": {"timeout": 2, "retries": 0},
                },
            )
            echo_job = _submit_echo_job(oscar)
            airflow.wait_for_dag(DAG_ID, timeout=120)
            run_id = airflow.trigger(DAG_ID)
            session = UiSession(
                airflow=airflow,
                oscar=oscar,
                run_id=run_id,
                unreachable_endpoint=unreachable,
                echo_job=echo_job,
                setup_seconds=time.monotonic() - started,
            )
            print(f"\n[ui] Airflow at {airflow.url} ready in {session.setup_seconds:.0f} s")
            yield session
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (never Playwright's own browsers).

    Module-scoped: while Playwright's sync API is open, the thread has a running event loop, so
    the suite's async tests must not run inside it.
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - a test extra
        _unavailable(f"playwright is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def login_state(ui: UiSession, browser: Any) -> dict[str, Any]:
    """Log in through the login form once; later pages reuse the session's cookie."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{ui.url}/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(ui.airflow.username)
    page.get_by_label("Password").fill(ui.airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{ui.url}/")
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(browser: Any, login_state: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page (1400 by 1000) with a 30 s default timeout."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, storage_state=login_state
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """``screenshot(page_or_locator, "name")`` saves ``tests/artifacts/ui/name.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _take(target: Any, name: str, **options: Any) -> Path:
        path = ARTIFACTS / f"{name}.png"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        target.screenshot(path=str(path), **options)
        return path

    return _take
