"""S3 error answers as MinIO writes them (minio/minio ``cmd/api-errors.go`` codes and
descriptions, ``cmd/api-response.go`` ``APIErrorResponse``): XML, ``Server: MinIO``."""

from __future__ import annotations

import secrets
from xml.sax.saxutils import escape

from starlette.responses import Response

_ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied."),
    "InvalidAccessKeyId": (403, "The Access Key Id you provided does not exist in our records."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the server's time is too large.",
    ),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (
        400,
        "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
        "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
    ),
    "XAmzContentSHA256Mismatch": (
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
    "MissingFields": (400, "Missing fields in request."),
    "NotImplemented": (
        501,
        "A header you provided implies functionality that is not implemented",
    ),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchTagSet": (404, "The TagSet does not exist"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidArgument": (400, "Invalid argument"),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "InternalError": (500, "We encountered an internal error, please try again."),
    "XMinioInvalidObjectName": (400, "Object name contains unsupported characters."),
    "KeyTooLongError": (400, "Your key is too long"),
}

SERVER = "MinIO"


def s3_error(
    code: str, method: str, path: str, message: str | None = None, bucket: str = "", key: str = ""
) -> Response:
    """The XML error MinIO answers with (a HEAD request gets the status only)."""
    status, default = _ERRORS[code]
    request_id = secrets.token_hex(8).upper()
    headers = {"Server": SERVER, "X-Amz-Request-Id": request_id}
    if method == "HEAD":
        return Response(b"", status, headers=headers)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message or default)}</Message>"
        f"<Key>{escape(key)}</Key><BucketName>{escape(bucket)}</BucketName>"
        f"<Resource>{escape(path)}</Resource><RequestId>{request_id}</RequestId>"
        f"<HostId>{secrets.token_hex(32)}</HostId></Error>"
    )
    return Response(body.encode(), status, headers=headers, media_type="application/xml")
