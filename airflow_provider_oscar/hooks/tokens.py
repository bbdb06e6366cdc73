"""Tokens the hook holds: OIDC access tokens (refreshed a minute before they expire) and
service tokens, cached per process and shared by every hook of the same cluster.

OSCAR takes OIDC access tokens as JWTs only (``pkg/utils/auth/oidc.go`` ``GetIssuerFromToken``
parses the token to find its issuer), so the expiry the provider plans with is the token's own
``exp`` claim when it is shorter than the endpoint's ``expires_in``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_oscar.errors import OscarClientError

if TYPE_CHECKING:
    import httpx

    from airflow_provider_oscar.hooks.api import ClusterSettings, Step


@dataclass
class _AccessToken:
    value: str
    expires_at: float


@dataclass
class _Tokens:
    """Process-wide caches, shared by every hook on the same cluster and credentials."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    services: dict[tuple[str, str], str] = field(default_factory=dict)
    access: dict[tuple[str, str], _AccessToken] = field(default_factory=dict)


TOKENS = _Tokens()


def service_token(base: str, name: str) -> str | None:
    with TOKENS.lock:
        return TOKENS.services.get((base, name))


def remember_service_token(base: str, name: str, token: str) -> None:
    with TOKENS.lock:
        TOKENS.services[(base, name)] = token


def forget_service_token(base: str, name: str) -> None:
    with TOKENS.lock:
        TOKENS.services.pop((base, name), None)


def access_token(
    settings: ClusterSettings,
    post: Callable[..., httpx.Request],
    on_secret: Callable[[str], None],
) -> Step[str]:
    """The OIDC access token to send: the connection's own while valid, else a refreshed one.

    ``post(url, data=...)`` builds the refresh request (never following a redirect, which would
    carry the refresh token on to wherever it points).
    """
    if not settings.refresh_token:
        assert settings.oidc_token
        return settings.oidc_token
    key = (settings.token_endpoint, settings.refresh_token)
    with TOKENS.lock:
        cached = TOKENS.access.get(key)
    if cached and cached.expires_at - 60 > time.time():
        return cached.value
    if settings.oidc_token and not cached and jwt_expiry(settings.oidc_token) - 60 > time.time():
        return settings.oidc_token
    response = yield post(
        settings.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": settings.refresh_token,
            "client_id": settings.client_id,
            "scope": settings.scopes,
        },
    )
    token, expires_in = _read_refresh(settings, response)
    on_secret(token)
    expires = time.time() + expires_in
    with TOKENS.lock:
        TOKENS.access[key] = _AccessToken(token, min(expires, jwt_expiry(token)))
    return token


def _read_refresh(settings: ClusterSettings, response: httpx.Response) -> tuple[str, float]:
    where = f"OSCAR cluster {settings.name}: the OIDC token endpoint {settings.token_endpoint}"
    if response.is_redirect:
        raise OscarClientError(
            f"{where} answered {response.status_code} with a redirect to "
            f"{response.headers.get('location', '?')!r}; the refresh token is not sent on "
            "to another address: set the connection's 'token_endpoint' to the final URL",
            status_code=response.status_code,
        )
    if not response.is_success:
        raise OscarClientError(
            f"OSCAR cluster {settings.name}: refreshing the OIDC token at "
            f"{settings.token_endpoint} failed with {response.status_code}: "
            f"{response.text.strip()[:300]}",
            status_code=response.status_code,
        )
    try:
        payload = response.json()
        return str(payload["access_token"]), float(payload.get("expires_in") or 300)
    except (ValueError, KeyError, TypeError):
        raise OscarClientError(
            f"{where} answered without an access token: {response.text.strip()[:200]}",
            status_code=response.status_code,
        ) from None


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies), or ``{}``."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (not verified: the server does that), or +inf."""
    try:
        return float(jwt_claims(token)["exp"])
    except (KeyError, ValueError, TypeError):
        return float("inf")
