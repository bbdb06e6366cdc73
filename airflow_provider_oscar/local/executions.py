"""The execution log: the line OSCAR's logger middleware prints for every ``/run`` and ``/job``
request, and the two readers of OSCAR's own pod log that parse it back.

- grycap/oscar ``pkg/utils/auth/auth.go`` ``GetLoggerMiddleware``: after the handler,
  ``[GIN-EXECUTIONS-LOGGER] <end time> | <status %3d> | <latency %13v> | <client ip> |
  <method %-7s> <path> | <user>``; the end time is ``2006/01/02 - 15:04:05`` (local time) up
  to v3.7 and RFC 3339 with nanoseconds in UTC from v4.0.0; the user is the handler's
  ``uidOrigin`` (``oscar`` when it set none).
- ``pkg/handlers/logs.go`` ``parseExecutionLogs`` (``GET /system/logs``, v3.6.5): POSTs to
  ``/run`` and ``/job`` only.
- ``pkg/metrics/sources.go`` ``parseGinExecutionLog`` (metrics, v4.0.0): RFC 3339 times only.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

PREFIX = "[GIN-EXECUTIONS-LOGGER]"
_V3_TIME = "%Y/%m/%d - %H:%M:%S"


@dataclass(frozen=True)
class Execution:
    """One request through the logger middleware."""

    end: datetime
    status: int
    latency_ns: int
    client_ip: str
    method: str
    path: str
    user: str

    def line(self, rfc3339: bool) -> str:
        moment = rfc3339_nano(self.end) if rfc3339 else self.end.strftime(_V3_TIME)
        latency = go_duration(self.latency_ns)
        return (
            f"{PREFIX} {moment} | {self.status:3d} | {latency:>13} | {self.client_ip} | "
            f"{self.method:<7} {self.path} | {self.user}"
        )


@dataclass
class LogEntry:
    """``executionLogEntry`` of ``GET /system/logs``."""

    timestamp: str
    status: int
    latency: str
    client_ip: str
    method: str
    path: str
    user: str
    raw: str

    def to_api(self) -> dict[str, object]:
        return {
            "timestamp": self.timestamp,
            "status": self.status,
            "latency": self.latency,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "user": self.user,
            "raw": self.raw,
        }


class ExecutionLog:
    """The OSCAR pod's log, as far as these lines go (the newest 100,000 are kept)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._entries: deque[Execution] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def append(self, execution: Execution) -> None:
        with self._lock:
            self._entries.append(execution)

    def entries(self) -> list[Execution]:
        with self._lock:
            return list(self._entries)


def parse_execution_logs(lines: list[str], rfc3339: bool) -> list[LogEntry]:
    """logs.go ``parseExecutionLogs``: the POST ``/run*`` and ``/job*`` lines."""
    found = []
    for line in lines:
        raw = line.strip()
        if not raw or PREFIX not in raw:
            continue
        parts = raw.removeprefix(PREFIX).strip().split("|")
        if len(parts) < 6:
            continue
        stamp = parts[0].strip()
        timestamp = _reformat(stamp, rfc3339)
        try:
            status = int(parts[1].strip())
        except ValueError:
            status = 0
        method_path = parts[4].split()
        if len(method_path) < 2:
            continue
        method, path = method_path[0], method_path[1]
        if method != "POST" or not path.startswith(("/run", "/job")):
            continue
        found.append(
            LogEntry(
                timestamp,
                status,
                parts[2].strip(),
                parts[3].strip(),
                method,
                path,
                parts[5].strip(),
                raw,
            )
        )
    return found


def _reformat(stamp: str, rfc3339: bool) -> str:
    try:
        if rfc3339:
            return rfc3339_nano(parse_rfc3339(stamp))
        local = datetime.strptime(stamp, _V3_TIME).replace(tzinfo=timezone.utc)
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return stamp


def rfc3339_nano(moment: datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    moment = moment.astimezone(timezone.utc)
    fraction = f"{moment.microsecond:06d}000".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def go_time(moment: datetime) -> str:
    """``time.Time`` in JSON: RFC 3339 with nanoseconds, in the time's own zone."""
    offset = moment.utcoffset()
    if not offset:
        return rfc3339_nano(moment)
    fraction = f"{moment.microsecond:06d}000".rstrip("0")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone


def parse_rfc3339(stamp: str) -> datetime:
    """``time.Parse(time.RFC3339Nano, ...)`` for the forms OSCAR writes (nanoseconds cut to
    microseconds)."""
    text = stamp.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {stamp!r}")
    return moment


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` (``1.234567ms``, ``2.5s``, ``1m0.5s``)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{_decimal(rest, 10**9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    digits = f"{fraction:0{len(str(unit)) - 1}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
