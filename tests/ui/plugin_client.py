"""The plugin's app in this process, as one Airflow user with chosen permissions withheld.

The app is the one the API server mounts; only the login is replaced (the user is given, as
:func:`airflow.api_fastapi.core_api.security.get_user` would return it) and the auth manager is
Airflow's simple auth manager withholding the permissions a test names. Clusters come from
``AIRFLOW_CONN_*`` connections on the session's embedded OSCAR; ensemble runs from the session's
metadata DB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import (
    ConnectionDetails,
    DagAccessEntity,
    DagDetails,
)
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from airflow_provider_oscar.plugins import app as plugin_app


@dataclass
class Withheld:
    """Permissions the user lacks: connection ids, and ``(entity, dag_id)`` DAG accesses."""

    connections: set[str] = field(default_factory=set)
    dags: set[tuple[DagAccessEntity, str]] = field(default_factory=set)


class WithholdingAuthManager(SimpleAuthManager):
    """The simple auth manager, refusing exactly the :class:`Withheld` permissions."""

    def __init__(self, withheld: Withheld) -> None:
        super().__init__()
        self.withheld = withheld
        self.asked: list[tuple[str, Any]] = []

    def is_authorized_connection(
        self,
        *,
        method: Any,
        user: SimpleAuthManagerUser,
        details: ConnectionDetails | None = None,
    ) -> bool:
        conn_id = details.conn_id if details else None
        self.asked.append(("connection", conn_id))
        if conn_id in self.withheld.connections:
            return False
        return super().is_authorized_connection(method=method, user=user, details=details)

    def is_authorized_dag(
        self,
        *,
        method: Any,
        user: SimpleAuthManagerUser,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        dag_id = details.id if details else None
        self.asked.append((str(access_entity), dag_id))
        if (access_entity, dag_id) in self.withheld.dags:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )


@contextmanager
def plugin_client(
    monkeypatch: pytest.MonkeyPatch, withheld: Withheld | None = None, role: str = "op"
) -> Iterator[tuple[TestClient, WithholdingAuthManager]]:
    """A client of the plugin's app logged in as ``alice`` (``role``) lacking ``withheld``."""
    from airflow.api_fastapi.core_api.security import get_user

    manager = WithholdingAuthManager(withheld or Withheld())
    monkeypatch.setattr(plugin_app, "_auth_manager", lambda: manager)
    app = plugin_app.create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="alice", role=role)
    with TestClient(app) as client:
        yield client, manager
