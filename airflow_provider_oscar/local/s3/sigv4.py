"""AWS Signature Version 4, checked as MinIO checks it (minio/minio ``cmd/signature-v4.go``
``doesSignatureMatch`` and ``doesPresignedSignatureMatch``, ``cmd/signature-v4-parser.go``),
and computed again for the request the embedded store forwards to its backend.

The canonical request is rebuilt from what arrived: the path decoded and encoded again
(``s3utils.EncodePath``), the query sorted and encoded (``url.Values.Encode`` with ``%20``),
the signed headers, and the payload hash the client declared.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = timedelta(minutes=15)  # globalMaxSkewTime
MAX_PRESIGN = 604800  # X-Amz-Expires: at most a week
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class AuthFailure(Exception):
    """A request MinIO refuses before looking at it: an S3 error ``code`` and its message."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Verified:
    """Who signed a request (``None``: anonymous) and the payload hash it declared."""

    access_key: str | None
    payload_hash: str = UNSIGNED
    presigned: bool = False


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, list[str]],
    secret_of: Callable[[str], str | None],
    now: datetime | None = None,
) -> Verified:
    """The signer of a request, or :class:`AuthFailure`; ``headers`` keys are lower-case."""
    now = now or datetime.now(timezone.utc)
    query = parse_qsl(raw_query, keep_blank_values=True)
    names = {k for k, _ in query}
    authorization = (headers.get("authorization") or [""])[0]
    if authorization.startswith(ALGORITHM):
        return _verify_header(method, raw_path, query, headers, authorization, secret_of, now)
    if "X-Amz-Signature" in names or "X-Amz-Credential" in names:
        return _verify_presigned(method, raw_path, query, headers, secret_of, now)
    if authorization or "Signature" in names:
        raise AuthFailure(
            "NotImplemented", "Signature Version 2 is not supported by the embedded S3 store"
        )
    return Verified(None)


def sign(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    access_key: str,
    secret_key: str,
    region: str,
    payload_hash: str,
    now: datetime | None = None,
) -> str:
    """The ``Authorization`` value for a request whose ``headers`` (host included) are all
    signed; ``headers`` must carry ``x-amz-date`` and ``x-amz-content-sha256``."""
    now = now or datetime.now(timezone.utc)
    scope = f"{now.strftime('%Y%m%d')}/{region}/s3/aws4_request"
    signed = sorted(headers)
    canonical = _canonical(
        method, raw_path, query, {k: [headers[k]] for k in signed}, signed, payload_hash
    )
    signature = _signature(secret_key, headers["x-amz-date"], scope, canonical)
    return (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, "
        f"Signature={signature}"
    )


def amz_date(now: datetime) -> str:
    return now.strftime(_AMZ_DATE)


# header and query authentication -------------------------------------------------------------


def _verify_header(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, list[str]],
    authorization: str,
    secret_of: Callable[[str], str | None],
    now: datetime,
) -> Verified:
    fields = {}
    for part in authorization[len(ALGORITHM) :].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    credential, signed, signature = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    )
    if not (credential and signed and signature):
        raise AuthFailure("AuthorizationHeaderMalformed")
    access_key, scope = _credential(credential)
    stamp = (headers.get("x-amz-date") or headers.get("date") or [""])[0]
    moment = _parse_date(stamp, "AuthorizationHeaderMalformed")
    if abs(now - moment) > MAX_SKEW:
        raise AuthFailure("RequestTimeTooSkewed")
    secret = secret_of(access_key)
    if secret is None:
        raise AuthFailure("InvalidAccessKeyId")
    payload = (headers.get("x-amz-content-sha256") or [EMPTY_SHA256])[0]
    names = signed.split(";")
    canonical = _canonical(method, raw_path, query, headers, names, payload)
    expected = _signature(secret, amz_date(moment), scope, canonical)
    if not hmac.compare_digest(expected, signature):
        raise AuthFailure("SignatureDoesNotMatch")
    return Verified(access_key, payload)


def _verify_presigned(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, list[str]],
    secret_of: Callable[[str], str | None],
    now: datetime,
) -> Verified:
    params = dict(query)
    required = (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Expires",
    )
    if any(name not in params for name in required) or params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthFailure("AuthorizationQueryParametersError")
    access_key, scope = _credential(params["X-Amz-Credential"])
    moment = _parse_date(params["X-Amz-Date"], "AuthorizationQueryParametersError")
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise AuthFailure("AuthorizationQueryParametersError") from None
    if expires < 0 or expires > MAX_PRESIGN:
        raise AuthFailure(
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        )
    if moment - now > MAX_SKEW:
        raise AuthFailure("AccessDenied", "Request is not valid yet")
    if now > moment + timedelta(seconds=expires):
        raise AuthFailure("AccessDenied", "Request has expired")
    secret = secret_of(access_key)
    if secret is None:
        raise AuthFailure("InvalidAccessKeyId")
    payload = params.get("X-Amz-Content-Sha256", UNSIGNED)
    unsigned_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    names = params["X-Amz-SignedHeaders"].split(";")
    canonical = _canonical(method, raw_path, unsigned_query, headers, names, payload)
    expected = _signature(secret, params["X-Amz-Date"], scope, canonical)
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        raise AuthFailure("SignatureDoesNotMatch")
    return Verified(access_key, payload, presigned=True)


def _credential(value: str) -> tuple[str, str]:
    """``<access key>/<date>/<region>/s3/aws4_request``: the key and the scope."""
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != "aws4_request" or parts[-2] != "s3":
        raise AuthFailure(
            "AuthorizationHeaderMalformed",
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
            'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        )
    return "/".join(parts[:-4]), "/".join(parts[-4:])


def _parse_date(value: str, code: str) -> datetime:
    try:
        return datetime.strptime(value, _AMZ_DATE).replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthFailure(code, "X-Amz-Date is missing or not in the ISO 8601 format") from None


# the canonical request ---------------------------------------------------------------------


def _canonical(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, list[str]],
    signed: list[str],
    payload_hash: str,
) -> str:
    path = quote(unquote(raw_path), safe="/~") or "/"
    pairs = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query)
    lines = []
    for name in signed:
        values = headers.get(name)
        if values is None:
            raise AuthFailure("SignatureDoesNotMatch")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    return "\n".join(
        [
            method,
            path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "\n".join(lines) + "\n",
            ";".join(signed),
            payload_hash,
        ]
    )


def _signature(secret: str, stamp: str, scope: str, canonical: str) -> str:
    date, region, service, _ = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def presign(
    method: str,
    endpoint: str,
    raw_path: str,
    access_key: str,
    secret_key: str,
    region: str,
    expires: int,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """A presigned URL (minio-go ``PresignHeader``): ``headers`` (lower-case names) are
    signed along with ``host``."""
    from urllib.parse import urlsplit

    now = now or datetime.now(timezone.utc)
    scope = f"{now.strftime('%Y%m%d')}/{region}/s3/aws4_request"
    signed_headers = {"host": urlsplit(endpoint).netloc, **(headers or {})}
    names = sorted(signed_headers)
    params = [
        *(query or []),
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date(now)),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", ";".join(names)),
    ]
    canonical = _canonical(
        method, raw_path, params, {k: [signed_headers[k]] for k in names}, names, UNSIGNED
    )
    signature = _signature(secret_key, amz_date(now), scope, canonical)
    params.append(("X-Amz-Signature", signature))
    encoded = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in params)
    return f"{endpoint}{raw_path}?{encoded}"
