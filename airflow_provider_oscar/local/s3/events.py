"""MinIO's bucket notifications: event records, the queue configurations of each bucket, the
webhook targets they point at, and the clients listening (``ListenBucketNotification``).

Sources: minio/minio ``internal/event`` (``Event``, ``Log``; names and their ``*`` expansion in
``name.go``; ``config.go`` refuses an unknown target ARN and a duplicate queue configuration,
``ErrARNNotification``/``ErrOverlappingFilterNotification``), the webhook target (a POST of the
``Log`` with ``Authorization: Bearer <auth_token>``), ``cmd/listen-notification-handlers.go``
(one ``{"Records":[...]}`` line per event; a space every 500 ms, or ``{"Records":null}`` every
``ping`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote_plus, unquote_plus
from xml.etree import ElementTree

log = logging.getLogger(__name__)

CREATED = (
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
)
REMOVED = ("s3:ObjectRemoved:Delete",)
ACCESSED = ("s3:ObjectAccessed:Get", "s3:ObjectAccessed:Head")
NAMES = {
    "s3:ObjectCreated:*": CREATED,
    "s3:ObjectRemoved:*": REMOVED,
    "s3:ObjectAccessed:*": ACCESSED,
    **{name: (name,) for name in CREATED + REMOVED + ACCESSED},
}
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class NotificationError(Exception):
    """A notification request MinIO refuses: S3 code ``InvalidArgument`` and its message."""


def expand(names: list[str]) -> set[str]:
    """event.ParseName for each name (``s3:ObjectCreated:*`` is every creation)."""
    found: set[str] = set()
    for name in names:
        if name not in NAMES:
            raise NotificationError(f"invalid event name '{name}'")
        found.update(NAMES[name])
    return found


def check_filter_value(value: str) -> None:
    """event.ValidateFilterRuleValue: no ``.`` or ``..`` segment (empty ones are fine), at
    most 1024 bytes of UTF-8, no backslash."""
    if any(segment in (".", "..") for segment in value.split("/")):
        raise NotificationError(f"invalid filter value '{value}'")
    if len(value.encode()) > 1024 or "\\" in value:
        raise NotificationError(f"invalid filter value '{value}'")


@dataclass(frozen=True)
class ObjectInfo:
    """What an event tells of an object."""

    key: str
    size: int = 0
    etag: str = ""
    content_type: str = "application/octet-stream"


def record(
    name: str,
    bucket: str,
    obj: ObjectInfo,
    principal: str,
    source: tuple[str, str, str] = ("127.0.0.1", "", ""),
    region: str = "",
    when: datetime | None = None,
) -> dict[str, object]:
    """One ``event.Event``; ``source`` is the client's (host, port, user agent)."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    host, port, agent = source
    body: dict[str, object] = {
        "key": quote_plus(obj.key),
        "sequencer": secrets.token_hex(8).upper(),
    }
    if not name.startswith("s3:ObjectRemoved"):
        body = {
            "key": quote_plus(obj.key),
            "size": obj.size,
            "eTag": obj.etag.strip('"'),
            "contentType": obj.content_type,
            "userMetadata": {"content-type": obj.content_type},
            "sequencer": body["sequencer"],
        }
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": region,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {
            "principalId": principal,
            "region": region,
            "sourceIPAddress": host,
        },
        "responseElements": {
            "x-amz-request-id": secrets.token_hex(8).upper(),
            "x-minio-origin-endpoint": "",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": principal},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": body,
        },
        "source": {"host": host, "port": port, "userAgent": agent},
    }


def webhook_body(event: dict[str, object]) -> bytes:
    """``event.Log``: what the webhook target POSTs (its ``Key`` with the object name
    decoded)."""
    s3 = event["s3"]
    assert isinstance(s3, dict)
    key = f"{s3['bucket']['name']}/{unquote_plus(s3['object']['key'])}"
    return json.dumps({"EventName": event["eventName"], "Key": key, "Records": [event]}).encode()


@dataclass(frozen=True)
class Rule:
    """Event names and a key filter."""

    names: frozenset[str]
    prefix: str = ""
    suffix: str = ""

    def matches(self, name: str, key: str) -> bool:
        return name in self.names and key.startswith(self.prefix) and key.endswith(self.suffix)


@dataclass(frozen=True)
class QueueConfig:
    """One ``QueueConfiguration`` of a bucket's notification configuration."""

    arn: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    id: str = ""

    @property
    def rule(self) -> Rule:
        return Rule(frozenset(expand(list(self.events))), self.prefix, self.suffix)

    def to_xml(self) -> str:
        rules = "".join(
            f"<FilterRule><Name>{n}</Name><Value>{v}</Value></FilterRule>"
            for n, v in (("prefix", self.prefix), ("suffix", self.suffix))
            if v
        )
        events = "".join(f"<Event>{e}</Event>" for e in self.events)
        return (
            f"<QueueConfiguration><Id>{self.id}</Id><Queue>{self.arn}</Queue>{events}"
            f"<Filter><S3Key>{rules}</S3Key></Filter></QueueConfiguration>"
        )


