"""The bucket-event trigger against the embedded OSCAR's S3: once per object, across restarts.

The trigger is driven the way the triggerer drives it (its ``run()`` generator in a task); a
"restart" closes that generator and builds a new trigger from ``serialize()``. Absence of
duplicates is shown without sleeping: after the expected events, a sentinel object is uploaded
and awaited; a duplicate would be reported by the same listing or an earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from airflow.sdk import Asset, AssetWatcher
from airflow.sdk.module_loading import import_string
from minio import Minio

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.hooks.s3 import S3Session
from airflow_provider_oscar.hooks.storage import OscarStorageHook
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.triggers.cursor import Cursor, cursor_path_for
from airflow_provider_oscar.triggers.events import OscarBucketEventTrigger

FAST = {"poll_interval": 0.05}


@pytest.fixture
def connected(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Triggers reach the session's OSCAR, and any synchronous connection lookup fails."""

    def no_sync_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trigger looked its connection up synchronously")

    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", oscar.connection_json())
    monkeypatch.setattr(OscarHook, "get_connection", no_sync_lookup)
    yield


@pytest.fixture
def bucket(s3: Minio) -> str:
    name = f"inbox-{uuid.uuid4().hex[:10]}"
    s3.make_bucket(name)
    return name


def put(s3: Minio, bucket: str, key: str, content: bytes = b"{}") -> None:
    s3.put_object(bucket, key, io.BytesIO(content), len(content))


