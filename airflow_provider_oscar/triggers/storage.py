"""Deferrable wait for output objects to appear in an OSCAR cluster's buckets.

The trigger keeps one S3 session for its run (one HTTP client, ``/system/config`` read once),
asks for exactly what it waits on (a ``HEAD`` of one object, or a listing of the folder that
holds the outputs: never the bucket around it), and rides out failures that heal
(:mod:`~airflow_provider_oscar.patience`); 401 and 403 end the wait with a clear error.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_oscar.hooks.s3 import ObjectInfo, S3Session
from airflow_provider_oscar.hooks.storage import OscarStorageHook, split_path
from airflow_provider_oscar.patience import Patience
from airflow_provider_oscar.triggers.base import OscarTrigger


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


async def look_for(s3: S3Session, path: str, prefix: bool) -> list[ObjectInfo]:
    """The object at ``path``, or the objects under the folder ``path`` (``prefix``)."""
    bucket, key = split_path(path)
    if prefix:
        return await s3.list(bucket, key)
    found = await s3.stat(bucket, key)
    return [found] if found else []


class OscarOutputTrigger(OscarTrigger):
    """Wait until ``bucket/prefix`` holds an object (whose name contains ``contains``).

    :param path: ``bucket/key`` of one object, or ``bucket/prefix`` with ``prefix=True``.
    :param contains: with a prefix, only objects whose file name contains this text count.
    :param newer_than: epoch seconds; only objects written at or after it count.
    :param input_object: ``bucket/key`` of the input whose upload started the work: removed when
        the user kills the deferred task, so no job starts from it later.
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
        input_object: str | None = None,
    ) -> None:
        super().__init__(
            oscar_conn_id=oscar_conn_id, poll_interval=poll_interval, deadline=deadline
        )
        self.path = path
        self.prefix = prefix
        self.contains = contains
        self.newer_than = newer_than
        self.input_object = input_object

    def _kwargs(self) -> dict[str, Any]:
        return {
            **super()._kwargs(),
            "path": self.path,
            "prefix": self.prefix,
            "contains": self.contains,
            "newer_than": self.newer_than,
            "input_object": self.input_object,
        }

    def _base(self) -> dict[str, Any]:
        return {"path": self.path, "contains": self.contains}

    async def _wait(self, base: dict[str, Any]) -> dict[str, Any]:
        patience = Patience(f"outputs in {self.path}", self.log, base=self.poll_interval)
        async with OscarStorageHook(self.oscar_conn_id).as3() as s3:

            async def look() -> list[ObjectInfo]:
                return await look_for(s3, self.path, self.prefix)

            while True:
                hits = matching(await self._ask(look, patience), self.contains, self.newer_than)
                if hits:
                    return {**base, "status": "success", "objects": [o.to_dict() for o in hits]}
                if self._expired():
                    return {**base, "status": "timeout", "message": f"no output under {self.path}"}
                await self._sleep()

    async def cancel_remote(self) -> None:
        """Remove the pending input object, so no job starts from it after the kill."""
        if self.input_object:
            bucket, key = split_path(self.input_object)
            async with OscarStorageHook(self.oscar_conn_id).as3() as s3:
                await s3.delete(bucket, key)
            self.log.info("removed the pending input %s", self.input_object)
