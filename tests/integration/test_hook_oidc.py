"""OscarHook with OIDC credentials: static access tokens and refresh tokens.

The embedded OSCAR accepts the bearer tokens in ``Settings.bearer_tokens`` on ``/system`` and
mints short-lived JWTs for the refresh tokens in ``Settings.refresh_tokens`` at its stand-in
token endpoint ``/local/oidc/token``.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_oscar.errors import OscarClientError
from airflow_provider_oscar.hooks import tokens
from airflow_provider_oscar.hooks.oscar import OscarHook
from airflow_provider_oscar.local.api import request_counts
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_oidc_test"
SCRIPT = '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n'


class Identity:
    """An OIDC user of the embedded OSCAR: a subject with a static and a refresh token."""

    def __init__(self, oscar: OscarLocal) -> None:
        self.oscar = oscar
        self.subject = f"user-{uuid.uuid4().hex[:8]}"
        self.access_token = f"static-{uuid.uuid4().hex}"
        self.refresh_token = f"refresh-{uuid.uuid4().hex}"
        oscar.settings.bearer_tokens[self.access_token] = self.subject
        oscar.settings.refresh_tokens[self.refresh_token] = self.subject

    @property
    def token_endpoint(self) -> str:
        return f"{self.oscar.endpoint}/local/oidc/token"

    def minted(self) -> list[str]:
        """Access tokens the token endpoint issued to this subject, oldest first."""
        tokens = self.oscar.settings.bearer_tokens
        return [t for t, s in tokens.items() if s == self.subject and t != self.access_token]

    def forget(self) -> None:
        settings = self.oscar.settings
        for token in [t for t, s in settings.bearer_tokens.items() if s == self.subject]:
            del settings.bearer_tokens[token]
        settings.refresh_tokens.pop(self.refresh_token, None)


@pytest.fixture
def user(oscar: OscarLocal) -> Iterator[Identity]:
    identity = Identity(oscar)
    yield identity
    identity.forget()


@pytest.fixture
def connect(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OscarHook]:
    """A hook whose connection has no login/password unless given, plus the given extras."""

    def _connect(login: str | None = None, password: str | None = None, **extra: Any) -> OscarHook:
        conn = {
            "conn_type": "oscar",
            "host": oscar.endpoint,
            "login": login,
            "password": password,
            "extra": {"verify_ssl": False, "retries": 1, "backoff": 0.01, **extra},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return OscarHook(CONN_ID)

    return _connect


@pytest.fixture
def refreshing(connect: Callable[..., OscarHook], user: Identity) -> OscarHook:
    return connect(refresh_token=user.refresh_token, token_endpoint=user.token_endpoint)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stop the hook's clock (only its clock), then move it forward by some seconds: a token's
    remaining time is then exactly what the test says, however slowly the machine runs."""
    base, offset = time.time(), 0.0

    def advance(seconds: float) -> None:
        nonlocal offset
        offset += seconds

    fake = types.SimpleNamespace(time=lambda: base + offset)
    monkeypatch.setattr(tokens, "time", fake)
    return advance


def jwt(subject: str, expires: float) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'exp': int(expires)})}."


def owner_of(admin: httpx.Client, name: str) -> str:
    return str(admin.get(f"/system/services/{name}").json()["owner"])


# a static access token -------------------------------------------------------------------------


def test_oidc_token_is_the_bearer_of_system_requests(
    connect: Callable[..., OscarHook], user: Identity, admin: httpx.Client, unique_name: Any
) -> None:
    hook = connect(oidc_token=user.access_token)
    name = unique_name("oidc")
    try:
        hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
        assert owner_of(admin, name) == user.subject
    finally:
        admin.delete(f"/system/services/{name}")


def test_oidc_token_takes_precedence_over_login_and_password(
    connect: Callable[..., OscarHook],
    user: Identity,
    oscar: OscarLocal,
    admin: httpx.Client,
    unique_name: Any,
) -> None:
    hook = connect(login=oscar.user, password=oscar.password, oidc_token=user.access_token)
    name = unique_name("oidc")
    try:
        hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
        assert owner_of(admin, name) == user.subject
    finally:
        admin.delete(f"/system/services/{name}")


