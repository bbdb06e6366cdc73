"""The Airflow UI in a real browser: the OSCAR page, the connection form, results, extra links.

Tests run in this order on purpose: those that do not need the ensemble run's results first,
while the run goes on in the background. Screenshots go to ``tests/artifacts/ui/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from airflow_provider_oscar.connection_form import CONNECTION_FIELDS
from tests.ui.conftest import DAG_ID, ECHO_SERVICE, UiSession

# The session's Airflow starts in the first test that needs it (set-up budget: 3 minutes),
# and the results tests wait for the ensemble run.
pytestmark = pytest.mark.timeout(480)

Shot = Callable[..., Path]


def _oscar_frame(page: Any) -> Any:
    return page.frame_locator('iframe[src*="/oscar/"]')


def test_the_oscar_page_in_the_navigation_shows_clusters_services_and_jobs(
    ui: UiSession, page: Any, screenshot: Shot
) -> None:
    page.goto(f"{ui.url}/")
    page.get_by_role("link", name="OSCAR").click()
    page.wait_for_url(re.compile(r".*/plugin/oscar"))
    frame = _oscar_frame(page)

    healthy = frame.locator('section.cluster[data-conn-id="oscar_default"]')
    expect(healthy).to_contain_text("healthy")
    expect(healthy).to_contain_text("OSCAR v4.1.2")
    expect(healthy).to_contain_text("CPU in use")
    expect(healthy).to_contain_text("cores free of")
    echo = healthy.locator(f'tr.service[data-service="{ECHO_SERVICE}"]')
    expect(echo).to_contain_text("ready")
    job = healthy.locator(f'tr.job[data-job="{ui.echo_job}"]')
    expect(job).to_contain_text("Succeeded")

    down = frame.locator('section.cluster[data-conn-id="oscar_unreachable"]')
    expect(down).to_contain_text("unreachable")
    expect(down.get_by_role("alert")).to_contain_text("Cannot reach this cluster")
    assert "never-shown-secret" not in down.inner_text()
    screenshot(page, "oscar-page-in-airflow")

    job.get_by_role("link", name=re.compile("^logs")).click()
    expect(frame.locator("pre.logs")).to_contain_text("hello from the OSCAR page test")
    screenshot(page, "oscar-job-logs")

    # The whole page, outside the frame, for the record.
    page.goto(f"{ui.url}/oscar/")
    screenshot(page, "oscar-clusters-full", full_page=True)


def test_the_connection_form_shows_the_oscar_fields(
    ui: UiSession, page: Any, screenshot: Shot
) -> None:
    page.goto(f"{ui.url}/connections")
    row = page.get_by_role("row").filter(has_text="oscar_default")
    row.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("OSCAR")
    host = dialog.locator('input[name="host"]')
    try:  # the standard fields start open in Airflow 3.3
        host.wait_for(state="visible", timeout=10_000)
    except PlaywrightTimeout:
        dialog.get_by_role("button", name="Standard Fields").click()
    expect(host).to_have_value(ui.oscar.endpoint)
    expect(host).to_have_attribute("placeholder", "https://oscar.example.org")
    expect(dialog.get_by_text("OSCAR endpoint")).to_be_visible()
    expect(dialog.get_by_text("Username")).to_be_visible()
    assert dialog.locator('input[name="password"]').input_value() != ui.oscar.password
    page.wait_for_timeout(500)  # the accordion's animation, for the screenshot only
    screenshot(page, "connection-form-edit")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    expect(dialog.get_by_text("Verify TLS certificates")).to_be_visible()
    page.wait_for_timeout(500)
    screenshot(page, "connection-form-edit-extras")
    dialog.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").first.click()
    page.keyboard.type("OSCAR")
    page.get_by_role("option", name="OSCAR").click()
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for spec in CONNECTION_FIELDS.values():
        expect(dialog.get_by_text(spec["label"], exact=True)).to_be_visible()
        expect(dialog.get_by_text(spec["description"], exact=True)).to_be_visible()
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.wait_for_timeout(500)
    screenshot(page, "connection-form-add")


def test_the_test_connection_button_reaches_the_cluster(
    ui: UiSession, page: Any, screenshot: Shot
) -> None:
    page.goto(f"{ui.url}/connections")
    row = page.get_by_role("row").filter(has_text="oscar_default")
    with page.expect_response("**/api/v2/connections/test") as answer:
        row.get_by_role("button", name="Test Connection").click()
    result = answer.value.json()
    assert result == {
        "status": True,
        "message": f"Connected to OSCAR v4.1.2 at {ui.oscar.endpoint}",
    }
    expect(page.get_by_text(result["message"])).to_be_visible()
    screenshot(page, "connection-test")


def test_the_results_page_shows_the_ensemble_of_the_triggered_run(
    ui: UiSession, page: Any, screenshot: Shot
) -> None:
    assert ui.finished_run() == "success"
    page.goto(f"{ui.url}/plugin/oscar")
    frame = _oscar_frame(page)
    frame.get_by_role("link", name="Composite-AI results").click()
    card = frame.locator(f'section.ensemble-dag[data-dag-id="{DAG_ID}"]')
    expect(card).to_contain_text("30 inputs")
    expect(card).to_contain_text("Ensemble accuracy")
    screenshot(page, "results-list")

    card.locator("table.runs").get_by_role("link", name=ui.run_id).click()
    expect(frame.locator("h2")).to_contain_text(ui.run_id)
    rows = frame.locator("tr.input-row")
    expect(rows).to_have_count(30)
    expect(frame.locator("figure.accuracy")).to_contain_text("ensemble")
    first = frame.locator('article.input[data-input="specimen-005"]')
    expect(first).to_contain_text("Consensus Iris setosa")
    for model in ("plants-sepal", "plants-petal-length", "plants-petal-width"):
        expect(first.locator(".model .name", has_text=model)).to_have_count(1)
    screenshot(page, "results-run-in-airflow")

    # The run's page on its own, whole, and filtered to the inputs the models disagree on.
    run_page = f"{ui.url}/oscar/results/{DAG_ID}/{quote(ui.run_id, safe='')}"
    page.goto(run_page)
    screenshot(page, "results-run-full", full_page=True)
    disagreements = page.get_by_role("link", name=re.compile(r"^models disagree \(\d+\)"))
    expected = int(re.findall(r"\d+", disagreements.inner_text())[-1])
    disagreements.click()
    expect(page.locator("tr.input-row")).to_have_count(expected)
    assert expected > 0
    screenshot(page, "results-run-disagreements", full_page=True)


def test_extra_links_on_task_instances_open_the_oscar_dashboard(
    ui: UiSession, page: Any, screenshot: Shot
) -> None:
    assert ui.finished_run() == "success"
    run = quote(ui.run_id, safe="")
    page.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run}/tasks/deploy_classifiers/details")
    link = page.get_by_role("link", name="OSCAR service")
    expect(link).to_have_attribute("href", f"{ui.oscar.endpoint}/ui/#/ui/services")

    page.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run}/tasks/classify/mapped/0/details")
    link = page.get_by_role("link", name="OSCAR service")
    href = link.get_attribute("href")
    pattern = re.escape(ui.oscar.endpoint) + r"/ui/#/ui/services/([a-z-]+)/settings"
    match = re.fullmatch(pattern, href or "")
    assert match, href
    service = match.group(1)
    expect(page.get_by_text(f"classify [{service} ·")).to_be_visible()  # the mapped task's model
    screenshot(page, "extra-link-on-task-instance")

    with page.expect_popup() as opened:
        link.click()
    dashboard = opened.value
    dashboard.wait_for_load_state()
    assert dashboard.url.startswith(f"{ui.oscar.endpoint}/ui")
    assert dashboard.url.endswith(f"#/ui/services/{service}/settings")
    expect(dashboard.locator("#route")).to_have_text(f"#/ui/services/{service}/settings")
    screenshot(dashboard, "extra-link-target")