class Watch:
    """A trigger's ``run()`` pumped in the background, its event payloads collected."""

    def __init__(self, trigger: OscarBucketEventTrigger) -> None:
        self.trigger = trigger
        self.events: list[dict[str, Any]] = []
        self._run: AsyncIterator[Any] = trigger.run()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for event in self._run:
            self.events.append(event.payload)

    def reported(self) -> list[str]:
        return [e["key"] for e in self.events]

    async def until(self, probe: Callable[[], Any], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if self._task.done():
                self._task.result()  # raises what stopped the trigger
                raise AssertionError("the trigger stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"not met within {timeout} s; events: {self.reported()}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """What a triggerer shutdown does to the trigger: cancel it where it waits."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._run.aclose()  # type: ignore[attr-defined]


def restarted(trigger: OscarBucketEventTrigger) -> OscarBucketEventTrigger:
    """The trigger a triggerer rebuilds from the stored row after a restart."""
    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert isinstance(rebuilt, OscarBucketEventTrigger)
    return rebuilt


def cursor_exists(s3: Minio, trigger: OscarBucketEventTrigger) -> bool:
    bucket, _, key = trigger.cursor.partition("/")
    try:
        s3.stat_object(bucket, key)
    except Exception:
        return False
    return True


# serialisation and arguments ----------------------------------------------------------------


def test_the_trigger_rebuilds_from_its_serialized_classpath_and_json_kwargs() -> None:
    trigger = OscarBucketEventTrigger(
        path="inbox/specimens/", name="w", exclude=["*.out.json"], poll_interval=5, lookback=60
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_oscar.triggers.events.OscarBucketEventTrigger"
    assert restarted(trigger).serialize() == (classpath, kwargs)


def test_identical_watchers_hash_alike_and_different_paths_do_not() -> None:
    def digest(path: str) -> int:
        return OscarBucketEventTrigger.hash(*OscarBucketEventTrigger(path=path).serialize())

    assert digest("inbox/a/") == digest("inbox/a/")
    assert digest("inbox/a/") != digest("inbox/b/")


def test_the_trigger_is_accepted_by_an_asset_watcher() -> None:
    trigger = OscarBucketEventTrigger(path="inbox/")
    asset = Asset("inbox", watchers=[AssetWatcher(name="inbox_watcher", trigger=trigger)])
    assert asset.watchers[0].trigger is trigger


def test_the_default_cursor_depends_on_the_path_and_the_watcher_name() -> None:
    one = cursor_path_for("inbox/a/", "w1")
    assert one.startswith("inbox/.oscar-airflow/events/") and one.endswith(".json")
    assert one == cursor_path_for("inbox/a/", "w1")
    assert len({one, cursor_path_for("inbox/a/", "w2"), cursor_path_for("inbox/b/", "w1")}) == 3


def test_bad_arguments_are_refused_when_the_watcher_is_defined() -> None:
    with pytest.raises(OscarApiError, match="names no bucket"):
        OscarBucketEventTrigger(path="/")
    with pytest.raises(ValueError, match="poll_interval"):
        OscarBucketEventTrigger(path="inbox/", poll_interval=0)


def test_cursor_files_and_excluded_keys_are_never_selected() -> None:
    trigger = OscarBucketEventTrigger(path="inbox", exclude=["*.consensus.json"])
    assert trigger.selects("specimens/a.json")
    assert not trigger.selects("specimens/a.json.consensus.json")
    assert not trigger.selects(".oscar-events/abc.json")
    only = OscarBucketEventTrigger(path="inbox", include=["*.png", "*.jpg"])
    assert only.selects("x/photo.jpg") and not only.selects("x/notes.txt")
    folder = OscarBucketEventTrigger(path="inbox/in/")
    assert folder.selects("in/a.json") and not folder.selects("incoming/a.json")


def test_an_unreadable_cursor_is_refused_rather_than_trusted() -> None:
    for data in (b"[]", b'{"version": 1, "reported": {"k": "etag"}}', b'{"version": 9}'):
        with pytest.raises(ValueError):
            Cursor.from_json(data, path="b/p", name="n", lookback=1.0)


# events against the embedded OSCAR ------------------------------------------------------------


@pytest.mark.usefixtures("connected")
async def test_events_fire_exactly_once_per_object_across_a_triggerer_restart(
    s3: Minio, bucket: str
) -> None:
    put(s3, bucket, "specimens/old.json")  # there before the watcher: its baseline
    trigger = OscarBucketEventTrigger(path=f"{bucket}/specimens/", name="restart", **FAST)
    first = Watch(trigger)
    await first.until(lambda: cursor_exists(s3, trigger))
    for key in ("specimens/z.json", "specimens/a.json", "specimens/m.json"):  # any key order
        put(s3, bucket, key)
    await first.until(lambda: len(first.events) >= 3)
    await first.stop()
    put(s3, bucket, "specimens/b.json")  # uploaded while no triggerer runs
    put(s3, bucket, "specimens/y.json")

    second = Watch(restarted(trigger))
    await second.until(lambda: len(second.events) >= 2)
    put(s3, bucket, "specimens/sentinel.json")
    await second.until(lambda: "specimens/sentinel.json" in second.reported())
    await second.stop()

    assert sorted(first.reported()) == ["specimens/a.json", "specimens/m.json", "specimens/z.json"]
    assert sorted(second.reported()) == [
        "specimens/b.json",
        "specimens/sentinel.json",
        "specimens/y.json",
    ]


@pytest.mark.usefixtures("connected")
async def test_an_object_arriving_after_a_later_key_was_reported_is_reported_too(
    s3: Minio, bucket: str
) -> None:
    """Keys arrive out of order: ``z`` is reported first, then ``a`` and ``m`` land."""
    trigger = OscarBucketEventTrigger(path=f"{bucket}/in/", name="order", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    put(s3, bucket, "in/z.json")
    await watch.until(lambda: watch.reported() == ["in/z.json"])
    put(s3, bucket, "in/a.json")
    await watch.until(lambda: len(watch.events) == 2)
    put(s3, bucket, "in/m.json")
    await watch.until(lambda: len(watch.events) == 3)
    put(s3, bucket, "in/sentinel.json")
    await watch.until(lambda: "in/sentinel.json" in watch.reported())
    await watch.stop()
    assert watch.reported() == ["in/z.json", "in/a.json", "in/m.json", "in/sentinel.json"]


async def test_a_watcher_cancelled_just_as_a_notification_wakes_it_stops() -> None:
    """The triggerer's cancellation and a MinIO notification in one loop turn: the cancellation
    wins (``asyncio.wait_for`` before Python 3.12 would drop it, and the watcher ran on)."""
    trigger = OscarBucketEventTrigger(path="inbox/in/", name="cancel", poll_interval=30)
    wake = asyncio.Event()
    pausing = asyncio.create_task(trigger._pause(wake, failures=0))
    await asyncio.sleep(0)  # it waits for the next listing
    wake.set()
    pausing.cancel()
    await asyncio.wait([pausing], timeout=5)
    assert pausing.cancelled()


@pytest.mark.usefixtures("connected")
async def test_an_event_payload_identifies_the_object_for_deduplication(
    s3: Minio, bucket: str
) -> None:
    trigger = OscarBucketEventTrigger(path=bucket, name="payload", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    put(s3, bucket, "p/one.json", b'{"x": 1}')
    await watch.until(lambda: watch.events)
    await watch.stop()
    payload = watch.events[0]
    stat = s3.stat_object(bucket, "p/one.json")
    assert payload["bucket"] == bucket and payload["key"] == "p/one.json"
    assert payload["path"] == f"{bucket}/p/one.json"
    assert payload["etag"] == stat.etag.strip('"')
    assert payload["size"] == 8
    assert payload["last_modified"] and payload["event_time"]
    assert payload["id"] == f"{bucket}/p/one.json@{payload['etag']}@{payload['last_modified']}"
    assert payload["watcher"] == "payload" and payload["oscar_conn_id"] == "oscar_default"
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.usefixtures("connected")
async def test_existing_objects_fire_only_with_include_existing(s3: Minio, bucket: str) -> None:
    put(s3, bucket, "in/there-before.json")
    trigger = OscarBucketEventTrigger(
        path=f"{bucket}/in/", name="existing", include_existing=True, **FAST
    )
    watch = Watch(trigger)
    await watch.until(lambda: watch.events)
    put(s3, bucket, "in/sentinel.json")
    await watch.until(lambda: "in/sentinel.json" in watch.reported())
    await watch.stop()
    assert watch.reported() == ["in/there-before.json", "in/sentinel.json"]


@pytest.mark.usefixtures("connected")
async def test_an_overwritten_object_fires_again_with_its_new_etag(s3: Minio, bucket: str) -> None:
    trigger = OscarBucketEventTrigger(path=bucket, name="overwrite", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    put(s3, bucket, "k.json", b"1")
    await watch.until(lambda: len(watch.events) == 1)
    put(s3, bucket, "k.json", b"22")
    await watch.until(lambda: len(watch.events) == 2)
    await watch.stop()
    assert [e["key"] for e in watch.events] == ["k.json", "k.json"]
    assert watch.events[0]["etag"] != watch.events[1]["etag"]


@pytest.mark.usefixtures("connected")
async def test_results_written_next_to_inputs_and_the_cursor_never_fire(
    s3: Minio, bucket: str
) -> None:
    trigger = OscarBucketEventTrigger(
        path=bucket, name="whole-bucket", exclude=["*.consensus.json"], **FAST
    )
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    put(s3, bucket, "a.json.consensus.json")
    put(s3, bucket, "a.json")
    await watch.until(lambda: watch.events)
    put(s3, bucket, "sentinel.json")  # the cursor was rewritten meanwhile: no event for it
    await watch.until(lambda: "sentinel.json" in watch.reported())
    await watch.stop()
    assert watch.reported() == ["a.json", "sentinel.json"]


@pytest.mark.usefixtures("connected")
async def test_a_watcher_started_before_its_bucket_exists_reports_what_lands_there(
    s3: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"later-{uuid.uuid4().hex[:10]}"
    real_list = S3Session.list
    listings: list[int] = []

    async def counted(self: S3Session, *args: Any, **kw: Any) -> Any:
        found = await real_list(self, *args, **kw)
        listings.append(len(found))
        return found

    monkeypatch.setattr(S3Session, "list", counted)
    trigger = OscarBucketEventTrigger(path=f"{bucket}/in/", name="later", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: len(listings) >= 2)  # the bucket was missing, twice
    s3.make_bucket(bucket)
    put(s3, bucket, "in/first.json")
    await watch.until(lambda: watch.events)
    await watch.stop()
    assert watch.reported() == ["in/first.json"]


@pytest.mark.usefixtures("connected")
async def test_a_second_triggerer_with_a_stale_cursor_reports_nothing(
    s3: Minio, bucket: str
) -> None:
    one = OscarBucketEventTrigger(path=bucket, name="pair", **FAST)
    two = restarted(one)
    async with OscarStorageHook().as3() as session:
        baseline, _ = await one._poll(session, *await one._load(session))
        assert baseline is not None
        stale = await two._load(session)  # both now hold the same cursor version
        put(s3, bucket, "x.json")
        after_one, reported_by_one = await one._poll(session, *baseline)
        after_two, reported_by_two = await two._poll(session, *stale)
    assert [o.key for o in reported_by_one] == ["x.json"]
    assert after_one is not None
    assert (after_two, reported_by_two) == (None, [])  # lost the conditional write: re-read


@pytest.mark.usefixtures("connected")
async def test_a_cursor_write_whose_answer_was_lost_still_reports_its_objects(
    s3: Minio, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trigger = OscarBucketEventTrigger(path=bucket, name="lost-answer", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    real_put = S3Session.put

    async def put_then_drop_the_answer(self: S3Session, *args: Any, **kw: Any) -> Any:
        await real_put(self, *args, **kw)
        raise httpx.ReadError("connection reset while reading the answer")

    monkeypatch.setattr(S3Session, "put", put_then_drop_the_answer)
    put(s3, bucket, "y.json")
    await watch.until(lambda: watch.events)
    monkeypatch.setattr(S3Session, "put", real_put)
    put(s3, bucket, "sentinel.json")
    await watch.until(lambda: "sentinel.json" in watch.reported())
    await watch.stop()
    assert watch.reported() == ["y.json", "sentinel.json"]


@pytest.mark.usefixtures("connected")
async def test_listing_failures_are_retried_and_never_become_events(
    s3: Minio, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trigger = OscarBucketEventTrigger(path=bucket, name="flaky", **FAST)
    watch = Watch(trigger)
    await watch.until(lambda: cursor_exists(s3, trigger))
    real_list = S3Session.list
    calls: list[int] = []

    async def failing_twice(self: S3Session, *args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise OscarApiError("S3 list answered 503", status_code=503)
        return await real_list(self, *args, **kw)

    monkeypatch.setattr(S3Session, "list", failing_twice)
    put(s3, bucket, "z.json")
    await watch.until(lambda: watch.events)
    await watch.stop()
    assert len(calls) >= 3
    assert watch.reported() == ["z.json"]


async def test_servers_without_a_notification_stream_are_told_apart_at_once(
    oscar: OscarLocal, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = json.loads(oscar.connection_json())
    assert oscar.minio is not None
    connection["extra"]["minio_endpoint"] = oscar.minio.backend.endpoint  # moto: no stream
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps(connection))
    records = OscarStorageHook().alisten(f"{bucket}/in/")
    started = time.monotonic()
    with pytest.raises(OscarApiError, match="no bucket-notification stream"):
        await records.__anext__()
    assert time.monotonic() - started < 5


# MinIO's notification stream (a stand-in server sending what MinIO sends) --------------------


RECORDS = [
    {"eventName": "s3:ObjectCreated:Put", "s3": {"object": {"key": "in%2Fa.json"}}},
    {"eventName": "s3:ObjectCreated:Put", "s3": {"object": {"key": "in%2Fb.json"}}},
]


@pytest_asyncio.fixture(loop_scope="function")
async def minio_stream(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[str]]:
    """A server answering like MinIO's ListenBucketNotification: two events, a keep-alive.

    ``oscar_default``'s storage points at it; the request lines it received are yielded.
    """
    requests: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        requests.append(head.split("\r\n", 1)[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nServer: MinIO\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for line in [json.dumps({"Records": [r]}) + "\n" for r in RECORDS] + [" \n"]:
            data = line.encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = json.loads(oscar.connection_json())
    connection["extra"]["minio_endpoint"] = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AIRFLOW_CONN_OSCAR_DEFAULT", json.dumps(connection))
    yield requests
    server.close()
    await server.wait_closed()


async def test_the_minio_notification_stream_yields_each_record(minio_stream: list[str]) -> None:
    records = [r async for r in OscarStorageHook().alisten("inbox/in/")]
    assert records == RECORDS
    (request,) = minio_stream
    assert request.startswith("GET /inbox/?")
    assert "prefix=in%2F&" in request and "events=s3%3AObjectCreated%3A%2A" in request


async def test_a_minio_notification_wakes_the_trigger_before_its_poll_interval(
    minio_stream: list[str],
) -> None:
    trigger = OscarBucketEventTrigger(path="inbox/in/", poll_interval=3600)
    wake = asyncio.Event()
    listening = asyncio.create_task(trigger._listen(OscarStorageHook(), wake))
    try:
        await asyncio.wait_for(wake.wait(), timeout=10)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert minio_stream


@pytest.mark.usefixtures("connected")
async def test_a_listing_refused_with_403_fails_the_watcher_with_a_clear_message(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(self: S3Session, *args: Any, **kw: Any) -> Any:
        raise OscarClientError("S3 list answered 403", status_code=403)

    monkeypatch.setattr(S3Session, "list", refused)
    trigger = OscarBucketEventTrigger(path=bucket, name="forbidden", **FAST)
    with pytest.raises(OscarClientError, match="must be allowed to list") as stopped:
        await asyncio.wait_for(trigger.run().__anext__(), 10)
    assert stopped.value.status_code == 403


@pytest.mark.usefixtures("connected")
async def test_a_cursor_inside_a_services_input_folder_is_refused(
    deploy: Callable[..., dict[str, Any]], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("watched")
    io = {"storage_provider": "minio.default", "path": f"{name}/in"}
    deploy("true\n", name=name, input=[io])
    trigger = OscarBucketEventTrigger(
        path=f"{name}/in/", name="w", cursor_path=f"{name}/in/cursor.json", **FAST
    )
    with pytest.raises(OscarClientError, match="would start a job"):
        await asyncio.wait_for(trigger.run().__anext__(), 10)
