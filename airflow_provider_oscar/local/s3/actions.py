"""Which MinIO policy action an S3 request needs (minio/minio ``cmd/api-router.go`` routes each
request to a handler; each handler checks one ``policy.*Action`` in ``checkRequestAuthType``).

Only the requests OSCAR clients send are told apart; any other bucket or object sub-resource
needs the action of its family's plain request, which ``s3:*`` (every policy OSCAR writes but
the restricted one) covers alike.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    """An S3 request: the action it needs, and what it is (for events and special handling)."""

    action: str
    name: str
    bucket: str = ""
    key: str = ""


_BUCKET_GET = {
    "location": "s3:GetBucketLocation",
    "tagging": "s3:GetBucketTagging",
    "notification": "s3:GetBucketNotification",
    "policy": "s3:GetBucketPolicy",
    "versioning": "s3:GetBucketVersioning",
    "uploads": "s3:ListBucketMultipartUploads",
    "versions": "s3:ListBucketVersions",
    "lifecycle": "s3:GetLifecycleConfiguration",
    "encryption": "s3:GetEncryptionConfiguration",
    "object-lock": "s3:GetBucketObjectLockConfiguration",
    "acl": "s3:GetBucketPolicy",
}
_BUCKET_PUT = {
    "tagging": "s3:PutBucketTagging",
    "notification": "s3:PutBucketNotification",
    "policy": "s3:PutBucketPolicy",
    "versioning": "s3:PutBucketVersioning",
    "lifecycle": "s3:PutLifecycleConfiguration",
    "encryption": "s3:PutEncryptionConfiguration",
    "object-lock": "s3:PutBucketObjectLockConfiguration",
    "acl": "s3:PutBucketPolicy",
}
_BUCKET_DELETE = {
    "tagging": "s3:PutBucketTagging",
    "policy": "s3:DeleteBucketPolicy",
    "lifecycle": "s3:PutLifecycleConfiguration",
    "encryption": "s3:PutEncryptionConfiguration",
}
_OBJECT_GET = {
    "tagging": "s3:GetObjectTagging",
    "uploadId": "s3:ListMultipartUploadParts",
    "retention": "s3:GetObjectRetention",
    "legal-hold": "s3:GetObjectLegalHold",
}
_OBJECT_PUT = {
    "tagging": "s3:PutObjectTagging",
    "retention": "s3:PutObjectRetention",
    "legal-hold": "s3:PutObjectLegalHold",
}


def classify(method: str, bucket: str, key: str, query: dict[str, str]) -> Operation:
    """The operation of a path-style request on ``bucket``/``key`` with ``query``."""
    if not bucket:
        if "events" in query:
            return Operation("s3:ListenNotification", "ListenNotification")
        return Operation("s3:ListAllMyBuckets", "ListBuckets")
    if not key:
        return _bucket_operation(method, bucket, query)
    return _object_operation(method, bucket, key, query)


def _sub(query: dict[str, str], table: dict[str, str]) -> str | None:
    return next((table[name] for name in table if name in query), None)


def _bucket_operation(method: str, bucket: str, query: dict[str, str]) -> Operation:
    if method in ("GET", "HEAD"):
        if method == "GET" and "events" in query:
            return Operation("s3:ListenBucketNotification", "ListenBucketNotification", bucket)
        action = _sub(query, _BUCKET_GET) if method == "GET" else None
        return Operation(action or "s3:ListBucket", action or "ListObjects", bucket)
    if method == "PUT":
        action = _sub(query, _BUCKET_PUT)
        return Operation(action or "s3:CreateBucket", action or "CreateBucket", bucket)
    if method == "DELETE":
        action = _sub(query, _BUCKET_DELETE)
        return Operation(action or "s3:DeleteBucket", action or "DeleteBucket", bucket)
    if method == "POST" and "delete" in query:
        return Operation("s3:DeleteObject", "DeleteObjects", bucket)
    if method == "POST":
        return Operation("s3:PutObject", "PostPolicyBucket", bucket)
    return Operation("", "Unknown", bucket)


def _object_operation(method: str, bucket: str, key: str, query: dict[str, str]) -> Operation:
    if method in ("GET", "HEAD"):
        action = _sub(query, _OBJECT_GET) if method == "GET" else None
        name = "GetObject" if method == "GET" else "HeadObject"
        return Operation(action or "s3:GetObject", name if action is None else action, bucket, key)
    if method == "PUT":
        action = _sub(query, _OBJECT_PUT)
        if action:
            return Operation(action, action, bucket, key)
        if "uploadId" in query:
            return Operation("s3:PutObject", "PutObjectPart", bucket, key)
        return Operation("s3:PutObject", "PutObject", bucket, key)
    if method == "DELETE":
        if "uploadId" in query:
            return Operation("s3:AbortMultipartUpload", "AbortMultipartUpload", bucket, key)
        if "tagging" in query:
            return Operation("s3:DeleteObjectTagging", "DeleteObjectTagging", bucket, key)
        return Operation("s3:DeleteObject", "DeleteObject", bucket, key)
    if method == "POST":
        if "uploads" in query:
            return Operation("s3:PutObject", "NewMultipartUpload", bucket, key)
        if "uploadId" in query:
            return Operation("s3:PutObject", "CompleteMultipartUpload", bucket, key)
        if "select" in query:
            return Operation("s3:GetObject", "SelectObjectContent", bucket, key)
        if "restore" in query:
            return Operation("s3:RestoreObject", "RestoreObject", bucket, key)
    return Operation("", "Unknown", bucket, key)
