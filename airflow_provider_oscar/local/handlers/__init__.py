"""The embedded OSCAR's HTTP layer: one module per family of grycap/oscar ``pkg/handlers``.

Each module has ``register(app, ctx)``. :data:`MODULES` maps the route families of
:data:`airflow_provider_oscar.local.profiles.ROUTE_FAMILIES` to the modules that serve them; a
family without a module (yet) answers Gin's ``404 page not found`` on every release.
"""

from __future__ import annotations

from types import ModuleType

from airflow_provider_oscar.local.handlers import (
    buckets,
    deployment,
    job,
    logs,
    run,
    services,
    system,
)

MODULES: dict[str, ModuleType] = {
    "system": system,
    "services": services,
    "deployment": deployment,
    "run": run,
    "job": job,
    "logs": logs,
    "buckets": buckets,
}
