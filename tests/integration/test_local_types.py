"""The embedded OSCAR's pkg/types mirror: Go's encoding/json rules on its structs."""

from __future__ import annotations

import json

import httpx
import pytest

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.deployment import ServiceDeploymentStatus
from airflow_provider_oscar.local.types.gojson import GoJSONError, decode, encode
from airflow_provider_oscar.local.types.jobinfo import JobsResponse
from airflow_provider_oscar.local.types.service import Service

V3_7, V4_1 = Release.of("v3.7.1"), Release.of("v4.1.2")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"cpu": 1},
            "json: cannot unmarshal number into Go struct field Service.cpu of type string",
        ),
        (
            {"synchronous": {"max_scale": "2"}},
            "json: cannot unmarshal string into Go struct field .synchronous.max_scale of type int",
        ),
        (
            {"input": [{"path": 3}]},
            "json: cannot unmarshal number into Go struct field "
            "StorageIOConfig.input.path of type string",
        ),
        ({"labels": ["a"]}, "into Go struct field Service.labels of type map[string]string"),
        ([], "json: cannot unmarshal array into Go value of type types.Service"),
    ],
)
def test_a_value_of_the_wrong_kind_is_an_unmarshal_type_error(body: object, error: str) -> None:
    with pytest.raises(GoJSONError) as refused:
        decode(Service, body, V4_1)
    assert error in str(refused.value)


def test_a_value_of_the_wrong_kind_answers_400_with_gos_text(admin: httpx.Client) -> None:
    spec = {"name": "kinds", "image": "x", "script": "true", "cpu": 1}
    response = admin.post("/system/services", json=spec)
    assert (response.status_code, response.text) == (
        400,
        "The service specification is not valid: json: cannot unmarshal number into Go struct "
        "field Service.cpu of type string",
    )


def test_keys_fold_case_but_an_exact_match_wins() -> None:
    service = decode(Service, {"NAME": "folded", "Image": "i"}, V4_1)
    assert (service.name, service.image) == ("folded", "i")
    assert decode(Service, {"Name": "upper", "name": "exact"}, V4_1).name == "exact"


def test_fields_of_other_releases_are_unknown_keys() -> None:
    service = decode(Service, {"name": "s", "delegation": "static", "federation": {}}, V3_7)
    assert service.delegation == "static" and service.federation is None
    assert "federation" not in encode(service, V3_7)
    later = decode(Service, {"name": "s", "delegation": "static"}, V4_1)
    assert "delegation" not in encode(later, V4_1)


def test_nil_slices_and_maps_are_null_and_empty_ones_are_empty() -> None:
    encoded = encode(decode(Service, {"allowed_users": [], "labels": None}, V4_1), V4_1)
    assert (encoded["allowed_users"], encoded["labels"], encoded["input"]) == ([], None, None)


def test_omitempty_leaves_out_empty_values_but_never_a_struct() -> None:
    status = encode(ServiceDeploymentStatus("s", state="pending", resource_kind="k"), V4_1)
    assert "reason" not in status and "namespace" not in status
    assert "last_transition_time" not in status
    assert "volume_status" in encode(Service(), V4_1)  # omitempty on a struct value: kept


def test_maps_are_written_with_sorted_keys() -> None:
    text = json.dumps(encode(JobsResponse({"b-job": None, "a-job": None}), V4_1))
    assert text.index("a-job") < text.index("b-job")
