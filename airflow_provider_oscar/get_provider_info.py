"""Provider metadata read by Airflow's ProvidersManager."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against its schema."""
    return {
        "package-name": "airflow-provider-oscar",
        "name": "OSCAR",
        "description": "`OSCAR <https://oscar.grycap.net>`__ serverless AI inference platform.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "OSCAR",
                "external-doc-url": "https://docs.oscar.grycap.net",
                "tags": ["software"],
            }
        ],
    }
