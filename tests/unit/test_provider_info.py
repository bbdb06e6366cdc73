"""The provider's metadata: valid for Airflow, and what Airflow's CLI lists."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import distribution
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from airflow_provider_oscar.get_provider_info import get_provider_info

AIRFLOW = Path(sys.executable).with_name("airflow")


def _airflow_cli(*args: str) -> list[dict[str, str]]:
    result = subprocess.run(
        [str(AIRFLOW), *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
        check=True,
    )
    table = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    return json.loads(table)


def test_provider_info_validates_against_the_schema_airflow_ships() -> None:
    schema = json.loads((files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_matches_the_installed_distribution() -> None:
    assert get_provider_info()["package-name"] == distribution("airflow-provider-oscar").name


@pytest.mark.parametrize("kind", ["hooks", "operators", "sensors", "triggers"])
def test_every_listed_module_imports(kind: str) -> None:
    for entry in get_provider_info()[kind]:
        for module in entry["python-modules"]:
            importlib.import_module(module)


def test_every_listed_class_imports() -> None:
    info = get_provider_info()
    paths = list(info["extra-links"]) + [c["hook-class-name"] for c in info["connection-types"]]
    for path in paths:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_airflow_lists_the_oscar_connection_type_and_its_links() -> None:
    hooks = _airflow_cli("providers", "hooks")
    oscar = [h for h in hooks if h["connection_type"] == "oscar"]
    assert oscar and oscar[0]["class"] == "airflow_provider_oscar.hooks.oscar.OscarHook"
    links = {row["extra_link_class_name"] for row in _airflow_cli("providers", "links")}
    assert "airflow_provider_oscar.links.OscarJobLogsLink" in links


def test_the_connection_form_declares_password_fields_for_secrets() -> None:
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert fields["oidc_token"]["schema"]["format"] == "password"
    assert fields["refresh_token"]["schema"]["format"] == "password"
