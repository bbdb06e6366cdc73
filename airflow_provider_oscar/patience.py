"""Waiting through blips: which failures heal by themselves, and when to ask again.

Every wait of the provider (triggers, sensors, the operators' in-worker waits, the batch) polls
OSCAR or its MinIO until a deadline. A poll that fails with something that heals by itself
(5xx, 429, a connection or read error, a listing the coalescer could not make) is logged and
tried again after a back-off that doubles up to a cap; only what cannot heal ends the wait: 401
(after the hook refreshed the token), 403, 404 (the service is gone), and the provider's own
refusals (invalid input, an ambiguous job).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from airflow_provider_oscar.errors import OscarApiError, OscarClientError

__all__ = ["MAX_PAUSE", "Patience", "can_heal"]

MAX_PAUSE = 60.0
_HEALING_STATUSES = frozenset({408, 425, 429})


def can_heal(exc: BaseException) -> bool:
    """Whether asking again later may succeed where this failure did not."""
    if isinstance(exc, OscarClientError):
        return exc.status_code in _HEALING_STATUSES
    return isinstance(exc, OscarApiError | httpx.TransportError | OSError | asyncio.TimeoutError)


class Patience:
    """Counts a wait's consecutive failures; says how long to pause, and logs each one.

    :param what: what is waited for (``"OSCAR job x"``), for the log lines.
    :param base: the wait's own poll interval; the first pause after a failure.
    """

    def __init__(self, what: str, log: Any, *, base: float, cap: float = MAX_PAUSE) -> None:
        self.what = what
        self.log = log
        self.base = max(base, 0.01)
        self.cap = max(cap, self.base)
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """The pause before asking again; re-raises ``exc`` when it cannot heal."""
        if not can_heal(exc):
            raise exc
        self.failures += 1
        pause = min(self.base * 2 ** (self.failures - 1), self.cap)
        self.log.warning(
            "waiting for %s: %s: %s (failure %d in a row); asking again in %.1f s",
            self.what,
            type(exc).__name__,
            exc,
            self.failures,
            pause,
        )
        return pause

    def succeeded(self) -> None:
        """A poll worked: log the recovery once, start counting afresh."""
        if self.failures:
            self.log.info("%s answers again after %d failed polls", self.what, self.failures)
        self.failures = 0
