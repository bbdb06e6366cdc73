"""The ``oscar`` connection's extra fields and form behaviour, as the Airflow UI shows them.

Free of imports on purpose: the provider info reads it while Airflow itself is starting.
"""

from __future__ import annotations

from typing import Any

#: Connection extras, their labels and descriptions (the UI form and the provider info share it).
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "oidc_token": {
        "label": "OIDC access token",
        "description": "Bearer token for clusters with OIDC (e.g. EGI Check-in); "
        "instead of login/password.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "refresh_token": {
        "label": "OIDC refresh token",
        "description": "Refreshed into access tokens before they expire.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "token_endpoint": {
        "label": "OIDC token endpoint",
        "description": "Where the refresh token is exchanged (default: EGI Check-in).",
        "schema": {"type": ["string", "null"]},
    },
    "client_id": {
        "label": "OIDC client id",
        "description": "Client id for the refresh (default: token-portal).",
        "schema": {"type": ["string", "null"]},
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "description": "Turn off only for test clusters with self-signed certificates.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "timeout": {
        "label": "Request timeout (s)",
        "description": "For API calls (default 30).",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "run_timeout": {
        "label": "Synchronous run timeout (s)",
        "description": "For /run invocations (default 300, OSCAR's own limit).",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "minio_endpoint": {
        "label": "MinIO endpoint override",
        "description": "When /system/config names an address only reachable inside the cluster.",
        "schema": {"type": ["string", "null"]},
    },
    "cluster_id": {
        "label": "Cluster id",
        "description": "Name of this cluster in messages, FDL files and results.",
        "schema": {"type": ["string", "null"]},
    },
}
UI_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"host": "OSCAR endpoint", "login": "Username", "password": "Password"},
    "placeholders": {
        "host": "https://oscar.example.org",
        "login": "oscar",
        "token_endpoint": "https://aai.egi.eu/auth/realms/egi/protocol/openid-connect/token",
        "client_id": "token-portal",
        "minio_endpoint": "https://minio.oscar.example.org",
        "cluster_id": "my-cluster",
    },
}
