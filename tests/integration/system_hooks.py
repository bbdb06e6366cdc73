"""Hooks on an embedded OSCAR for the tests of the hook's buckets, logs, metrics and federation:
the admin's (Basic) and OIDC users' (a static bearer token each), with requests counted where
the cluster received them."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal


def admin_hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    conn = json.loads(oscar.connection_json())
    conn["extra"].update({"retries": 1, "backoff": 0.01})
    return _hook(conn, monkeypatch)


def user_hook(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch, user: str) -> OscarHook:
    """A hook authenticating as the OIDC user ``user`` (a fresh token, so a fresh release
    cache entry)."""
    token = f"{user}-{uuid.uuid4().hex}"
    monkeypatch.setitem(oscar.settings.bearer_tokens, token, user)
    conn = {
        "conn_type": "oscar",
        "host": oscar.endpoint,
        "extra": {"oidc_token": token, "retries": 1, "backoff": 0.01},
    }
    return _hook(conn, monkeypatch)


def _hook(conn: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> OscarHook:
    conn_id = f"oscar_system_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return OscarHook(conn_id)


def counted(oscar: OscarLocal) -> Callable[[], Counter[str]]:
    """Requests the cluster received from now on, by ``"METHOD /path"``."""
    assert oscar.cluster is not None
    cluster = oscar.cluster
    before = Counter(request_counts(cluster))

    def since() -> Counter[str]:
        now = Counter(request_counts(cluster))
        now.subtract(before)
        return +now

    return since
