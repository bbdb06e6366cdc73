"""Extra links: what operators persist, and the dashboard URLs built from it."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import pytest

from airflow_provider_oscar import links
from airflow_provider_oscar.links import OscarJobLogsLink, OscarOutputLink, OscarServiceLink

ENDPOINT = "https://oscar.example.org"


class FakeXCom:
    """XCom keyed by task instance, filled through a fake ``ti`` in the context."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}

    def context(self, ti_key: str) -> dict[str, Any]:
        ti = MagicMock()
        ti.xcom_push.side_effect = lambda key, value: self.values.__setitem__((ti_key, key), value)
        return {"ti": ti}

    def get_value(self, *, key: str, ti_key: str) -> Any:
        return self.values.get((ti_key, key))


@pytest.fixture
def xcom(monkeypatch: pytest.MonkeyPatch) -> FakeXCom:
    fake = FakeXCom()
    monkeypatch.setattr(links, "XCom", fake)
    return fake


def link_for(link: links._OscarLink, xcom: FakeXCom, **persisted: Any) -> str:
    type(link).persist(xcom.context("ti-1"), **persisted)
    return link.get_link(MagicMock(), ti_key="ti-1")


@pytest.mark.parametrize("link", [OscarServiceLink(), OscarJobLogsLink(), OscarOutputLink()])
def test_link_data_is_persisted_apart_from_the_key_the_task_runner_overwrites(
    link: links._OscarLink,
) -> None:
    ti = MagicMock()
    type(link).persist({"ti": ti}, endpoint=ENDPOINT, service="svc")
    (call,) = ti.xcom_push.call_args_list
    assert call.kwargs["key"] != link.xcom_key
    assert call.kwargs["value"]["service"] == "svc"


def test_service_link_opens_the_service_in_the_dashboard(xcom: FakeXCom) -> None:
    url = link_for(OscarServiceLink(), xcom, endpoint=ENDPOINT + "/", service="plants")
    assert url == f"{ENDPOINT}/ui/#/ui/services/plants/settings"


def test_service_link_without_one_service_opens_the_service_list(xcom: FakeXCom) -> None:
    url = link_for(OscarServiceLink(), xcom, endpoint=ENDPOINT, service=None)
    assert url == f"{ENDPOINT}/ui/#/ui/services"


def test_job_logs_link_opens_the_job_list_of_the_jobs_service(xcom: FakeXCom) -> None:
    url = link_for(OscarJobLogsLink(), xcom, endpoint=ENDPOINT, service="plants", job="plants-1")
    assert url == f"{ENDPOINT}/ui/#/ui/services/plants/logs"


def test_output_link_opens_the_folder_of_the_object(xcom: FakeXCom) -> None:
    url = link_for(
        OscarOutputLink(), xcom, endpoint=ENDPOINT, service=None, bucket="out", key="a b/r.json"
    )
    assert url == f"{ENDPOINT}/ui/#/ui/minio/out/a%20b/"


def test_output_link_to_a_prefix_opens_that_folder(xcom: FakeXCom) -> None:
    url = link_for(OscarOutputLink(), xcom, endpoint=ENDPOINT, service=None, bucket="out", key="x/")
    assert url == f"{ENDPOINT}/ui/#/ui/minio/out/x/"


def test_output_link_to_an_object_at_the_bucket_root_opens_the_bucket(xcom: FakeXCom) -> None:
    url = link_for(OscarOutputLink(), xcom, endpoint=ENDPOINT, service=None, bucket="out", key="r")
    assert url == f"{ENDPOINT}/ui/#/ui/minio/out/"


def test_link_is_empty_when_the_task_persisted_nothing(xcom: FakeXCom) -> None:
    assert OscarServiceLink().get_link(MagicMock(), ti_key="never-ran") == ""


def test_link_reads_the_data_of_its_own_task_instance(xcom: FakeXCom) -> None:
    OscarServiceLink.persist(xcom.context("ti-1"), endpoint=ENDPOINT, service="one")
    OscarServiceLink.persist(xcom.context("ti-2"), endpoint=ENDPOINT, service="two")
    url = OscarServiceLink().get_link(MagicMock(), ti_key="ti-2")
    assert url.endswith("/services/two/settings")


def test_output_link_is_empty_without_a_bucket(xcom: FakeXCom) -> None:
    assert link_for(OscarOutputLink(), xcom, endpoint=ENDPOINT, service="svc") == ""
