"""The bucket-event watcher's cursor: what it has reported, kept as one JSON object in the
cluster's MinIO (see :mod:`~airflow_provider_oscar.triggers.events`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_provider_oscar.hooks.correlation import STATE_FOLDER
from airflow_provider_oscar.hooks.storage import ObjectInfo, split_path

__all__ = ["CURSOR_FOLDER", "LEGACY_FOLDER", "Cursor", "cursor_path_for", "stamp"]

CURSOR_FOLDER = f"{STATE_FOLDER}/events"
LEGACY_FOLDER = ".oscar-events"  # the default cursor folder of earlier provider versions
CURSOR_VERSION = 1


def cursor_path_for(path: str, name: str, folder: str = CURSOR_FOLDER) -> str:
    """Where the cursor of the watcher ``name`` on ``bucket/prefix`` lives by default."""
    bucket, prefix = split_path(path)
    digest = hashlib.sha256(f"{bucket}/{prefix}\n{name}".encode()).hexdigest()[:32]
    return f"{bucket}/{folder}/{digest}.json"


def stamp(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).isoformat() if moment else ""


def moment(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Cursor:
    """What a watcher has reported: the newest ``LastModified`` seen and the recent objects.

    ``reported`` maps key → ``[etag, last_modified]`` (ISO 8601; ``""`` when unknown) for the
    objects modified at or after :meth:`horizon`; older objects count as reported.
    """

    path: str
    name: str
    lookback: float
    latest: datetime | None = None
    reported: dict[str, list[str]] = field(default_factory=dict)
    generation: int = 0
    events: int = 0
    writer: str = ""

    def horizon(self) -> datetime | None:
        return self.latest - timedelta(seconds=self.lookback) if self.latest else None

    def is_new(self, obj: ObjectInfo) -> bool:
        """Whether ``obj`` (this key, ETag and modification time) has not been reported."""
        seen = self.reported.get(obj.key)
        if seen is not None and seen == [obj.etag, stamp(obj.last_modified)]:
            return False
        horizon = self.horizon()
        return not (
            seen is None
            and horizon is not None
            and obj.last_modified is not None
            and obj.last_modified < horizon
        )

    def advanced(self, listed: Iterable[ObjectInfo], reported: Sequence[ObjectInfo]) -> Cursor:
        """The cursor once ``reported`` are reported, given everything ``listed`` this time."""
        stamps = [o.last_modified for o in listed if o.last_modified is not None]
        latest = max([*stamps, *([self.latest] if self.latest else [])], default=None)
        entries = dict(self.reported)
        entries.update({o.key: [o.etag, stamp(o.last_modified)] for o in reported})
        result = Cursor(
            self.path,
            self.name,
            self.lookback,
            latest,
            generation=self.generation + 1,
            events=self.events + len(reported),
        )
        horizon = result.horizon()
        result.reported = {
            key: entry
            for key, entry in sorted(entries.items())
            if horizon is None or not entry[1] or datetime.fromisoformat(entry[1]) >= horizon
        }
        return result

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "path": self.path,
                "name": self.name,
                "lookback": self.lookback,
                "latest": stamp(self.latest),
                "generation": self.generation,
                "events": self.events,
                "writer": self.writer,
                "updated": stamp(datetime.now(timezone.utc)),
                "reported": self.reported,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, *, path: str, name: str, lookback: float) -> Cursor:
        """Read a stored cursor (raises ``ValueError`` on anything it cannot trust)."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != CURSOR_VERSION:
            raise ValueError(f"not a version {CURSOR_VERSION} cursor")
        reported = doc.get("reported")
        if not isinstance(reported, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
            for v in reported.values()
        ):
            raise ValueError("its 'reported' entries are not key: [etag, last_modified]")
        return cls(
            path,
            name,
            lookback,
            moment(str(doc.get("latest") or "")),
            {str(k): list(v) for k, v in reported.items()},
            int(doc.get("generation") or 0),
            int(doc.get("events") or 0),
            str(doc.get("writer") or ""),
        )
