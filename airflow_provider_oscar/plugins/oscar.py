"""``OscarPlugin``: the "OSCAR" entry of the Airflow UI's navigation (Airflow 3.1+).

Registered twice, as community providers do: in the provider info's ``plugins`` (loaded when
``[core] lazy_discover_providers = False``) and as an ``airflow.plugins`` entry point (always
loaded); Airflow keeps the first plugin of a name. This module stays light because workers load
plugins too: the FastAPI app is only built when the API server asks for ``fastapi_apps``.
"""

from __future__ import annotations

import base64
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/oscar"  # airflow_provider_oscar.plugins.app.URL_PREFIX, without importing it

_ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" '
    'stroke="#3B9DE0" stroke-width="2.2" stroke-linecap="round">'
    '<circle cx="12" cy="12" r="8.5"/><circle cx="12" cy="12" r="3.2" fill="#3B9DE0"/>'
    '<path d="M12 1.5v3M12 19.5v3M1.5 12h3M19.5 12h3"/></svg>'
)
ICON = "data:image/svg+xml;base64," + base64.b64encode(_ICON.encode()).decode()


class _FastApiApps:
    """``fastapi_apps``, built on first access (on the class too: provider plugins are classes)."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        from airflow_provider_oscar.plugins.app import fastapi_app

        return [{"app": fastapi_app(), "url_prefix": URL_PREFIX, "name": "OSCAR"}]


class OscarPlugin(AirflowPlugin):
    """Clusters, services, jobs and composite-AI results of OSCAR, inside the Airflow UI."""

    name = "oscar"
    fastapi_apps = _FastApiApps()
    external_views = [
        {
            "name": "OSCAR",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "oscar",
            "icon": ICON,
            "nav_top_level": True,  # Airflow 3.3: on the toolbar, not in the "Plugins" menu
        }
    ]
