"""Provider metadata read by Airflow's ProvidersManager (validated against its schema)."""

from __future__ import annotations

from typing import Any

from airflow_provider_oscar import __version__
from airflow_provider_oscar.connection_form import CONNECTION_FIELDS, UI_BEHAVIOUR

_PACKAGE = "airflow_provider_oscar"


def _ui_field_behaviour() -> dict[str, Any]:
    return {
        "hidden-fields": UI_BEHAVIOUR["hidden_fields"],
        "relabeling": UI_BEHAVIOUR["relabeling"],
        "placeholders": UI_BEHAVIOUR["placeholders"],
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against its schema."""
    integration = "OSCAR"
    return {
        "package-name": "airflow-provider-oscar",
        "name": "OSCAR",
        "description": "`OSCAR <https://oscar.grycap.net>`__: deploy, invoke and compose "
        "serverless AI inference services on Kubernetes, Knative and MinIO.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://docs.oscar.grycap.net",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": [f"{_PACKAGE}.hooks.oscar", f"{_PACKAGE}.hooks.storage"],
            }
        ],
        "operators": [
            {
                "integration-name": integration,
                "python-modules": [
                    f"{_PACKAGE}.operators.service",
                    f"{_PACKAGE}.operators.invoke",
                    f"{_PACKAGE}.operators.batch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": integration,
                "python-modules": [f"{_PACKAGE}.sensors.oscar", f"{_PACKAGE}.sensors.storage"],
            }
        ],
        "triggers": [
            {
                "integration-name": integration,
                "python-modules": [
                    f"{_PACKAGE}.triggers.oscar",
                    f"{_PACKAGE}.triggers.storage",
                    f"{_PACKAGE}.triggers.events",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "oscar",
                "hook-class-name": f"{_PACKAGE}.hooks.oscar.OscarHook",
                "hook-name": "OSCAR",
                "ui-field-behaviour": _ui_field_behaviour(),
                "conn-fields": CONNECTION_FIELDS,
            }
        ],
        "extra-links": [
            f"{_PACKAGE}.links.OscarServiceLink",
            f"{_PACKAGE}.links.OscarJobLogsLink",
            f"{_PACKAGE}.links.OscarOutputLink",
        ],
        # oscar://<cluster>/<bucket>/<key>: objects in a cluster's buckets as Assets.
        "asset-uris": [
            {
                "schemes": ["oscar"],
                "handler": f"{_PACKAGE}.assets.sanitize_uri",
                "factory": f"{_PACKAGE}.assets.create_asset",
            }
        ],
        # The "OSCAR" page of the UI (also an `airflow.plugins` entry point, see pyproject.toml).
        "plugins": [{"name": "oscar", "plugin-class": f"{_PACKAGE}.plugins.oscar.OscarPlugin"}],
    }
