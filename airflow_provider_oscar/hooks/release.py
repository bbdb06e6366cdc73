"""Which OSCAR release a cluster runs, read once per cluster, and what the provider does about it.

``GET /system/info`` reports the release tag (``pkg/version``); the provider reads it once per
process and connection (cluster endpoint and credentials) and asks :class:`OscarRelease`, never
the version, what the cluster can do. The differences the provider adapts to, all from
grycap/oscar:

* ``X-Delegated-Job-ID`` names a job only from v4.1.0 (``pkg/handlers/job.go``
  ``MakeJobHandler``, ``DelegationHeader``); before, jobs are ``<svc>-<uuid4>``, so submissions
  are correlated as :mod:`~airflow_provider_oscar.hooks.correlation` describes;
* ``/system/services/{name}/deployment`` exists from v4.0.0 (``main.go``); before, readiness is
  the service existing;
* from v4.1.0 an OIDC caller needs a MinIO user before ``/job`` (job.go ``mc.UserExists``),
  which any ``/system`` request provisions: reading the release is such a request.

Releases before 3.6 are refused: the job list before v3.6.4 has another shape and the provider
is tested against 3.6.5, 3.7.1, 4.0.0 and 4.1.2 only. A tag that is not a version (a development
build) is taken for the newest release.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from airflow_provider_oscar.errors import OscarClientError

__all__ = ["OLDEST_SUPPORTED", "OscarRelease", "remember", "remembered"]

OLDEST_SUPPORTED = (3, 6, 0)
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class OscarRelease:
    """A cluster's release as ``/system/info`` reports it, and what it can do."""

    version: str
    number: tuple[int, int, int] | None = None

    @classmethod
    def parse(cls, version: str) -> OscarRelease:
        match = _VERSION.match(version.strip())
        if not match:
            return cls(version or "unknown")
        major, minor, patch = match.groups()
        return cls(version, (int(major), int(minor), int(patch or 0)))

    def since(self, major: int, minor: int, patch: int = 0) -> bool:
        """Whether the release is at least ``major.minor.patch`` (unknown: newest)."""
        return self.number is None or self.number >= (major, minor, patch)

    @property
    def names_jobs(self) -> bool:
        """``X-Delegated-Job-ID`` names the job (v4.1.0)."""
        return self.since(4, 1)

    @property
    def has_deployment_status(self) -> bool:
        """``GET /system/services/{name}/deployment`` exists (v4.0.0)."""
        return self.since(4, 0)

    def check_supported(self, cluster: str) -> OscarRelease:
        """``self``; raises :class:`OscarClientError` for a release older than 3.6."""
        if not self.since(*OLDEST_SUPPORTED):
            raise OscarClientError(
                f"OSCAR cluster {cluster} runs {self.version}; the provider supports OSCAR 3.6 "
                "and later (tested on v3.6.5, v3.7.1, v4.0.0 and v4.1.2): upgrade the cluster"
            )
        return self


_LOCK = threading.Lock()
_KNOWN: dict[tuple[str, ...], OscarRelease] = {}


def remembered(key: tuple[str, ...]) -> OscarRelease | None:
    """The release read earlier in this process for ``key`` (cluster and credentials)."""
    with _LOCK:
        return _KNOWN.get(key)


def remember(key: tuple[str, ...], release: OscarRelease) -> OscarRelease:
    with _LOCK:
        _KNOWN[key] = release
    return release
