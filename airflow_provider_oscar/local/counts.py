"""What the embedded OSCAR executed, counted where it happens (not an OSCAR route).

Tests and drills read it through ``GET /local/counts`` (admin credentials) to count side effects
on the cluster rather than what a client believes it did: synchronous runs that reached a
script and jobs created (by ``/job`` or by a bucket event), per service and per input. An input
is named by the digest of the request body as the cluster received it (the base64 text a client
sends), so a caller can tell which of its inputs ran how often.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def input_digest(body: bytes) -> str:
    """How the counts name an input: the first 16 hex digits of the body's SHA-256."""
    return hashlib.sha256(body).hexdigest()[:16]


@dataclass
class ExecutionCounts:
    """Runs and jobs per ``(service, input digest)`` since the server started."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    jobs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count_run(self, service: str, body: bytes) -> None:
        self.runs[(service, input_digest(body))] += 1

    def count_job(self, service: str, body: bytes) -> None:
        self.jobs[(service, input_digest(body))] += 1

    def to_api(self) -> dict[str, Any]:
        """``{"runs": {service: {digest: n}}, "jobs": {service: {digest: n}}}``."""
        return {"runs": _nested(self.runs), "jobs": _nested(self.jobs)}


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (service, digest), count in sorted(counts.items()):
        nested.setdefault(service, {})[digest] = count
    return nested