def parse_configuration(raw: bytes) -> list[QueueConfig]:
    """A ``NotificationConfiguration`` document (S3 PutBucketNotificationConfiguration)."""
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError:
        raise NotificationError("malformed XML") from None
    configs = []
    for queue in root.iter():
        if queue.tag.removeprefix(_NS) != "QueueConfiguration":
            continue
        values: dict[str, list[str]] = {}
        for child in queue.iter():
            values.setdefault(child.tag.removeprefix(_NS), []).append((child.text or "").strip())
        rules = dict(zip(values.get("Name", []), values.get("Value", []), strict=False))
        configs.append(
            QueueConfig(
                (values.get("Queue") or [""])[0],
                tuple(values.get("Event", [])),
                rules.get("prefix", ""),
                rules.get("suffix", ""),
                (values.get("Id") or [""])[0],
            )
        )
    return configs


def configuration_xml(configs: list[QueueConfig]) -> bytes:
    body = "".join(c.to_xml() for c in configs)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<NotificationConfiguration xmlns="{_NS[1:-1]}">{body}</NotificationConfiguration>'
    ).encode()


@dataclass
class Target:
    """A webhook target (``notify_webhook:<name>``) and its ``auth_token``."""

    name: str
    token: str


Deliver = Callable[[str, str, bytes], Awaitable[None]]


@dataclass(eq=False)
class Listener:
    """A client holding a ``ListenBucketNotification`` response open."""

    bucket: str | None
    rule: Rule
    queue: asyncio.Queue[dict[str, object]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=4000)
    )


class Notifications:
    """The webhook targets, each bucket's queue configurations and the open listeners."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.deliver: Deliver | None = None
        self._targets: dict[str, Target] = {}
        self._configs: dict[str, list[QueueConfig]] = {}
        self._listeners: set[Listener] = set()
        self._sending: set[asyncio.Task[None]] = set()

    def arn(self, target: str) -> str:
        return f"arn:minio:sqs:{self.region}:{target}:webhook"

    # targets (madmin SetConfigKV / DelConfigKV notify_webhook) ----------------------------

    def register_target(self, name: str, token: str) -> None:
        self._targets[self.arn(name)] = Target(name, token)

    def remove_target(self, name: str) -> None:
        self._targets.pop(self.arn(name), None)

    # bucket configurations ------------------------------------------------------------------

    def configuration(self, bucket: str) -> list[QueueConfig]:
        return list(self._configs.get(bucket, []))

    def set_configuration(self, bucket: str, configs: list[QueueConfig]) -> None:
        """PutBucketNotificationConfiguration, validated as MinIO validates it."""
        for config in configs:
            if config.arn not in self._targets:
                raise NotificationError(
                    "A specified destination ARN does not exist or is not well-formed. "
                    "Verify the destination ARN."
                )
            expand(list(config.events))
            for value in (config.prefix, config.suffix):
                if value:
                    check_filter_value(value)
        for i, first in enumerate(configs):
            if first in configs[i + 1 :]:
                raise NotificationError(
                    "An object key name filtering rule defined with overlapping prefixes, "
                    "overlapping suffixes, or overlapping combinations of prefixes and "
                    "suffixes for the same event types."
                )
        if configs:
            self._configs[bucket] = list(configs)
        else:
            self._configs.pop(bucket, None)

    def forget_bucket(self, bucket: str) -> None:
        self._configs.pop(bucket, None)

    # listeners ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def listening(self, bucket: str | None, rule: Rule) -> Iterator[Listener]:
        listener = Listener(bucket, rule)
        self._listeners.add(listener)
        try:
            yield listener
        finally:
            self._listeners.discard(listener)

    # publishing ------------------------------------------------------------------------------

    def wanted(self, bucket: str, key: str, name: str) -> bool:
        """Whether an event would reach a target or a listener (so it is worth building)."""
        if any(
            c.arn in self._targets and c.rule.matches(name, key)
            for c in self._configs.get(bucket, [])
        ):
            return True
        return any(
            (listener.bucket in (None, bucket)) and listener.rule.matches(name, key)
            for listener in self._listeners
        )

    def publish(self, bucket: str, key: str, event: dict[str, object]) -> None:
        """Send ``event`` to every matching webhook target (in the background) and listener."""
        name = str(event["eventName"])
        for listener in list(self._listeners):
            if listener.bucket in (None, bucket) and listener.rule.matches(name, key):
                with contextlib.suppress(asyncio.QueueFull):  # MinIO drops for slow readers
                    listener.queue.put_nowait(event)
        if self.deliver is None:
            return
        for config in self._configs.get(bucket, []):
            target = self._targets.get(config.arn)
            if target is None or not config.rule.matches(name, key):
                continue
            task = asyncio.get_running_loop().create_task(self._send(target, webhook_body(event)))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, target: Target, body: bytes) -> None:
        assert self.deliver is not None
        try:
            await self.deliver(target.name, target.token, body)
        except Exception:
            log.exception("webhook delivery to %s failed", target.name)
