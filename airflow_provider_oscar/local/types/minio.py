"""pkg/utils/minio.go and pkg/handlers/buckets: what ``/system/buckets`` takes and answers."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.gojson import go

V4_1 = Release.of("v4.1.0")


@dataclass
class MinIOObject:
    object_name: str = go("object_name", "")
    size_bytes: int = go("size_bytes", 0, go_type="int64")
    owner: str = go("owner", "", omitempty=True)
    last_modified: str = go("last_modified", "", omitempty=True)


@dataclass
class MinIOQuota:
    """v4.1.0: a bucket's hard quota (``source``: ``unset``, ``bucket`` or ``unsupported``)."""

    max: str = go("max", "", omitempty=True)
    max_bytes: int = go("max_bytes", 0, omitempty=True, go_type="int64")
    source: str = go("source", "")


@dataclass
class MinIOUsage:
    used: str = go("used", "")
    used_bytes: int = go("used_bytes", 0, go_type="int64")
    objects: int = go("objects", 0, omitempty=True, go_type="int64")


@dataclass
class MinIOBucket:
    """``utils.MinIOBucket`` (the request body of POST and PUT too)."""

    GO_PACKAGE = "utils"
    bucket_name: str = go("bucket_name", "")
    visibility: str = go("visibility", "")
    allowed_users: list[str] | None = go("allowed_users")
    owner: str = go("owner", "")
    metadata: dict[str, str] | None = go("metadata")
    objects: list[MinIOObject] | None = go("objects", omitempty=True)
    storage_quota: MinIOQuota | None = go("storage_quota", omitempty=True, since=V4_1)
    storage_usage: MinIOUsage | None = go("storage_usage", omitempty=True, since=V4_1)
    attribution: str = go("attribution", "", omitempty=True, since=V4_1)


@dataclass
class BucketListResponse:
    """get_bucket.go ``BucketListResponse``: the embedded MinIOBucket's fields, then paging."""

    bucket_name: str = go("bucket_name", "")
    visibility: str = go("visibility", "")
    allowed_users: list[str] | None = go("allowed_users")
    owner: str = go("owner", "")
    metadata: dict[str, str] | None = go("metadata")
    objects: list[MinIOObject] | None = go("objects", omitempty=True)
    storage_quota: MinIOQuota | None = go("storage_quota", omitempty=True, since=V4_1)
    storage_usage: MinIOUsage | None = go("storage_usage", omitempty=True, since=V4_1)
    attribution: str = go("attribution", "", omitempty=True, since=V4_1)
    next_page: str = go("next_page", "", omitempty=True)
    is_truncated: bool = go("is_truncated", False)
    returned_items: int = go("returned_items", 0)


@dataclass
class PresignRequest:
    GO_PACKAGE = "buckets"
    object_key: str = go("object_key", "", required=True)
    operation: str = go("operation", "", required=True)
    expires_in: int = go("expires_in", 0, go_type="int64")
    content_type: str = go("content_type", "")
    extra_headers: dict[str, str] | None = go("extra_headers")


@dataclass
class PresignResponse:
    object_key: str = go("object_key", "")
    operation: str = go("operation", "")
    method: str = go("method", "")
    url: str = go("url", "")
    expires_at: str = go("expires_at", "")
    headers: dict[str, str] | None = go("headers", omitempty=True)
