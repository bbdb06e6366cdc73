"""An ``oscar`` connection read into cluster settings: what is accepted, what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks.api import ClusterSettings
from airflow_provider_oscar.hooks.connection import (
    is_loopback,
    settings_from_connection,
    unverified_urls,
)

CONN_ID = "oscar_unit"


def settings(host: str | None = "https://oscar.example.org", **fields: Any) -> ClusterSettings:
    extra = fields.pop("extra", {})
    conn = Connection(
        conn_id=CONN_ID,
        conn_type="oscar",
        host=host,
        login=fields.pop("login", "oscar"),
        password=fields.pop("password", "s3cret-pass"),
        extra=json.dumps(extra),
        **fields,
    )
    return settings_from_connection(conn)


def refused(**fields: Any) -> str:
    with pytest.raises(OscarClientError) as caught:
        settings(**fields)
    return str(caught.value)


# host, port and schema ------------------------------------------------------------------------


def test_the_endpoint_loses_trailing_slashes_and_surrounding_blanks() -> None:
    assert settings("  https://oscar.example.org/  ").endpoint == "https://oscar.example.org"


@pytest.mark.parametrize(
    ("schema", "scheme"), [("HTTP", "http"), ("https", "https"), ("s3", "https")]
)
def test_a_bare_host_takes_its_scheme_from_the_schema_when_it_is_http_or_https(
    schema: str, scheme: str
) -> None:
    assert settings("oscar.example.org", schema=schema).endpoint == f"{scheme}://oscar.example.org"


def test_a_port_already_in_the_host_is_kept_and_the_connections_port_ignored() -> None:
    assert settings("https://oscar.example.org:8443", port=9000).endpoint == (
        "https://oscar.example.org:8443"
    )


def test_a_separate_port_goes_before_the_path_of_the_host() -> None:
    read = settings("https://gateway.example.org/oscar/", port=8443)
    assert read.endpoint == "https://gateway.example.org:8443/oscar"


def test_only_trailing_slashes_are_cut_from_the_endpoint_and_ids() -> None:
    read = settings("https://gateway.example.org/OSCARX/", extra={"cluster_id": "CX/"})
    assert (read.endpoint, read.cluster_id) == ("https://gateway.example.org/OSCARX", "CX")


@pytest.mark.parametrize("host", [None, "", "   "])
def test_a_connection_without_host_is_refused_with_its_id(host: str | None) -> None:
    assert refused(host=host) == (f"connection '{CONN_ID}' has no host (the OSCAR endpoint)")


def test_a_host_that_is_not_a_url_is_refused_naming_it() -> None:
    message = refused(host="https://[oscar.example.org", port=8443)
    assert message.startswith(
        f"connection '{CONN_ID}': host 'https://[oscar.example.org' is not a URL: "
    )


def test_a_port_that_is_not_a_number_is_refused_naming_the_host() -> None:
    assert refused(host="https://oscar.example.org:https") == (
        f"connection '{CONN_ID}': host 'https://oscar.example.org:https' must be an http:// or "
        "https:// URL with a host"
    )


def test_login_and_password_are_read_and_blank_ones_are_none() -> None:
    read = settings(login="alice", password="pw-12345")
    assert (read.user, read.password) == ("alice", "pw-12345")
    blank = settings(login="", password="", extra={"oidc_token": "tok-abcdef"})
    assert (blank.user, blank.password, blank.oidc_token) == (None, None, "tok-abcdef")


# extras ---------------------------------------------------------------------------------------


def test_oidc_extras_are_read_as_text_and_empty_ones_ignored() -> None:
    read = settings(
        extra={
            "refresh_token": "refresh-abcdef",
            "token_endpoint": "https://aai.example.org/token",
            "client_id": 42,
            "scopes": "openid",
            "oidc_token": "",
        }
    )
    assert read.refresh_token == "refresh-abcdef"
    assert read.token_endpoint == "https://aai.example.org/token"
    assert read.client_id == "42"
    assert read.scopes == "openid"
    assert read.oidc_token is None


def test_minio_endpoint_and_cluster_id_lose_trailing_slashes() -> None:
    read = settings(extra={"minio_endpoint": "https://minio.example.org/", "cluster_id": "c1/"})
    assert (read.minio_endpoint, read.cluster_id) == ("https://minio.example.org", "c1")


def test_extras_with_the_legacy_prefix_are_read() -> None:
    read = settings(extra={"extra__oscar__cluster_id": "legacy", "extra__oscar__retries": "2"})
    assert (read.cluster_id, read.retries) == ("legacy", 2)


def test_a_minio_endpoint_with_a_scheme_other_than_http_is_refused_naming_the_extra() -> None:
    assert refused(extra={"minio_endpoint": "s3://minio.example.org"}) == (
        f"connection '{CONN_ID}': extra 'minio_endpoint' 's3://minio.example.org' must be an "
        "http:// or https:// URL with a host"
    )


def test_the_plain_key_wins_over_the_legacy_prefixed_one() -> None:
    read = settings(extra={"timeout": "5", "extra__oscar__timeout": "9"})
    assert read.timeout == 5.0


def test_retries_may_be_zero_and_are_whole_numbers() -> None:
    assert settings(extra={"retries": 0}).retries == 0
    read = settings(extra={"retries": "3"})
    assert read.retries == 3
    assert isinstance(read.retries, int)


@pytest.mark.parametrize("key", ["timeout", "run_timeout", "backoff"])
def test_zero_is_refused_where_a_positive_number_is_needed(key: str) -> None:
    assert refused(extra={key: 0}) == (
        f"connection '{CONN_ID}': extra '{key}' must be a positive number"
    )


@pytest.mark.parametrize("value", [-1, "-0.5", "nan", "-inf", [1], "ten"])
def test_retries_that_are_not_a_number_of_zero_or_more_are_refused(value: Any) -> None:
    assert refused(extra={"retries": value}) == (
        f"connection '{CONN_ID}': extra 'retries' must be a positive number"
    )


def test_the_smallest_positive_timeout_is_accepted() -> None:
    assert settings(extra={"timeout": "0.001"}).timeout == 0.001


@pytest.mark.parametrize(
    ("value", "verify"),
    [
        (True, True),
        (False, False),
        (" On ", True),
        ("off", False),
        ("yes", True),
        ("no", False),
        ("True", True),
        ("FALSE", False),
        ("1", True),
        (0, False),
    ],
)
def test_verify_ssl_takes_booleans_and_their_usual_spellings(value: Any, verify: bool) -> None:
    assert settings(extra={"verify_ssl": value}).verify_ssl is verify


def test_verify_ssl_that_is_no_boolean_is_refused_naming_the_extra() -> None:
    assert refused(extra={"verify_ssl": "2"}) == (
        f"connection '{CONN_ID}': extra 'verify_ssl' must be true or false"
    )


# where the refresh token may travel -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/token", "http://127.0.0.1/token", "http://[::1]:9/token"]
)
def test_a_plain_http_token_endpoint_is_accepted_on_this_machine(url: str) -> None:
    assert settings(extra={"token_endpoint": url}).token_endpoint == url


def test_a_plain_http_token_endpoint_elsewhere_is_refused() -> None:
    assert refused(extra={"token_endpoint": "http://aai.example.org/token"}) == (
        f"connection '{CONN_ID}': extra 'token_endpoint' 'http://aai.example.org/token' must "
        "use https: the refresh token would cross the network in clear text (plain http is "
        "accepted for loopback hosts only)"
    )


def test_a_token_endpoint_that_is_not_a_web_url_is_refused_naming_the_extra() -> None:
    assert refused(extra={"token_endpoint": "ftp://aai.example.org/token"}) == (
        f"connection '{CONN_ID}': extra 'token_endpoint' 'ftp://aai.example.org/token' must be "
        "an http:// or https:// URL with a host"
    )


@pytest.mark.parametrize(
    ("hostname", "loopback"),
    [
        ("localhost", True),
        ("LocalHost.localdomain", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_loopback_hosts_are_this_machine_only(hostname: str, loopback: bool) -> None:
    assert is_loopback(hostname) is loopback


# certificates left unchecked ------------------------------------------------------------------


def test_no_url_is_unverified_while_certificates_are_checked() -> None:
    assert unverified_urls(settings(extra={"minio_endpoint": "https://minio.example.org"})) == []


def test_unverified_urls_are_the_https_ones_the_connection_talks_to() -> None:
    read = settings(
        extra={
            "verify_ssl": False,
            "minio_endpoint": "http://minio.example.org",
            "refresh_token": "refresh-abcdef",
            "token_endpoint": "https://aai.example.org/token",
        }
    )
    assert unverified_urls(read) == ["https://oscar.example.org", "https://aai.example.org/token"]


def test_the_token_endpoint_is_unverified_only_when_a_refresh_token_travels_there() -> None:
    read = settings(
        extra={"verify_ssl": "false", "token_endpoint": "https://aai.example.org/token"}
    )
    assert unverified_urls(read) == ["https://oscar.example.org"]