def test_oidc_user_sees_only_the_services_it_may_see(
    connect: Callable[..., OscarHook], user: Identity, deploy: Callable[..., dict[str, Any]]
) -> None:
    private = deploy(SCRIPT)["name"]
    public = deploy(SCRIPT, visibility="public")["name"]
    names = {s.name for s in connect(oidc_token=user.access_token).list_services()}
    assert public in names
    assert private not in names


def test_unknown_oidc_token_is_a_client_error(connect: Callable[..., OscarHook]) -> None:
    with pytest.raises(OscarClientError, match="GET /system/info answered 401") as caught:
        connect(oidc_token="not-a-known-token").get_info()
    assert caught.value.status_code == 401


def test_oidc_user_runs_its_own_service_with_the_service_token(
    connect: Callable[..., OscarHook], user: Identity, admin: httpx.Client, unique_name: Any
) -> None:
    hook = connect(oidc_token=user.access_token)
    name = unique_name("oidc")
    try:
        hook.apply_service(
            {"name": name, "image": "local/test", "script": SCRIPT, "log_level": "CRITICAL"}
        )
        assert hook.run_service(name, "from oidc").body.rstrip(b"\n") == b"from oidc"
    finally:
        admin.delete(f"/system/services/{name}")


def test_oidc_user_sees_the_job_it_submitted_in_its_job_list(
    connect: Callable[..., OscarHook], user: Identity, admin: httpx.Client, unique_name: Any
) -> None:
    # OSCAR lists to an OIDC user only the jobs it owns; a service token starts ownerless jobs.
    hook = connect(oidc_token=user.access_token)
    name = unique_name("oidc")
    try:
        hook.apply_service({"name": name, "image": "local/test", "script": SCRIPT})
        hook.submit_job(name, "from oidc", job_name=f"{name}-mine")
        assert f"{name}-mine" in hook.list_jobs(name)
    finally:
        admin.delete(f"/system/services/{name}")


def test_oscar_python_client_uses_the_oidc_token(
    connect: Callable[..., OscarHook], user: Identity, deploy: Callable[..., dict[str, Any]]
) -> None:
    public = deploy(SCRIPT, visibility="public")["name"]
    token = jwt(user.subject, time.time() + 3600)
    user.oscar.settings.bearer_tokens[token] = user.subject
    client = connect(oidc_token=token).get_oscar_client()
    assert public in [s["name"] for s in client.list_services().json()]


# refresh tokens ---------------------------------------------------------------------------------


def test_refresh_token_is_exchanged_for_an_access_token(
    refreshing: OscarHook, user: Identity
) -> None:
    assert refreshing.get_info()["version"].startswith("v4.")
    assert len(user.minted()) == 1


def test_access_token_is_reused_while_it_is_fresh(
    connect: Callable[..., OscarHook], refreshing: OscarHook, user: Identity
) -> None:
    refreshing.get_info()
    again = connect(refresh_token=user.refresh_token, token_endpoint=user.token_endpoint)
    again.get_info()
    again.get_status()
    assert len(user.minted()) == 1


def test_access_token_is_kept_while_more_than_a_minute_remains(
    refreshing: OscarHook, user: Identity, clock: Callable[[float], None]
) -> None:
    refreshing.get_info()
    clock(user.oscar.settings.access_token_lifetime - 61)
    refreshing.get_info()
    assert len(user.minted()) == 1


def test_access_token_is_refreshed_a_minute_before_it_expires(
    refreshing: OscarHook, user: Identity, clock: Callable[[float], None]
) -> None:
    refreshing.get_info()
    (first,) = user.minted()
    clock(user.oscar.settings.access_token_lifetime - 59)
    assert tokens.jwt_expiry(first) > tokens.time.time()  # still valid, yet replaced
    refreshing.get_info()
    assert len(user.minted()) == 2


def test_still_valid_oidc_token_is_used_before_any_refresh(
    connect: Callable[..., OscarHook], user: Identity
) -> None:
    token = jwt(user.subject, time.time() + 3600)
    user.oscar.settings.bearer_tokens[token] = user.subject
    hook = connect(
        oidc_token=token, refresh_token=user.refresh_token, token_endpoint=user.token_endpoint
    )
    hook.get_info()
    assert user.minted() == [token]  # the only token of the subject is the one we gave


