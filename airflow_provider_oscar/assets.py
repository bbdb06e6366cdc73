"""The ``oscar://`` asset URI scheme: objects in an OSCAR cluster's buckets as Airflow Assets.

``oscar://<cluster>/<bucket>/<key>`` names an object (or, with a key that is a folder, the objects
under it; with no key, a whole bucket) in the MinIO of one OSCAR cluster. ``<cluster>`` is the
connection's ``cluster_id`` extra, or the connection id when it has none (see
:func:`cluster_name`): the same id the provider's results and logs use for the cluster.

The provider registers the scheme with Airflow (``asset-uris`` in its provider info), so every
``Asset(uri="oscar://...")`` is checked by :func:`sanitize_uri` when a DAG is parsed, and
:func:`create_asset` builds one from its parts. Tasks that write objects publish them with
:func:`publish_objects`: asset events on the task's ``oscar://`` outlets say which objects were
written, and an ``AssetAlias`` outlet gets one asset per object, so downstream DAGs can be
scheduled on inference results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_oscar.hooks.api import ClusterSettings

SCHEME = "oscar"
_CLUSTER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Check and normalise an ``oscar://<cluster>/<bucket>/<key>`` URI (Airflow calls this).

    The cluster is lower-cased, trailing slashes are dropped. Raises ``ValueError`` saying what
    is wrong: no cluster, a port or credentials, a bucket name S3 would refuse, an empty, ``.``
    or ``..`` key segment, a query or a fragment.
    """
    text = f"{uri.scheme}://{uri.netloc}{uri.path}" + (f"?{uri.query}" if uri.query else "")
    if uri.scheme.lower() != SCHEME:
        raise ValueError(f"{text!r} is not an {SCHEME}:// URI")
    if not uri.netloc:
        raise ValueError(
            f"{text!r} names no cluster: write {SCHEME}://<cluster>/<bucket>/<key> "
            "(the connection's cluster_id, or its connection id)"
        )
    cluster = uri.netloc.lower()
    if not _CLUSTER.match(cluster):
        raise ValueError(
            f"{text!r}: the cluster {uri.netloc!r} must be letters, digits, '.', '-' or '_' "
            "(no port and no credentials)"
        )
    segments = uri.path.strip("/").split("/") if uri.path.strip("/") else []
    if not segments:
        raise ValueError(f"{text!r} names no bucket: write {SCHEME}://<cluster>/<bucket>/<key>")
    bucket, keys = segments[0], segments[1:]
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"{text!r}: {bucket!r} is not a bucket name (3 to 63 lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    for part in keys:
        if part in ("", ".", ".."):
            raise ValueError(f"{text!r}: the key has an empty, '.' or '..' segment")
    if uri.query or uri.fragment:
        raise ValueError(f"{text!r}: {SCHEME}:// URIs take no query and no fragment")
    return uri._replace(scheme=SCHEME, netloc=cluster, path="/" + "/".join(segments))


def object_uri(cluster: str, path: str) -> str:
    """The ``oscar://`` URI of ``bucket/key`` on ``cluster`` (checked and normalised)."""
    return urlunsplit(sanitize_uri(urlsplit(f"{SCHEME}://{cluster}/{path.lstrip('/')}")))


def create_asset(
    *,
    cluster: str,
    bucket: str,
    key: str = "",
    extra: dict[str, Any] | None = None,
    name: str | None = None,
    watchers: list[AssetWatcher] | None = None,
) -> Asset:
    """An Asset for an object (or folder, or bucket) of an OSCAR cluster (the scheme's factory).

    ``create_asset(cluster="alpha", bucket="plants", key="out/x.json")`` is
    ``Asset(uri="oscar://alpha/plants/out/x.json")``; ``name`` defaults to the URI.
    """
    from airflow.sdk import Asset

    uri = object_uri(cluster, f"{bucket}/{key.lstrip('/')}")
    return Asset(uri=uri, name=name or uri, extra=extra or {}, watchers=watchers or [])


def cluster_name(settings: ClusterSettings, conn_id: str) -> str:
    """How ``oscar://`` URIs name a connection's cluster: its ``cluster_id``, or the conn id."""
    return (settings.cluster_id or conn_id).lower()


def _covers(asset_uri: str, uri: str) -> bool:
    return uri == asset_uri or uri.startswith(asset_uri.rstrip("/") + "/")


def publish_objects(
    context: Mapping[str, Any],
    objects: Sequence[str],
    *,
    cluster: str,
    extra: Mapping[str, Any] | None = None,
) -> list[str]:
    """Tell the running task's outlets which objects (``bucket/key``) it wrote; their URIs.

    * an ``oscar://`` Asset outlet covering some of them (the same object, or a folder or bucket
      holding them) gets ``{"objects": [...], "uris": [...], **extra}`` as its event's extra;
    * an ``AssetAlias`` outlet gets an asset event per object, on ``oscar://<cluster>/<path>``
      (with ``extra``), so a DAG can be scheduled on the objects themselves.

    Other outlets are left alone; without outlets this only computes the URIs.
    """
    from airflow.sdk import Asset, AssetAlias

    uris = [object_uri(cluster, path) for path in objects]
    outlets = getattr(context.get("task"), "outlets", None) or []
    if not outlets:
        return uris
    events = context["outlet_events"]
    details = dict(extra or {})
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            for uri in uris:
                events[outlet].add(Asset(uri=uri, name=uri), extra=details)
        elif isinstance(outlet, Asset) and outlet.uri.startswith(f"{SCHEME}://"):
            mine = [(p, u) for p, u in zip(objects, uris, strict=True) if _covers(outlet.uri, u)]
            if mine:
                events[outlet].extra.update(
                    {**details, "objects": [p for p, _ in mine], "uris": [u for _, u in mine]}
                )
    return uris
