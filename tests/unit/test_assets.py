"""The ``oscar://`` asset URIs: checked and normalised, registered with Airflow, and published."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from typing import Any
from unittest.mock import MagicMock
from urllib.parse import urlsplit, urlunsplit

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from minio import Minio

from airflow_provider_oscar.assets import create_asset, publish_objects, sanitize_uri
from airflow_provider_oscar.get_provider_info import get_provider_info
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.operators.invoke import OscarRunServiceOperator


def sanitized(uri: str) -> str:
    return urlunsplit(sanitize_uri(urlsplit(uri)))


# the scheme -----------------------------------------------------------------------------------


def test_a_uri_keeps_its_bucket_and_key_and_lowercases_the_cluster() -> None:
    assert sanitized("oscar://Alpha/plants/out/x.json") == "oscar://alpha/plants/out/x.json"
    assert sanitized("oscar://alpha/plants/out/") == "oscar://alpha/plants/out"
    assert sanitized("oscar://oscar_default/plants") == "oscar://oscar_default/plants"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("oscar:///plants/x", "names no cluster"),
        ("oscar://alpha", "names no bucket"),
        ("oscar://alpha/", "names no bucket"),
        ("oscar://alpha:9000/plants/x", "no port and no credentials"),
        ("oscar://alpha/Plants/x", "is not a bucket name"),
        ("oscar://alpha/ab/x", "is not a bucket name"),
        ("oscar://alpha/plants/a//b", "empty, '.' or '..' segment"),
        ("oscar://alpha/plants/../etc", "empty, '.' or '..' segment"),
        ("oscar://alpha/plants/x?version=2", "no query and no fragment"),
        ("s3://alpha/plants/x", "is not an oscar:// URI"),
    ],
)
def test_a_malformed_uri_is_refused_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("?", r"\?").replace(".", r"\.")):
        sanitize_uri(urlsplit(uri))


def test_the_scheme_is_registered_with_its_handler_and_factory() -> None:
    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["oscar"]
    for path, expected in ((entry["handler"], sanitize_uri), (entry["factory"], create_asset)):
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is expected


def test_airflow_checks_oscar_asset_uris_with_the_providers_handler() -> None:
    assert Asset(uri="oscar://Alpha/plants/out/").uri == "oscar://alpha/plants/out"
    with pytest.raises(ValueError, match="is not a bucket name"):
        Asset(uri="oscar://alpha/Bad_Bucket/x")


def test_the_bucket_event_trigger_module_is_listed_among_the_triggers() -> None:
    modules = [m for entry in get_provider_info()["triggers"] for m in entry["python-modules"]]
    assert "airflow_provider_oscar.triggers.events" in modules


def test_create_asset_builds_the_uri_from_its_parts() -> None:
    asset = create_asset(cluster="Alpha", bucket="plants", key="/out/x.json", extra={"k": 1})
    assert (asset.uri, asset.name, asset.extra) == (
        "oscar://alpha/plants/out/x.json",
        "oscar://alpha/plants/out/x.json",
        {"k": 1},
    )
    assert create_asset(cluster="alpha", bucket="plants", name="results").name == "results"
    with pytest.raises(ValueError, match="is not a bucket name"):
        create_asset(cluster="alpha", bucket="x", key="y")


# publishing -------------------------------------------------------------------------------------


def _context(*outlets: Any) -> dict[str, Any]:
    return {
        "ti": MagicMock(),
        "task": MagicMock(outlets=list(outlets)),
        "outlet_events": OutletEventAccessors(),
    }


def test_published_objects_land_on_the_oscar_outlets_that_cover_them() -> None:
    folder = create_asset(cluster="alpha", bucket="plants", key="out")
    elsewhere = create_asset(cluster="beta", bucket="plants", key="out")
    plain = Asset("not_oscar")
    context = _context(folder, elsewhere, plain)
    uris = publish_objects(
        context, ["plants/out/a.json", "plants/out/b.json"], cluster="alpha", extra={"n": 2}
    )
    assert uris == ["oscar://alpha/plants/out/a.json", "oscar://alpha/plants/out/b.json"]
    events = context["outlet_events"]
    assert events[folder].extra == {
        "n": 2,
        "objects": ["plants/out/a.json", "plants/out/b.json"],
        "uris": uris,
    }
    assert events[elsewhere].extra == {}
    assert events[plain].extra == {}


def test_an_asset_alias_outlet_gets_one_asset_event_per_object() -> None:
    alias = AssetAlias("oscar_results")
    context = _context(alias)
    publish_objects(context, ["plants/out/a.json", "plants/out/b.json"], cluster="alpha")
    added = context["outlet_events"][alias].asset_alias_events
    assert sorted(e.dest_asset_key.uri for e in added) == [
        "oscar://alpha/plants/out/a.json",
        "oscar://alpha/plants/out/b.json",
    ]


def test_the_run_operator_publishes_its_output_object_on_its_oscar_outlet(
    oscar_default: OscarLocal, deploy: Callable[..., dict[str, Any]], s3: Minio
) -> None:
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    service = deploy('printf "leaf" > "$TMP_OUTPUT_DIR/a.txt"\n')["name"]
    outlet = create_asset(cluster="oscar_default", bucket=bucket, key="runs")
    op = OscarRunServiceOperator(
        task_id="run",
        service_name=service,
        input_data="x",
        input_id="x",
        decode="files",
        output_object=f"{bucket}/runs/1/a.txt",
        outlets=[outlet],
    )
    context = _context(outlet)
    context["task"] = op
    result = op.execute(context)  # type: ignore[arg-type]
    assert result["saved"] == [f"{bucket}/runs/1/a.txt"]
    assert s3.get_object(bucket, "runs/1/a.txt").read() == b"leaf"
    assert context["outlet_events"][outlet].extra == {
        "service": service,
        "input": "x",
        "objects": [f"{bucket}/runs/1/a.txt"],
        "uris": [f"oscar://oscar_default/{bucket}/runs/1/a.txt"],
    }
