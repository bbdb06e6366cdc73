"""Finding the service to call: by its name, or by the AI4OS hub module it runs.

A module deployed from the AI4OS dashboard gets a generated name (``ai4papi-<uuid>``), so a DAG
names the module instead (``hub_module="plants-classification"``) and this helper finds the one
service of the cluster that runs it (:func:`~airflow_provider_oscar.deepaas.matches_hub_module`)
among those the connection's user can see.
"""

from __future__ import annotations

from airflow_provider_oscar.deepaas import pick_hub_service
from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.fdl import Service
from airflow_provider_oscar.hooks.oscar import OscarHook

__all__ = ["find_service"]


def find_service(
    hook: OscarHook, *, service_name: str | None = None, hub_module: str | None = None
) -> Service:
    """The service named ``service_name``, or the one running ``hub_module`` (give one).

    Raises :class:`OscarClientError` when it does not exist, or when no service or several run
    the module (with the candidates listed).
    """
    if (service_name is None) == (hub_module is None):
        raise OscarClientError("give exactly one of service_name and hub_module")
    cluster = hook.settings.name
    if hub_module is not None:
        return pick_hub_service(hook.list_services(), hub_module, cluster=cluster)
    assert service_name is not None
    service = hook.get_service(service_name)
    if service is None:
        raise OscarClientError(
            f"OSCAR cluster {cluster}: service {service_name!r} does not exist",
            status_code=404,
            service=service_name,
        )
    return service
