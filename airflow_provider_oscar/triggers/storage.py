"""Deferrable wait for output objects to appear in an OSCAR cluster's buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_oscar.hooks.storage import ObjectInfo, OscarStorageHook
from airflow_provider_oscar.triggers.oscar import _OscarTrigger


def matching(
    objects: list[ObjectInfo], contains: str | None, newer_than: float | None
) -> list[ObjectInfo]:
    """Objects whose file name contains ``contains`` and were written after ``newer_than``."""
    return [
        o
        for o in objects
        if (not contains or contains in o.key.rsplit("/", 1)[-1])
        and (
            newer_than is None
            or o.last_modified is None
            or o.last_modified.timestamp() >= newer_than - 1.0
        )
    ]


class OscarOutputTrigger(_OscarTrigger):
    """Wait until ``bucket/prefix`` holds an object (whose name contains ``contains``).

    :param path: ``bucket/key`` of one object, or ``bucket/prefix`` with ``prefix=True``.
    :param contains: with a prefix, only objects whose file name contains this text count.
    :param newer_than: epoch seconds; only objects written at or after it count.
    """

    def __init__(
        self,
        *,
        path: str,
        prefix: bool = False,
        contains: str | None = None,
        newer_than: float | None = None,
        oscar_conn_id: str = OscarStorageHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.path = path
        self.prefix = prefix
        self.contains = contains
        self.newer_than = newer_than

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "path": self.path,
            "prefix": self.prefix,
            "contains": self.contains,
            "newer_than": self.newer_than,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OscarStorageHook(self.oscar_conn_id)
        base = {"path": self.path, "contains": self.contains}
        try:
            while True:
                if self.prefix:
                    objects = await hook.alist_objects(self.path)
                else:
                    found = await hook.astat(self.path)
                    objects = [found] if found else []
                hits = matching(objects, self.contains, self.newer_than)
                if hits:
                    yield TriggerEvent(
                        {**base, "status": "success", "objects": [o.to_dict() for o in hits]}
                    )
                    return
                if self._expired():
                    yield TriggerEvent(
                        {**base, "status": "timeout", "message": f"no output under {self.path}"}
                    )
                    return
                await self._sleep()
        except Exception as exc:
            yield TriggerEvent(
                {**base, "status": "error", "message": f"{type(exc).__name__}: {exc}"}
            )
