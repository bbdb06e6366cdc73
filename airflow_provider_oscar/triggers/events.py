"""``OscarBucketEventTrigger``: an event per new object in a bucket, for ``AssetWatcher``.

OSCAR itself is event-driven (an upload into a service's input folder starts a job); this trigger
brings the same events to Airflow: an ``Asset`` watched by it gets an asset event for every new
object under ``bucket/prefix``, and DAGs scheduled on the asset run for them. Each event's payload
(the asset event's ``extra["payload"]``) says which object it was::

    {"id": "<bucket>/<key>@<etag>@<last_modified>", "bucket": ..., "key": ..., "path": "b/k",
     "etag": ..., "size": ..., "last_modified": "<ISO 8601>", "event_time": "<ISO 8601>",
     "watcher": <name>, "oscar_conn_id": ...}

**What counts as new.** The source of truth is the bucket listing (S3 ``ListObjectsV2``, every
page, so objects arriving in any key order are seen); an object is identified by key, ETag and
``LastModified``, so an overwrite or a re-upload under the same key is a new object too. Objects
already there when a watcher first runs are its baseline, not events (``include_existing`` turns
them into events): a watcher reports changes, never states, so it cannot schedule DAGs endlessly.
On MinIO the notification stream (``ListenBucketNotification``) wakes the trigger as soon as an
upload lands; it only shortens the wait, the listing still decides, so a dropped notification
loses nothing. Other S3 servers (and moto, which never delivers notifications) are polled every
``poll_interval`` seconds; the stream is not even tried twice.

**Where the cursor lives, and why there.** Trigger arguments are fixed when the ``AssetWatcher``
is defined (and Airflow de-duplicates watchers by them), so a trigger cannot record progress in its
own arguments. The cursor is a small JSON object in the bucket itself, under the provider's own
prefix ``<bucket>/.oscar-airflow/events/<digest of path and name>.json`` (or ``cursor_path``),
outside every watched path and every service's input folder: the trigger refuses, with a clear
error, a cursor inside a MinIO input folder of any service on the cluster, where writing it
would start a job. A cursor left at the old default (``<bucket>/.oscar-events/``) is read once
and carried over.

* the triggerer reaches it with the same credentials and the same awaitable, locally signed S3
  requests as the listing (no blocking call, no extra service, no Airflow database access);
* it works on every supported Airflow (3.1+). Airflow 3.3's per-asset state store would do on 3.3
  only, keyed by asset rather than by watched prefix, and needs the triggerer's supervisor channel;
  an Airflow Variable has no awaitable write in the Task SDK;
* it lives and dies with the data it describes: a bucket restored elsewhere, or a fresh Airflow
  database, keeps its place instead of re-reporting everything;
* writes are conditional (``If-Match`` the ETag read, ``If-None-Match: *`` for the first), so two
  triggerers running the same watcher at once (a redistribution, a high-availability pair) cannot
  both report an object: the loser of a write reloads the cursor and reports nothing (servers
  without conditional writes, such as older MinIO releases, ignore the condition: there the
  last writer wins).

The cursor holds the newest ``LastModified`` seen and the objects reported within ``lookback``
seconds of it. Objects older than that horizon count as reported, so the cursor stays small
(the objects of the last ``lookback`` seconds, not the bucket's history); ``lookback`` must exceed
the longest delay between an object's ``LastModified`` stamp and its appearance in a listing
(a multipart upload is stamped when it starts).

**Exactly once, and the window that remains.** For every batch of new objects the cursor is
written *before* their events are yielded, and an event is yielded only after its write
succeeded. Hence an object is never reported twice: not by a triggerer restarted from the same
arguments (it starts from the cursor), not by a second instance (conditional write), not after a
write whose answer was lost (the cursor is read back: the trigger's own write is recognised by a
token and its events are then yielded). What remains is at-most-once in one window: a triggerer
process that ends after a cursor write but before it has stored that batch's events in Airflow's
database (it stores yielded events about once a second) loses those events, and their objects
are not reported again. Writing the cursor after the events instead would only trade that window
for duplicates, since a trigger learns nothing of its events being stored; Airflow 3.3's
shared-stream "ack mode" does tell, at the price of a 3.3-only code path, and would turn the
window into at-least-once. The payload's ``id`` (bucket, key, ETag, ``LastModified``) lets
consumers de-duplicate replays, and a periodic sweep such as ``oscar_plant_daily`` catches any
object left unprocessed. Failures to list or to write that heal are logged and retried with
back-off; they never become events, which would schedule DAG runs. 401 and 403 (on the listing
or the cursor) do not heal: they fail the watcher with a message saying which and where.

**Lean.** One S3 session (one HTTP client, ``/system/config`` read once) serves the whole run;
the listing asks for the watched prefix only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks.correlation import STATE_FOLDER
from airflow_provider_oscar.hooks.s3 import S3Session
from airflow_provider_oscar.hooks.storage import ObjectInfo, OscarStorageHook, split_path
from airflow_provider_oscar.patience import can_heal
from airflow_provider_oscar.triggers.cursor import (
    LEGACY_FOLDER,
    Cursor,
    cursor_path_for,
    stamp,
)

MAX_BACKOFF = 300.0


class OscarBucketEventTrigger(BaseEventTrigger):
    """Fire once per new object under ``bucket/prefix`` (for an ``AssetWatcher``).

    See the module documentation for what counts as new, where progress is kept and the
    delivery guarantee.

    :param path: ``bucket/prefix`` to watch (``bucket`` alone watches the whole bucket).
    :param name: names this watcher's cursor: watchers of one path with different names each
        get every event.
    :param include: report only keys matching one of these ``fnmatch`` patterns (matched against
        the whole key; ``*`` also matches ``/``).
    :param exclude: never report keys matching one of these (e.g. results written next to their
        inputs). Keys under ``.oscar-airflow/`` (cursors, job records) or ``.oscar-events/``
        (earlier versions' cursors) are never reported.
    :param oscar_conn_id: the OSCAR connection whose MinIO holds the bucket.
    :param poll_interval: seconds between listings (at most; MinIO notifications wake it sooner).
    :param lookback: seconds before the newest object within which objects are tracked one by
        one; older arrivals count as reported (see the module documentation).
    :param cursor_path: ``bucket/key`` of the cursor (default under
        ``<bucket>/.oscar-airflow/events/``);
        the connection's credentials must be able to write there.
    :param include_existing: on a watcher's very first run, report the objects already there
        instead of taking them as its baseline.
    :param listen: use MinIO's notification stream, when the server is MinIO, to wake up early.
    """

    def __init__(
        self,
        *,
        path: str,
        name: str = "default",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        oscar_conn_id: str = OscarStorageHook.default_conn_name,
        poll_interval: float = 30.0,
        lookback: float = 3600.0,
        cursor_path: str | None = None,
        include_existing: bool = False,
        listen: bool = True,
    ) -> None:
        super().__init__()
        split_path(path)  # refuses a path without a bucket
        if cursor_path is not None:
            split_path(cursor_path)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}")
        if lookback < 0:
            raise ValueError(f"lookback must not be negative, not {lookback}")
        self.path = path
        self.name = name
        self.include = list(include) if include else None
        self.exclude = list(exclude) if exclude else None
        self.oscar_conn_id = oscar_conn_id
        self.poll_interval = float(poll_interval)
        self.lookback = float(lookback)
        self.cursor_path = cursor_path
        self.include_existing = include_existing
        self.listen = listen

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}", {
            "path": self.path,
            "name": self.name,
            "include": self.include,
            "exclude": self.exclude,
            "oscar_conn_id": self.oscar_conn_id,
            "poll_interval": self.poll_interval,
            "lookback": self.lookback,
            "cursor_path": self.cursor_path,
            "include_existing": self.include_existing,
            "listen": self.listen,
        }

    @property
    def cursor(self) -> str:
        """``bucket/key`` of this watcher's cursor."""
        return self.cursor_path or cursor_path_for(self.path, self.name)

    def selects(self, key: str) -> bool:
        """Whether an object with this key is one this watcher reports."""
        _, prefix = split_path(self.path)
        if prefix.endswith("/") and not key.startswith(prefix):
            return False  # "in/" watches the folder, not also "inbox/..." beside it
        for folder in (STATE_FOLDER, LEGACY_FOLDER):
            if key.startswith(f"{folder}/") or f"/{folder}/" in key:
                return False
        if self.include and not any(fnmatch.fnmatchcase(key, p) for p in self.include):
            return False
        return not (self.exclude and any(fnmatch.fnmatchcase(key, p) for p in self.exclude))

    # the run ------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OscarStorageHook(self.oscar_conn_id)
        await self._check_cursor_place(hook)
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(hook, wake)) if self.listen else None
        state: tuple[Cursor, str | None] | None = None
        failures = 0
        try:
            async with hook.as3() as s3:
                while True:
                    wake.clear()
                    try:
                        if state is None:
                            state = await self._load(s3)
                        state, batch = await self._poll(s3, *state)
                        failures = 0
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        if not can_heal(exc):
                            raise self._fatal(exc) from exc
                        failures += 1
                        state = None  # read the cursor again: it may have moved meanwhile
                        self.log.warning(
                            "watching %s failed (%d in a row): %s: %s",
                            self.path,
                            failures,
                            type(exc).__name__,
                            exc,
                        )
                        batch = []
                    for obj in batch:
                        yield TriggerEvent(self._payload(obj))
                    await self._pause(wake, failures)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    def _fatal(self, exc: Exception) -> OscarClientError:
        status = getattr(exc, "status_code", None)
        return OscarClientError(
            f"the watcher of {self.path} (cursor {self.cursor}) stops: {exc}. The connection "
            f"{self.oscar_conn_id!r} must be allowed to list {self.path} and to read and write "
            "the cursor; fix its credentials or give cursor_path a place it may write",
            status_code=status,
        )

    async def _check_cursor_place(self, hook: OscarStorageHook) -> None:
        """Refuse a cursor inside a service's input folder: writing it would start a job."""
        try:
            services = await hook.acall(lambda api: api.list_services())
        except Exception as exc:  # nothing learnt, nothing refused
            self.log.info("could not read the cluster's services (%s)", exc)
            return
        for service in services:
            for io in service.input or []:
                folder = io.path.strip("/")
                if io.provider_type == "minio" and self.cursor.startswith(f"{folder}/"):
                    raise OscarClientError(
                        f"the cursor {self.cursor} of the watcher of {self.path} is inside the "
                        f"input folder {folder} of service {service.name!r}: every write of it "
                        "would start a job; give cursor_path a place outside input folders"
                    )

    async def _pause(self, wake: asyncio.Event, failures: int) -> None:
        """Wait for the next listing: the poll interval, a notification, or a back-off."""
        if failures:
            await asyncio.sleep(min(self.poll_interval * 2 ** min(failures, 10), MAX_BACKOFF))
            return
        # not asyncio.wait_for: before Python 3.12 it swallows a cancellation that arrives as
        # the event is set, and the trigger would never stop (python/cpython#86296)
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([woken], timeout=self.poll_interval)
        finally:
            woken.cancel()
        await asyncio.sleep(min(1.0, self.poll_interval) / 4)  # let a burst of uploads settle

    async def _load(self, s3: S3Session) -> tuple[Cursor, str | None]:
        """The stored cursor and its ETag; a fresh cursor (and ``None``) when there is none.

        With the default place, a cursor at the old default is carried over (its ETag is not
        kept: the first write creates the cursor at the new place)."""
        fresh = Cursor(self.path, self.name, self.lookback)
        found = await s3.get(*split_path(self.cursor))
        carried = False
        if found is None and self.cursor_path is None:
            found = await s3.get(*split_path(cursor_path_for(self.path, self.name, LEGACY_FOLDER)))
            carried = found is not None
        if found is None:
            return fresh, None
        data, info = found.data, found.info
        try:
            cursor = Cursor.from_json(data, path=self.path, name=self.name, lookback=self.lookback)
            return cursor, None if carried else info.etag
        except (ValueError, TypeError) as exc:
            self.log.error(
                "the cursor %s is unreadable (%s); starting again from the objects there now",
                self.cursor,
                exc,
            )
            return fresh, info.etag  # a new baseline, even with include_existing

    async def _poll(
        self, s3: S3Session, cursor: Cursor, etag: str | None
    ) -> tuple[tuple[Cursor, str | None] | None, list[ObjectInfo]]:
        """List once; commit the new objects to the cursor; return the state and what to yield."""
        listed = [o for o in await s3.list(*split_path(self.path)) if self.selects(o.key)]
        first_run = cursor.generation == 0  # nothing stored yet (or nothing readable)
        new: list[ObjectInfo] = []
        if first_run and not (self.include_existing and etag is None):
            following = cursor.advanced(listed, listed)  # what is there now is the baseline
            following.events = cursor.events
        else:
            new = sorted(
                (o for o in listed if cursor.is_new(o)),
                key=lambda o: (stamp(o.last_modified), o.key),
            )
            if not new and not first_run:
                return (cursor, etag), []
            following = cursor.advanced(listed, new)
        following.writer = uuid.uuid4().hex
        try:
            stored = await self._commit(s3, following, etag)
        except OscarApiError as exc:
            if not (first_run and not listed and exc.status_code == 404):
                raise
            # No bucket yet, so nothing to take as the baseline and nowhere to write one:
            # every object that appears from now on is new.
            self.log.info("%s does not exist yet; every object put there will be new", self.path)
            return (following, None), []
        if stored is None:
            self.log.info("the cursor %s moved meanwhile (another triggerer?)", self.cursor)
            return None, []
        if first_run:
            self.log.info(
                "watching %s from %s: %d objects there %s",
                self.path,
                self.cursor,
                len(listed),
                "are reported" if self.include_existing else "form the baseline",
            )
        return (following, stored), new

    async def _commit(self, s3: S3Session, cursor: Cursor, etag: str | None) -> str | None:
        """Write the cursor over version ``etag``: its new ETag, or ``None`` if it had moved."""
        bucket, key = split_path(self.cursor)
        try:
            return await s3.put(
                bucket,
                key,
                cursor.to_json(),
                "application/json",
                if_match=etag,
                if_none_match=etag is None,
            )
        except (httpx.TransportError, OscarApiError) as exc:
            if not can_heal(exc):
                raise
            # The write may have happened with its answer lost: ours if it bears our token.
            found = await s3.get(bucket, key)
            if found is not None and _writer(found.data) == cursor.writer:
                return found.info.etag
            raise

    def _payload(self, obj: ObjectInfo) -> dict[str, Any]:
        modified = stamp(obj.last_modified)
        return {
            "id": f"{obj.bucket}/{obj.key}@{obj.etag}@{modified}",
            "bucket": obj.bucket,
            "key": obj.key,
            "path": f"{obj.bucket}/{obj.key}",
            "etag": obj.etag,
            "size": obj.size,
            "last_modified": modified,
            "event_time": stamp(datetime.now(timezone.utc)),
            "watcher": self.name,
            "oscar_conn_id": self.oscar_conn_id,
        }

    async def _listen(self, hook: OscarStorageHook, wake: asyncio.Event) -> None:
        """Set ``wake`` on every MinIO notification; give up for good where there are none."""
        while True:
            try:
                async for _record in hook.alisten(self.path):
                    wake.set()
            except OscarApiError as exc:
                self.log.info("%s; polling every %g s", exc, self.poll_interval)
                return
            except (httpx.HTTPError, ValueError) as exc:
                self.log.info("the notification stream broke (%s); reconnecting", exc)
            await asyncio.sleep(max(self.poll_interval, 1.0))  # ended or broke: reconnect


def _writer(data: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(data).get("writer") or "")
    return None
