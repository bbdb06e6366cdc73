"""OscarHook's metrics (OSCAR 4.0 and later) and system logs (3.6.5 and later) against the
embedded OSCAR: the figures count the runs and jobs the cluster itself served."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.server import OscarLocal
from tests.integration.system_hooks import admin_hook, counted, user_hook

SCRIPT = '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n'


@pytest.fixture(params=["4.0", "4.1"], ids=lambda v: f"oscar{v}")
def metered(
    request: pytest.FixtureRequest,
    oscar_at: Callable[[str], OscarLocal],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[OscarLocal, OscarHook, str]]:
    """A release with metrics, its admin's hook and a new service (deleted afterwards)."""
    server = oscar_at(request.param)
    hook = admin_hook(server, monkeypatch)
    name = f"met-{uuid.uuid4().hex[:8]}"
    hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
    yield server, hook, name
    hook.delete_service(name)
    hook.close()


def test_metrics_count_the_runs_and_jobs_the_cluster_served(
    metered: tuple[OscarLocal, OscarHook, str],
) -> None:
    server, hook, name = metered
    before = hook.get_metrics_summary()
    for text in ("one", "two"):
        assert hook.run_service(name, text).status_code == 200
    assert hook.submit_job(name, "three")
    served = counted(server)
    after = hook.get_metrics_summary()
    assert (
        after.requests_sync - before.requests_sync,
        after.requests_async - before.requests_async,
    ) == (2, 1)
    assert after.requests_total - before.requests_total == 3
    assert after.end is not None and after.start == after.end - timedelta(hours=24)
    assert {s.name for s in after.sources} >= {"service-inventory", "request-logs"}
    per_service = hook.get_service_metrics(name)
    assert per_service.service == name
    sync = per_service.metrics["requests-sync-per-service"]
    assert (sync.value, per_service.metrics["requests-async-per-service"].value) == (2.0, 1.0)
    assert hook.get_service_metric(name, "requests-sync-per-service").value == 2.0
    assert served()["GET /system/metrics"] == 1


def test_the_breakdown_as_json_and_as_csv_agree(
    metered: tuple[OscarLocal, OscarHook, str],
) -> None:
    _, hook, name = metered
    hook.run_service(name, "x")
    hook.submit_job(name, "y")
    rows = {row.key: row for row in hook.get_metrics_breakdown("service").rows}
    mine = rows[name]
    assert (mine.requests_total, mine.requests_sync, mine.requests_async) == (2, 1, 1)
    assert mine.unique_users >= 1 and mine.users == ()  # users only when asked for
    with_users = {
        row.key: row for row in hook.get_metrics_breakdown("service", include_users=True).rows
    }
    assert len(with_users[name].users) == mine.unique_users
    table = list(csv.DictReader(io.StringIO(hook.get_metrics_breakdown_csv("service"))))
    line = next(r for r in table if r["key"] == name)
    assert (line["requests_count_total"], line["requests_count_sync"]) == ("2", "1")
    assert hook.get_metrics_breakdown("user").group_by == "user"


def test_a_time_range_before_the_runs_counts_none_of_them(
    metered: tuple[OscarLocal, OscarHook, str],
) -> None:
    _, hook, name = metered
    hook.run_service(name, "x")
    long_ago = datetime(2020, 1, 1, tzinfo=timezone.utc)
    old = hook.get_service_metrics(name, start=long_ago, end=long_ago + timedelta(days=1))
    assert old.start == long_ago and old.metrics["requests-sync-per-service"].value == 0.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda h: h.get_metrics_breakdown("day"), "group_by 'day'"),
        (lambda h: h.get_metrics_breakdown_csv("hour"), "group_by 'hour'"),
        (lambda h: h.get_service_metric("svc", "cpu"), "metric 'cpu'"),
        (
            lambda h: h.get_metrics_summary(start=datetime(2026, 1, 1)),
            "start must be a timezone-aware datetime",
        ),
        (
            lambda h: h.get_metrics_summary(
                start=datetime(2026, 2, 1, tzinfo=timezone.utc),
                end=datetime(2026, 1, 1, tzinfo=timezone.utc),
            ),
            "end 2026-01-01.* is before start",
        ),
        (lambda h: h.get_service_metrics("Bad_Name"), "service name 'Bad_Name'"),
    ],
)
def test_bad_arguments_fail_before_any_request_naming_the_field(
    oscar: OscarLocal,
    monkeypatch: pytest.MonkeyPatch,
    call: Callable[[OscarHook], Any],
    field: str,
) -> None:
    hook = admin_hook(oscar, monkeypatch)
    hook.release()
    seen = counted(oscar)
    with pytest.raises(OscarClientError, match=field):
        call(hook)
    assert not seen()


def test_metrics_of_an_unknown_service_are_a_client_error(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """metrics.go reads the service first: 404 at 4.0; for OIDC callers only from 4.1."""
    hook = user_hook(oscar, monkeypatch, "erin")
    with pytest.raises(OscarClientError, match="answered 404"):
        hook.get_service_metrics("no-such-service")


@pytest.mark.parametrize("version", ["3.6", "3.7"])
def test_a_release_without_metrics_is_refused_naming_it(
    oscar_at: Callable[[str], OscarLocal], monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    server = oscar_at(version)
    with httpx.Client(base_url=server.endpoint, auth=(server.user, server.password)) as raw:
        assert raw.get("/system/metrics").status_code == 404  # the release has no such route
    hook = admin_hook(server, monkeypatch)
    hook.release()
    seen = counted(server)
    with pytest.raises(
        OscarClientError, match=rf"runs {server.profile.version}, which has no metrics.*v4\.0\.0"
    ):
        hook.get_metrics_summary()
    with pytest.raises(OscarClientError, match="which has no metrics"):
        hook.get_service_metrics("any-service")
    assert not seen()


# system logs ---------------------------------------------------------------------------------


def test_system_logs_list_the_runs_the_cluster_served(
    release_oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = admin_hook(release_oscar, monkeypatch)
    name = f"slog-{uuid.uuid4().hex[:8]}"
    hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
    try:
        hook.run_service(name, "logged")
        entries = [e for e in hook.get_system_logs() if e.path == f"/run/{name}"]
        assert [(e.method, e.status) for e in entries] == [("POST", 200)]
        stamped = [e for e in hook.get_system_logs(timestamps=True) if e.path == f"/run/{name}"]
        assert len(stamped) == 1 and stamped[0].raw != entries[0].raw  # the time it was read
    finally:
        hook.delete_service(name)


def test_system_logs_are_refused_to_an_oidc_user_who_is_no_admin(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = user_hook(oscar, monkeypatch, "frank")
    with pytest.raises(OscarClientError, match="403: OIDC tokens are not allowed for system logs"):
        hook.get_system_logs()
