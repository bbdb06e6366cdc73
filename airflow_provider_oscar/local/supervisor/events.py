"""Event parsing and the input file, as faas-supervisor 1.6.2 does them.

Sources: faassupervisor/events/__init__.py ``parse_event`` (the identification flow: API
Gateway, dCache, delegated, storage, else unknown) and the event classes in events/unknown.py,
minio.py, s3.py, onedata.py, dCache.py, apigateway.py. The checks below apply the same Python
operators to the same ``json.loads`` values as the real code, so a body the supervisor cannot
handle (a JSON number, a list, a string holding the word "event", a record without ``arn``)
raises the same exception here and ends the run the same way.
"""

from __future__ import annotations

import base64
import json
import posixpath
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from airflow_provider_oscar.local.supervisor.logs import SupervisorLog

S3_SOURCE = "aws:s3"
MINIO_SOURCE = "minio:s3"
ONEDATA_SOURCE = "OneTrigger"


@dataclass
class Event:
    """A parsed event: its type (``UNKNOWN``, ``MINIO``, ``S3``, ``ONEDATA``, ``DCACHE``), what
    ``save_event`` writes (``data``) and, for storage events, the object it names."""

    kind: str
    data: Any
    provider_id: str = "default"
    bucket: str | None = None
    object_key: str | None = None
    file_name: str = ""
    event_time: Any = None


@dataclass
class EventParser:
    """``parse_event`` with its side effects: log records and the variables it sets."""

    log: SupervisorLog
    inputs: list[Any]
    variables: dict[str, str] = field(default_factory=dict)

    def parse(self, event: Any, provider_id: str = "default") -> Event:
        if not isinstance(event, dict):
            try:
                event = json.loads(event)
            except ValueError:
                return self._unknown(event)
        if "httpMethod" in event:
            self.log.info("API Gateway event found.")
            return self.parse(self._api_gateway_body(event))
        if "event" in event and "subscription" in event:
            self.log.info("Dcache event found.")
            return self._dcache(event)
        if "event" in event:
            self.log.info("Delegated event found.")
            if "storage_provider" in event:
                return self.parse(event["event"], event["storage_provider"])
            return self.parse(event["event"])
        if _is_storage_event(event):
            self.log.info("Storage event found.")
            parsed = self._storage(event, provider_id)
            self.setenv("STORAGE_OBJECT_KEY", parsed.object_key)
            self.setenv("EVENT_TIME", parsed.event_time)
            self.setenv("EVENT", json.dumps(event))
            return parsed
        return self._unknown(event)

    def setenv(self, key: str, value: Any) -> None:
        """``SysUtils.set_env_var``: only a non-empty value is set, and it must be text."""
        if not (key and value):
            return
        if not isinstance(value, str):
            raise TypeError(f"str expected, not {type(value).__name__}")
        if "\0" in key or "\0" in value:
            raise ValueError("embedded null byte")
        if "=" in key:
            raise ValueError("illegal environment variable name")
        self.variables[key] = value

    def _records(self, event: Any) -> Any:
        """``UnknownEvent.__init__``: log the first record of a dict holding ``Records``."""
        if isinstance(event, dict):
            records = event.get("Records")
            if records:
                first = records[0]
                self.log.info(f"event_records = {first} \n")
                return first
        return None

    def _unknown(self, event: Any) -> Event:
        self._records(event)
        return Event("UNKNOWN", event)

    def _api_gateway_body(self, event: Any) -> Any:
        """``ApiGatewayEvent``: query parameters become ``CONT_VAR_*``; the body is parsed next."""
        self._records(event)
        body = event.get("body") or ""
        if event.get("queryStringParameters"):
            for key, value in event["queryStringParameters"].items():
                self.setenv(f"CONT_VAR_{key}", value)
        return body

    def _dcache(self, event: Any) -> Event:
        dcache = [x for x in self.inputs if x["storage_provider"] == "webdav.dcache"]
        path = ""
        if dcache:
            path = dcache[0]["path"]
        else:
            self.log.warning("There is no dcache input defined for this function.")
        inner = event.get("event") or event
        self._records(inner)
        name = inner["name"]
        self.log.info("DCACHE event created")
        key = posixpath.join(path, name)
        return Event("DCACHE", inner, provider_id="dcache", object_key=key, file_name=name)

    def _storage(self, event: dict[str, Any], provider_id: str) -> Event:
        source = event["Records"][0]["eventSource"]
        if source == ONEDATA_SOURCE:
            record = self._records(event)
            key = event["Key"]
            name = record["objectKey"]
            when = record["eventTime"]
            self.log.info("ONEDATA event created")
            return Event("ONEDATA", event, object_key=key, file_name=name, event_time=when)
        inner = event.get("event") or event
        record = self._records(inner)
        record["s3"]["bucket"]["arn"]  # read first by _set_event_params: KeyError without it
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        when = record["eventTime"]
        kind = "S3" if source == S3_SOURCE else "MINIO"
        self.log.info(f"{kind} event created")
        return Event(
            kind,
            inner,
            provider_id=provider_id,
            bucket=bucket,
            object_key=key,
            file_name=posixpath.basename(key),
            event_time=when,
        )


def _is_storage_event(event: Any) -> bool:
    if "Records" in event and event["Records"] and "eventSource" in event["Records"][0]:
        source = event["Records"][0]["eventSource"]
        return source in (S3_SOURCE, MINIO_SOURCE, ONEDATA_SOURCE)
    return False


def save_event(event: Event, input_dir: Path) -> Path:
    """``UnknownEvent.save_event``: what the LOCAL provider writes to ``event-file-<uuid>``.

    Text that is not JSON is base64, decoded without validation (characters outside the
    alphabet are dropped, wrong padding raises); a JSON text is written as it is; an already
    parsed dict is written as ``json.dumps`` re-serialises it; anything else cannot be written.
    """
    path = input_dir / f"event-file-{uuid.uuid4()}"
    data = event.data
    try:
        json.loads(data)
    except ValueError:
        decoded = base64.b64decode(data)
        path.write_bytes(decoded)
    except TypeError:
        _write_text(path, data)
    else:
        _write_text(path, data)
    return path


def _write_text(path: Path, content: Any) -> None:
    with open(path, "w", encoding="utf-8") as file:
        if isinstance(content, dict):
            content = json.dumps(content)
        file.write(content)
