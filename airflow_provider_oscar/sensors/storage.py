"""Sensor for output objects in an OSCAR cluster's buckets."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue

from airflow_provider_oscar.failures import task_outcome
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.links import OscarOutputLink
from airflow_provider_oscar.sensors.oscar import OscarBaseSensor
from airflow_provider_oscar.triggers.storage import OscarOutputTrigger, matching

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


class OscarOutputSensor(OscarBaseSensor):
    """Wait for an output object; the matching objects (as dicts) are the XCom value.

    :param path: ``bucket/key`` of one object, or ``bucket/prefix`` with ``prefix=True``.
    :param prefix: wait for any object under ``path`` instead of exactly ``path``.
    :param contains: only objects whose file name contains this text count.
    :param newer_than: epoch seconds; only objects written at or after it count.
    """

    template_fields: Sequence[str] = ("path", "contains", "oscar_conn_id")
    operator_extra_links = (OscarOutputLink(),)

    def __init__(
        self,
        *,
        path: str,
        prefix: bool = False,
        contains: str | None = None,
        newer_than: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.prefix = prefix
        self.contains = contains
        self.newer_than = newer_than

    @cached_property
    def hook(self) -> OscarStorageHook:
        return OscarStorageHook(self.oscar_conn_id)

    def persist_links(self, context: Context, key: str | None = None) -> None:
        """Link the watched folder, or (once found) the folder of the first match."""
        with task_outcome():
            bucket, path_key = split_path(self.path)
            endpoint = self.hook.settings.endpoint
        OscarOutputLink.persist(
            context, endpoint=endpoint, service=None, bucket=bucket, key=key or path_key
        )

    def check(self, context: Context) -> bool | PokeReturnValue:
        with task_outcome():
            if self.prefix:
                objects = self.hook.list_objects(self.path)
            else:
                found = self.hook.stat(self.path)
                objects = [found] if found else []
        hits = matching(objects, self.contains, self.newer_than)
        if not hits:
            self.log.info("no output at %s yet", self.path)
            return False
        return PokeReturnValue(True, self.found(context, [o.to_dict() for o in hits]))

    def trigger(self, deadline: float) -> BaseTrigger:
        return OscarOutputTrigger(
            path=self.path,
            prefix=self.prefix,
            contains=self.contains,
            newer_than=self.newer_than,
            oscar_conn_id=self.oscar_conn_id,
            poll_interval=self.poke_interval,
            deadline=deadline,
        )

    def on_success(self, context: Context, event: dict[str, Any]) -> Any:
        return self.found(context, event["objects"])

    def found(self, context: Context, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.log.info("found %s", ", ".join(f"{o['bucket']}/{o['key']}" for o in objects))
        if self.prefix:
            self.persist_links(context, key=objects[0]["key"])
        return objects
