"""An ``oscar`` connection read into :class:`ClusterSettings`, refusing what is unsafe or wrong.

Every value is checked where it is read, and errors name the connection and the field: hosts
are ``http://`` or ``https://`` URLs, the refresh token only travels over https (or to this
machine), numbers are positive, ``verify_ssl`` is a boolean.
"""

from __future__ import annotations

import ipaddress
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.api import ClusterSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection


def settings_from_connection(conn: Connection) -> ClusterSettings:
    """Read a connection into :class:`ClusterSettings`, failing clearly on bad values."""
    extra = conn.extra_dejson or {}

    def get(key: str) -> Any:
        value = extra.get(key, extra.get(f"extra__oscar__{key}"))
        return None if value in ("", None) else value

    host = (conn.host or "").strip()
    if not host:
        raise OscarClientError(f"connection {conn.conn_id!r} has no host (the OSCAR endpoint)")
    if "://" not in host:
        schema = (conn.schema or "").lower()
        host = f"{schema if schema in ('http', 'https') else 'https'}://{host}"
    try:
        parts = urlsplit(host)
        if conn.port and parts.port is None:  # the port goes before any path
            host = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{conn.port}"))
    except ValueError as exc:
        raise OscarClientError(
            f"connection {conn.conn_id!r}: host {host!r} is not a URL: {exc}"
        ) from None
    _check_web_url(conn.conn_id, "host", host)
    options: dict[str, Any] = {
        "endpoint": host.rstrip("/"),
        "user": conn.login or None,
        "password": conn.password or None,
    }
    for key in ("oidc_token", "refresh_token", "token_endpoint", "client_id", "scopes"):
        if get(key) is not None:
            options[key] = str(get(key))
    for key in ("minio_endpoint", "cluster_id"):
        if get(key) is not None:
            options[key] = str(get(key)).rstrip("/")
    if "token_endpoint" in options:
        _check_token_endpoint(conn.conn_id, options["token_endpoint"])
    if "://" in options.get("minio_endpoint", ""):
        _check_web_url(conn.conn_id, "extra 'minio_endpoint'", options["minio_endpoint"])
    for key in ("timeout", "run_timeout", "backoff"):
        if get(key) is not None:
            options[key] = _positive(conn.conn_id, key, get(key))
    if get("retries") is not None:
        options["retries"] = int(_positive(conn.conn_id, "retries", get("retries"), zero=True))
    if get("verify_ssl") is not None:
        options["verify_ssl"] = _boolean(conn.conn_id, get("verify_ssl"))
    return ClusterSettings(**options)


def _check_web_url(conn_id: str, field: str, url: str) -> None:
    """Refuse anything but an ``http://`` or ``https://`` URL with a host, naming ``field``."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise OscarClientError(
            f"connection {conn_id!r}: {field} {url!r} must be an http:// or https:// URL "
            "with a host"
        )


def _check_token_endpoint(conn_id: str, url: str) -> None:
    """The refresh token travels to ``url``: https only, plain http only to this machine."""
    field = "extra 'token_endpoint'"
    _check_web_url(conn_id, field, url)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise OscarClientError(
            f"connection {conn_id!r}: {field} {url!r} must use https: the refresh token would "
            "cross the network in clear text (plain http is accepted for loopback hosts only)"
        )


def unverified_urls(settings: ClusterSettings) -> list[str]:
    """The connection's https URLs whose certificates ``verify_ssl: false`` leaves unchecked."""
    if settings.verify_ssl:
        return []
    urls = [settings.endpoint, settings.minio_endpoint or ""]
    if settings.refresh_token:
        urls.append(settings.token_endpoint)
    return [url for url in urls if url.startswith("https://")]


def is_loopback(hostname: str) -> bool:
    """Whether ``hostname`` is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if hostname.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _positive(conn_id: str, key: str, value: Any, zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise OscarClientError(f"connection {conn_id!r}: extra {key!r} must be a positive number")
    return number


def _boolean(conn_id: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise OscarClientError(f"connection {conn_id!r}: extra 'verify_ssl' must be true or false")