def test_expired_oidc_token_is_refreshed(connect: Callable[..., OscarHook], user: Identity) -> None:
    expired = jwt(user.subject, time.time() - 10)
    hook = connect(
        oidc_token=expired, refresh_token=user.refresh_token, token_endpoint=user.token_endpoint
    )
    assert hook.get_info()["version"].startswith("v4.")
    assert len(user.minted()) == 1


def test_bad_refresh_token_is_a_client_error_naming_the_token_endpoint(
    connect: Callable[..., OscarHook], user: Identity
) -> None:
    hook = connect(refresh_token="never-issued-refresh", token_endpoint=user.token_endpoint)
    with pytest.raises(OscarClientError) as caught:
        hook.get_info()
    message = str(caught.value)
    assert f"refreshing the OIDC token at {user.token_endpoint} failed with 400" in message
    assert "invalid_grant" in message
    assert caught.value.status_code == 400


def test_refreshed_access_token_is_masked(refreshing: OscarHook, user: Identity) -> None:
    refreshing.get_info()
    (token,) = user.minted()
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


async def test_async_face_refreshes_with_the_awaitable_connection_lookup(
    refreshing: OscarHook, user: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the blocking get_connection was called from async code")

    monkeypatch.setattr(OscarHook, "get_connection", forbidden)
    status = await refreshing.aget_status()
    assert status["cluster"]["nodes"]
    assert len(user.minted()) == 1


# where the refresh token may travel -------------------------------------------------------------


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that records each request and answers with ``reply(path)``."""

    def __init__(self, host: str, reply: Callable[[str], tuple[int, dict[str, str]]]) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.reply = reply
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                recorder.seen.append((self.path, self.rfile.read(length)))
                status, headers = recorder.reply(self.path)
                self.send_response(status)
                for name, value in {**headers, "content-length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    """Another host (127.0.0.2) that would gladly take a refresh token."""
    server = Recorder("127.0.0.2", lambda path: (200, {}))
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [307, 308, 302])
@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_redirecting_token_endpoint_does_not_get_the_refresh_token_sent_on(
    connect: Callable[..., OscarHook], elsewhere: Recorder, status: int, face: str
) -> None:
    redirector = Recorder("127.0.0.1", lambda path: (status, {"location": f"{elsewhere.url}/t"}))
    try:
        hook = connect(refresh_token="refresh-to-keep", token_endpoint=f"{redirector.url}/token")
        with pytest.raises(OscarClientError, match=rf"answered {status} with a redirect") as caught:
            if face == "sync":
                hook.get_info()
            else:
                asyncio.run(hook.aget_status())
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert f"to '{elsewhere.url}/t'" in str(caught.value)
    assert "'token_endpoint'" in str(caught.value)
    assert [path for path, _ in redirector.seen] == ["/token"]
    assert elsewhere.seen == []  # the refresh token went nowhere else


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://aai.example.org/token",
        "http://10.0.0.5/token",
        "ftp://aai.example.org/token",
        "aai.example.org/token",
        "https:///token",
    ],
)
def test_a_token_endpoint_that_is_not_https_is_refused_before_any_request(
    connect: Callable[..., OscarHook], oscar: OscarLocal, endpoint: str
) -> None:
    assert oscar.cluster is not None
    counts = request_counts(oscar.cluster)
    before = counts.copy()
    with pytest.raises(OscarClientError, match=r"extra 'token_endpoint'") as caught:
        connect(refresh_token="refresh-to-keep", token_endpoint=endpoint).get_info()
    assert repr(endpoint) in str(caught.value)
    assert counts == before


@pytest.mark.parametrize(
    "endpoint",
    ["https://aai.example.org/token", "http://127.0.0.1:9/token", "http://localhost/token"],
)
def test_https_and_loopback_http_token_endpoints_are_accepted(
    connect: Callable[..., OscarHook], endpoint: str
) -> None:
    hook = connect(refresh_token="refresh-to-keep", token_endpoint=endpoint)
    assert hook.settings.token_endpoint == endpoint
