"""Warming services up: calls repeated through a cold start, and min_scale raised and restored."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.fdl import parse_service
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.warmup import (
    MIN_SCALE_LABEL,
    check_warm_up,
    raise_min_scale,
    restore_min_scale,
    warm_by_call,
    warm_up_input,
)

LOG = logging.getLogger("warm-up test")


def cold_start(marker: Path, seconds: float) -> str:
    """A script whose first calls take ``seconds`` (its "pod" starting), then answer at once;
    every call leaves a line in ``marker``.calls."""
    return (
        f'echo call >> "{marker}.calls"\n'
        f'if [ ! -f "{marker}" ]; then sleep {seconds}; touch "{marker}"; fi\n'
        "echo warm\n"
    )


@pytest.mark.usefixtures("oscar_default")
def test_a_cut_warm_up_call_is_sent_again_until_the_service_answers(
    deploy: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    service = parse_service(deploy(cold_start(marker, 1.5)))

    outcome = warm_by_call(
        OscarHook(), service, deadline=time.time() + 30, log=LOG, call_timeout=0.5, interval=0.2
    )

    assert outcome["warm_up"] == "call" and outcome["status_code"] == 200
    assert outcome["attempts"] >= 2
    assert len((tmp_path / "started.calls").read_text().splitlines()) == outcome["attempts"]
    started = time.monotonic()
    assert b"warm" in OscarHook().run_service(service.name, b"", timeout=0.5).body
    assert time.monotonic() - started < 0.5


@pytest.mark.usefixtures("oscar_default")
def test_a_warm_up_that_never_gets_an_answer_fails_at_its_deadline(
    deploy: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    service = parse_service(deploy("sleep 5\n"))
    started = time.monotonic()

    deadline = time.time() + 1.5

    with pytest.raises(OscarApiError):
        warm_by_call(OscarHook(), service, deadline=deadline, log=LOG, call_timeout=0.4)
    assert 1.5 <= time.monotonic() - started < 4


@pytest.mark.usefixtures("oscar_default")
def test_a_refused_warm_up_call_fails_at_once(unique_name: Callable[[str], str]) -> None:
    missing = parse_service({"name": unique_name("gone"), "image": "x", "script": "true"})

    with pytest.raises(OscarClientError):
        warm_by_call(OscarHook(), missing, deadline=time.time() + 30, log=LOG)


def test_a_dashboard_deployment_warms_with_an_empty_document_others_with_nothing() -> None:
    papi = parse_service({"name": "ai4papi-x", "image": "ai4oshub/plants-classification"})
    plain = parse_service({"name": "plants-classification", "image": "x"})

    assert (warm_up_input(papi), warm_up_input(plain)) == ({}, b"")
    with pytest.raises(ValueError, match="warm_up must be None, 'call' or 'min_scale'"):
        check_warm_up("yes")


def test_min_scale_is_raised_for_the_run_and_put_back_after(
    oscar_default: OscarLocal, deploy: Callable[..., dict[str, Any]], admin: httpx.Client
) -> None:
    stored = deploy("echo hi\n", synchronous={"min_scale": 0, "max_scale": 3})
    name, hook = stored["name"], OscarHook()

    def scale() -> dict[str, int]:
        return admin.get(f"/system/services/{name}").json()["synchronous"]

    warm_up = raise_min_scale(hook, parse_service(stored))
    again = raise_min_scale(hook, parse_service(admin.get(f"/system/services/{name}").json()))

    assert warm_up == {"warm_up": "min_scale", "service": name, "min_scale_before": 0}
    assert again == warm_up  # a second raise (a rescheduled sensor) still knows the old value
    assert scale() == {"min_scale": 1, "max_scale": 3}
    assert admin.get(f"/system/services/{name}/deployment").json()["active_instances"] >= 1
    assert restore_min_scale(hook, name) is True
    assert scale() == {"min_scale": 0, "max_scale": 3}
    assert MIN_SCALE_LABEL not in admin.get(f"/system/services/{name}").json()["labels"]
    assert restore_min_scale(hook, name) is False  # nothing left to put back


def test_a_service_already_kept_warm_is_left_alone(
    oscar_default: OscarLocal, deploy: Callable[..., dict[str, Any]]
) -> None:
    stored = deploy("echo hi\n", synchronous={"min_scale": 2, "max_scale": 3})

    warm_up = raise_min_scale(OscarHook(), parse_service(stored))

    assert warm_up["min_scale_before"] == 2
    assert restore_min_scale(OscarHook(), stored["name"]) is False
