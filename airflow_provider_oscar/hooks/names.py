"""Names that go into URL paths: checked against the rule OSCAR applies, then percent-encoded.

A name copied into a path unchecked can leave its segment: ``..`` climbs to another route once
the HTTP client normalises the path (``/system/logs/../config`` is ``/system/config``), ``/``
adds segments, ``?`` and ``#`` end the path. So every segment built from a service, job or bucket
name is checked first (one rule per kind, the one the real server applies) and quoted, and
object keys may not hold ``.``/``..`` segments or NUL.

The rules, from grycap/oscar v4.1.2 (the same in v3.6.5 to v4.0.0):

* service: 1 to 39 characters (``pkg/types/service.go``, ``Service.Name`` binding ``max=39``),
  a DNS-1123 label, as Knative and Kubernetes require of the objects named after it;
* job: a Kubernetes Job name, found by the pod label ``job-name=<job>``
  (``pkg/handlers/logs.go``, ``MakeGetLogsHandler``), so a DNS-1123 label of at most 63
  characters: ``<service>-<uuid4>`` or the ``X-Delegated-Job-ID`` sent with the job
  (``pkg/handlers/job.go``, ``MakeJobHandler``);
* bucket: S3's bucket-name rule, which MinIO enforces: 3 to 63 lower-case letters, digits,
  ``.`` and ``-``, starting and ending with a letter or digit;
* object key: at most 1024 bytes of UTF-8 without NUL, and no ``.`` or ``..`` segment (MinIO
  refuses those names).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from airflow_provider_oscar.errors import OscarDefinitionError
from airflow_provider_oscar.fdl import SERVICE_NAME_MAX, check_dns_label

JOB_NAME_MAX = 63
KEY_MAX_BYTES = 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class InvalidName(ValueError):
    """A name that cannot be part of an OSCAR URL; the message names it and the rule."""


def service(name: object) -> str:
    """The service name as a path segment."""
    return _label(name, "service name", SERVICE_NAME_MAX)


def job(name: object) -> str:
    """The job name as a path segment."""
    return _label(name, "job name", JOB_NAME_MAX)


def _label(name: object, what: str, limit: int) -> str:
    text = _text(name, what)
    try:
        check_dns_label(text, what, limit)
    except OscarDefinitionError as exc:
        raise InvalidName(str(exc)) from None
    return quote(text, safe="")


def bucket(name: object) -> str:
    """The bucket name as a path segment."""
    text = _text(name, "bucket name")
    if not _BUCKET.fullmatch(text) or ".." in text:
        raise InvalidName(
            f"invalid bucket name {_shown(text)}: bucket names have 3 to 63 lower case letters, "
            "digits, '.' and '-', and start and end with a letter or digit"
        )
    return quote(text, safe="")


def key(value: object, *, prefix: bool = False) -> str:
    """The object key, checked (``prefix``: may be empty or end with ``/``), not yet quoted."""
    text = _text(value, "object key")
    if not text and not prefix:
        raise InvalidName("invalid object key: it is empty")
    if "\x00" in text:
        raise InvalidName(f"invalid object key {_shown(text)}: it holds a NUL character")
    if len(text.encode("utf-8", errors="replace")) > KEY_MAX_BYTES:
        raise InvalidName(f"invalid object key {_shown(text)}: over {KEY_MAX_BYTES} bytes")
    segments = text.split("/")
    if prefix and segments[-1] == "":
        segments.pop()
    if any(segment in (".", "..") for segment in segments):
        raise InvalidName(f"invalid object key {_shown(text)}: '.' and '..' segments are refused")
    return text


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"invalid {what}: a string is needed, not {type(value).__name__}")
    return value


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else f"{text[:limit]}...")
