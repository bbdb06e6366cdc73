"""Extra links from OSCAR tasks to the OSCAR dashboard.

Where the dashboard's pages are (``grycap/oscar-dashboard`` at bc98e6c, July 2026, and
``grycap/oscar`` ``main.go`` at 7ade09e, June 2026):

- OSCAR serves the dashboard itself at ``{endpoint}/ui/``: ``r.Static("/ui", "./assets")``,
  and ``/`` is rewritten to ``/ui``.
- The dashboard routes with a ``HashRouter`` (``src/routes/router.tsx``, since October 2024), so
  every page lives after ``#``; the app's own routes also start with ``/ui``:

  - ``#/ui/services/{service}/settings``: the service (``src/pages/ui/services/router.tsx``;
    ``#/ui/services/{service}`` shows the same form);
  - ``#/ui/services/{service}/logs``: the service's jobs with their logs. There is no page per
    job: the job is picked in that list;
  - ``#/ui/services/{service}/deployment``: deployment status (dashboards from April 2026);
  - ``#/ui/minio/{bucket}/{folder/}``: the bucket browser at a folder
    (``src/pages/ui/minio/router.tsx``, route ``:name/*``). Objects have no page of their own,
    so output links open the object's folder.

A visitor who is not logged in is sent to ``#/login`` and, after logging in, to the service list.

Operators persist what a link needs with :meth:`persist` (under a key other than the link's
``xcom_key``, which the task runner overwrites with the URL) before any deferral; the task runner
calls :meth:`get_link` when the task ends.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class _OscarLink(BaseOperatorLink):
    """A dashboard page built from data the task persisted in XCom."""

    @classmethod
    def persist_key(cls) -> str:
        return f"oscar_link_{cls.__name__}"

    @classmethod
    def persist(
        cls,
        context: Context,
        *,
        endpoint: str,
        service: str | None,
        job: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        """Store what the link needs; call it in ``execute`` before deferring."""
        value = {"endpoint": endpoint, "service": service, "job": job, "bucket": bucket, "key": key}
        ti = context.get("ti")
        if ti is not None:  # a bare context (e.g. calling execute by hand) has no links
            ti.xcom_push(key=cls.persist_key(), value=value)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        data = XCom.get_value(key=self.persist_key(), ti_key=ti_key)
        if not isinstance(data, dict) or not data.get("endpoint"):
            return ""
        page = self.page(data)
        return f"{str(data['endpoint']).rstrip('/')}/ui/#/ui/{page}" if page is not None else ""

    @abstractmethod
    def page(self, data: dict[str, Any]) -> str | None:
        """The dashboard route after ``#/ui/``, or ``None`` when the data cannot make one."""


class OscarServiceLink(_OscarLink):
    """The service in the OSCAR dashboard (the service list when several were deployed)."""

    name = "OSCAR service"

    def page(self, data: dict[str, Any]) -> str | None:
        service = data.get("service")
        return f"services/{quote(service)}/settings" if service else "services"


class OscarJobLogsLink(_OscarLink):
    """The dashboard's job list with logs of the job's service (it has no page per job)."""

    name = "OSCAR job logs"

    def page(self, data: dict[str, Any]) -> str | None:
        service = data.get("service")
        return f"services/{quote(service)}/logs" if service else None


class OscarOutputLink(_OscarLink):
    """The folder of the output object (or prefix) in the dashboard's bucket browser."""

    name = "OSCAR output"

    def page(self, data: dict[str, Any]) -> str | None:
        bucket = data.get("bucket")
        if not bucket:
            return None
        key = str(data.get("key") or "")
        folder = key if key.endswith("/") else key.rpartition("/")[0] + "/"
        return f"minio/{quote(bucket)}/{quote(folder.lstrip('/'), safe='/')}"
