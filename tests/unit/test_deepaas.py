"""The AI4OS hub contract: the ``oscar-files`` document, file formats, recognising hub services."""

from __future__ import annotations

import base64

import pytest

from airflow_provider_oscar.deepaas import (
    DeepaasFile,
    OscarInputError,
    deepaas_document,
    file_format,
    hub_module_of,
    is_papi_service,
    matches_hub_module,
    pick_hub_service,
    resolve_format,
)
from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.fdl import parse_service
from tests.helpers import png

PNG = png(2, 2, (0, 128, 0))
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def service(name: str, image: str = "", **variables: str) -> object:
    return parse_service(
        {"name": name, "image": image, "environment": {"variables": variables or None}}
    )


# --- the document ------------------------------------------------------------------------------


def test_one_file_becomes_an_oscar_files_entry_with_its_extension_and_base64_data() -> None:
    document = deepaas_document({"files": DeepaasFile("photos/leaf.JPG", JPEG_HEAD)})

    assert document == {
        "oscar-files": [
            {"key": "files", "file_format": "jpg", "data": base64.b64encode(JPEG_HEAD).decode()}
        ]
    }


def test_other_predict_arguments_sit_beside_the_files_numbers_as_they_are() -> None:
    document = deepaas_document(
        {"image": DeepaasFile("a.png", PNG), "mask": DeepaasFile("m.png", PNG)},
        {"top_k": 3, "threshold": 0.5, "mode": "fast", "verbose": True},
    )

    assert [f["key"] for f in document["oscar-files"]] == ["image", "mask"]
    assert {k: v for k, v in document.items() if k != "oscar-files"} == {
        "top_k": 3,
        "threshold": 0.5,
        "mode": "fast",
        "verbose": True,
    }


def test_lists_and_dicts_go_as_the_python_literal_text_deepaas_cli_parses() -> None:
    document = deepaas_document(
        {"files": DeepaasFile("a.png", PNG)}, {"crops": [1, 2], "conf": {"a": "b"}, "t": (1,)}
    )

    assert (document["crops"], document["conf"], document["t"]) == ("[1, 2]", "{'a': 'b'}", "[1]")


def test_a_file_without_extension_gets_the_type_its_first_bytes_show() -> None:
    assert file_format("event-file", PNG) == "png"
    assert file_format(None, JPEG_HEAD) == "jpg"
    assert file_format("x", b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"


def test_no_extension_and_no_known_content_fails_naming_the_input() -> None:
    with pytest.raises(OscarInputError, match=r"plants/readme: 'readme' has no extension"):
        deepaas_document({"files": DeepaasFile("readme", b"plain text")}, what="plants/readme")


def test_an_extension_that_cannot_be_a_file_format_is_refused() -> None:
    with pytest.raises(OscarInputError, match="extension 'tar~1'"):
        file_format("a.tar~1", PNG, what="input 'a'")


@pytest.mark.parametrize(
    ("files", "arguments", "problem"),
    [
        ({"files": DeepaasFile("a.png", PNG)}, {"files": "x"}, "given both as the file"),
        ({"files": DeepaasFile("a.png", PNG)}, {"oscar-files": []}, "document's own key"),
        ({"--files": DeepaasFile("a.png", PNG)}, {}, "'--files' cannot be a predict argument"),
        ({"files": DeepaasFile("a.png", PNG)}, {"bad key": 1}, "'bad key' cannot be"),
        ({"files": DeepaasFile("a.png", PNG)}, {"none": None}, "'none' is NoneType"),
        ({}, {}, "no file to send"),
    ],
)
def test_colliding_or_unusable_arguments_fail_naming_the_input_and_the_argument(
    files: dict[str, DeepaasFile], arguments: dict[str, object], problem: str
) -> None:
    with pytest.raises(OscarInputError, match=problem) as raised:
        deepaas_document(files, arguments, what="input 'leaf'")
    assert str(raised.value).startswith("input 'leaf': ")


def test_an_input_error_is_a_client_error_so_the_task_fails_without_retries() -> None:
    assert issubclass(OscarInputError, OscarClientError)


# --- recognising hub services ------------------------------------------------------------------


def test_a_dashboard_deployment_is_known_by_its_name_or_its_papi_variables() -> None:
    assert is_papi_service(service("ai4papi-1f0e2a3c-9b7d-11f0-8de9-0242ac12"))
    assert is_papi_service(service("renamed", PAPI_CREATED="2026-01-01 10:00:00"))
    assert not is_papi_service(service("plants-classification", "ai4oshub/plants-classification"))


def test_auto_format_is_deepaas_for_a_dashboard_deployment_and_raw_otherwise() -> None:
    papi = service("ai4papi-x", "ai4oshub/plants-classification", PAPI_TITLE="t")
    example = service("plants-classification", "ai4oshub/plants-classification")

    assert resolve_format("auto", papi) == "deepaas"
    assert resolve_format("auto", example) == "raw"
    assert resolve_format("deepaas", example) == "deepaas"
    with pytest.raises(ValueError, match="input_format"):
        resolve_format("base64", papi)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "module"),
    [
        ("ai4oshub/plants-classification", "plants-classification"),
        ("ai4oshub/plants-classification:latest", "plants-classification"),
        ("docker.io/ai4oshub/plants-classification:cpu", "plants-classification"),
        (
            "localhost:5000/deephdc/deep-oc-plants-classification-tf@sha256:ab",
            "deep-oc-plants-classification-tf",
        ),
        ("grycap/cowsay", None),
        ("ubuntu:22.04", None),
        ("", None),
    ],
)
def test_the_hub_module_is_the_image_name_under_the_hub_accounts(
    image: str, module: str | None
) -> None:
    assert hub_module_of(service("s", image)) == module


def test_a_module_matches_by_image_or_by_title_whatever_the_case() -> None:
    by_image = service("ai4papi-a", "ai4oshub/plants-classification:latest")
    by_title = service("ai4papi-b", "someone/fork", PAPI_TITLE="  Plants-Classification ")

    assert matches_hub_module(by_image, "plants-classification")
    assert matches_hub_module(by_title, "plants-classification")
    assert not matches_hub_module(by_image, "plants")
    assert not matches_hub_module(service("x", "ai4oshub/yolov8"), "")


def test_picking_a_module_lists_the_candidates_when_none_or_several_match() -> None:
    one = service("ai4papi-one", "ai4oshub/plants-classification", PAPI_TITLE="mine")
    two = service("plants-classification", "ai4oshub/plants-classification")
    other = service("ai4papi-yolo", "ai4oshub/ai4os-yolov8-torch", PAPI_TITLE="yolo")

    assert pick_hub_service([one, other], "plants-classification", cluster="c") is one
    with pytest.raises(OscarClientError, match="no service you can see") as none:
        pick_hub_service([other], "plants-classification", cluster="egi")
    assert "ai4papi-yolo (image ai4oshub/ai4os-yolov8-torch, title 'yolo')" in str(none.value)
    with pytest.raises(OscarClientError, match="2 services run hub module") as several:
        pick_hub_service([one, two, other], "plants-classification", cluster="egi")
    assert "ai4papi-one" in str(several.value) and "plants-classification (image" in str(
        several.value
    )
    assert "give service_name" in str(several.value)
