"""OscarHook's connection: parsing, the UI form, test_connection, masking and oscar-python."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_oscar.errors import OscarApiError, OscarClientError
from airflow_provider_oscar.hooks.oscar import CONNECTION_FIELDS, OscarHook
from airflow_provider_oscar.local.server import OscarLocal

CONN_ID = "oscar_conn_test"


@pytest.fixture
def connect(oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OscarHook]:
    """A hook on ``AIRFLOW_CONN_OSCAR_CONN_TEST`` built from the session server's connection."""

    def _connect(**changes: Any) -> OscarHook:
        conn = json.loads(oscar.connection_json())
        conn["extra"].update(changes.pop("extra", {}))
        conn.update(changes)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return OscarHook(CONN_ID)

    return _connect


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# host, port and schema -------------------------------------------------------------------


def test_host_with_scheme_and_port_is_used_as_the_endpoint(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect()
    assert hook.settings.endpoint == oscar.endpoint
    assert hook.get_info()["version"].startswith("v4.")


def test_bare_host_takes_port_and_http_scheme_from_the_connection(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect(host=oscar.host, port=oscar.port, schema="http")
    assert hook.settings.endpoint == oscar.endpoint
    assert hook.get_info()["version"].startswith("v4.")


def test_host_with_scheme_takes_a_separate_port(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect(host=f"http://{oscar.host}", port=oscar.port)
    assert hook.get_info()["version"].startswith("v4.")


def test_port_is_placed_before_the_path_of_a_host_with_a_trailing_slash(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect(host=f"http://{oscar.host}/", port=oscar.port)
    assert hook.settings.endpoint == oscar.endpoint
    assert hook.get_info()["version"].startswith("v4.")


def test_port_is_placed_before_a_path_prefix(connect: Callable[..., OscarHook]) -> None:
    hook = connect(host="https://gateway.example.org/oscar/", port=8443)
    assert hook.settings.endpoint == "https://gateway.example.org:8443/oscar"


def test_bare_host_without_schema_defaults_to_https(connect: Callable[..., OscarHook]) -> None:
    hook = connect(host="oscar.example.org", port=None, schema=None)
    assert hook.settings.endpoint == "https://oscar.example.org"


def test_uri_connection_with_http_schema_reaches_the_server(
    oscar: OscarLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = oscar.connection_uri().replace("/?__extra__", "/http?__extra__")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", uri)
    hook = OscarHook(CONN_ID)
    assert hook.settings.endpoint == oscar.endpoint
    assert hook.get_info()["version"].startswith("v4.")


def test_connection_without_host_is_refused_with_its_id(
    connect: Callable[..., OscarHook],
) -> None:
    with pytest.raises(OscarApiError, match=rf"{CONN_ID}.*no host"):
        connect(host="").settings  # noqa: B018


def test_connection_without_credentials_is_refused_before_any_request(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    oscar.faults.add(_count_requests())
    with pytest.raises(OscarApiError, match="neither a login/password nor an OIDC token"):
        connect(login=None, password=None).get_info()
    assert _counted(oscar) == 0


# extras ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verify"),
    [("false", False), ("False", False), ("0", False), ("no", False), ("TRUE", True), ("1", True)],
)
def test_verify_ssl_accepts_boolean_strings(
    connect: Callable[..., OscarHook], text: str, verify: bool
) -> None:
    assert connect(extra={"verify_ssl": text}).settings.verify_ssl is verify


def test_verify_ssl_that_is_not_a_boolean_is_refused(connect: Callable[..., OscarHook]) -> None:
    with pytest.raises(OscarApiError, match=r"'verify_ssl' must be true or false"):
        connect(extra={"verify_ssl": "maybe"}).settings  # noqa: B018


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_timeout_that_is_not_a_positive_number_is_refused_naming_the_extra(
    connect: Callable[..., OscarHook], value: str
) -> None:
    with pytest.raises(OscarApiError, match=rf"{CONN_ID}.*'timeout' must be a positive number"):
        connect(extra={"timeout": value}).settings  # noqa: B018


def test_numeric_extras_given_as_text_are_read_as_numbers(
    connect: Callable[..., OscarHook],
) -> None:
    extras = {"timeout": "12.5", "run_timeout": "90", "retries": "0", "backoff": "0.25"}
    settings = connect(extra=extras).settings
    assert (settings.timeout, settings.run_timeout, settings.retries, settings.backoff) == (
        12.5,
        90.0,
        0,
        0.25,
    )


def test_extras_with_the_legacy_prefix_are_honoured(connect: Callable[..., OscarHook]) -> None:
    settings = connect(
        extra={"extra__oscar__cluster_id": "legacy", "extra__oscar__timeout": "7"}
    ).settings
    assert (settings.cluster_id, settings.timeout) == ("legacy", 7.0)


def test_cluster_id_extra_names_the_cluster_in_errors(
    connect: Callable[..., OscarHook],
) -> None:
    hook = connect(extra={"cluster_id": "my-cluster"})
    with pytest.raises(OscarApiError, match=r"^OSCAR cluster my-cluster: service 'absent-svc'"):
        hook.get_deployment("absent-svc")


# schemes and TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("host", {"host": "ftp://oscar.example.org"}),
        ("host", {"host": "file:///etc/passwd"}),
        ("host", {"host": "javascript:alert(1)"}),
        ("host", {"host": "https://"}),
        ("extra 'minio_endpoint'", {"extra": {"minio_endpoint": "s3://minio.example.org"}}),
    ],
)
def test_only_http_and_https_urls_are_accepted_naming_the_field(
    connect: Callable[..., OscarHook], field: str, changes: dict[str, Any]
) -> None:
    with pytest.raises(OscarClientError, match=rf"{CONN_ID}'?: {field} .* must be an http"):
        connect(**changes).settings  # noqa: B018


def test_a_minio_endpoint_without_a_scheme_is_still_accepted(
    connect: Callable[..., OscarHook],
) -> None:
    settings = connect(extra={"minio_endpoint": "minio.example.org:9000"}).settings
    assert settings.minio_endpoint == "minio.example.org:9000"


def test_verify_ssl_false_warns_in_the_task_log_once_per_hook(
    connect: Callable[..., OscarHook], capsys: pytest.CaptureFixture[str]
) -> None:
    hook = connect(
        host="https://oscar.example.org",
        extra={"verify_ssl": False, "minio_endpoint": "https://minio.example.org"},
    )
    capsys.readouterr()
    hook.settings  # noqa: B018
    asyncio.run(hook.asettings())
    warnings = [line for line in capsys.readouterr().out.splitlines() if "verify_ssl" in line]
    assert len(warnings) == 1
    assert "warning" in warnings[0]
    assert "https://oscar.example.org, https://minio.example.org are not checked" in warnings[0]


@pytest.mark.parametrize(
    ("host", "verify"), [("https://oscar.example.org", True), ("http://127.0.0.1:1", False)]
)
def test_no_tls_warning_when_certificates_are_checked_or_there_is_no_tls(
    connect: Callable[..., OscarHook], capsys: pytest.CaptureFixture[str], host: str, verify: bool
) -> None:
    hook = connect(host=host, extra={"verify_ssl": verify})
    capsys.readouterr()
    hook.settings  # noqa: B018
    assert "verify_ssl" not in capsys.readouterr().out


# test_connection ---------------------------------------------------------------------------


def test_test_connection_reports_the_oscar_version(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    ok, message = connect().test_connection()
    assert ok
    assert "v4.1" in message
    assert oscar.endpoint in message


def test_test_connection_reports_a_wrong_password_without_raising(
    connect: Callable[..., OscarHook],
) -> None:
    ok, message = connect(password="not-the-password").test_connection()
    assert not ok
    assert "401" in message


def test_test_connection_reports_a_down_cluster_at_once(
    connect: Callable[..., OscarHook],
) -> None:
    port = closed_port()
    hook = connect(host=f"http://127.0.0.1:{port}")  # default retries and backoff
    started = time.monotonic()
    ok, message = hook.test_connection()
    assert not ok
    assert f"127.0.0.1:{port}" in message
    assert "ConnectError" in message
    assert time.monotonic() - started < 2.0


# secrets ----------------------------------------------------------------------------------


def test_password_and_oidc_token_are_masked_once_the_hook_read_them(
    connect: Callable[..., OscarHook], oscar: OscarLocal
) -> None:
    hook = connect(extra={"oidc_token": "oidc-token-never-logged-1"})
    hook.settings  # noqa: B018
    text = f"user={oscar.user} password={oscar.password} token=oidc-token-never-logged-1"
    assert redact(text) == f"user={oscar.user} password=*** token=***"


def test_fetched_service_token_is_masked(
    connect: Callable[..., OscarHook], deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy("#!/bin/sh\necho hi\n")
    token = connect().get_service_token(service["name"])
    assert token == service["token"]
    assert redact(f"Bearer {token}") == "Bearer ***"


# connection form --------------------------------------------------------------------------


def test_form_methods_are_defined_on_the_hook_class_itself() -> None:
    assert "get_connection_form_widgets" in OscarHook.__dict__
    assert "get_ui_field_behaviour" in OscarHook.__dict__


def test_form_widgets_render_as_the_api_server_renders_them_without_fab() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    fakes = {
        name: mock.MagicMock()
        for name in ("wtforms", "flask_babel", "flask_appbuilder", "flask_appbuilder.fieldwidgets")
    }
    fakes["wtforms"].StringField = HookMetaService.MockStringField
    fakes["wtforms"].PasswordField = HookMetaService.MockPasswordField
    fakes["wtforms"].BooleanField = HookMetaService.MockBooleanField
    fakes["flask_babel"].lazy_gettext = str
    with mock.patch.dict(sys.modules, fakes):
        widgets = OscarHook.get_connection_form_widgets()
    params = {key: field.param.dump() for key, field in widgets.items()}
    assert set(params) == set(CONNECTION_FIELDS)
    assert params["oidc_token"]["schema"]["format"] == "password"
    assert params["refresh_token"]["schema"]["format"] == "password"
    assert params["verify_ssl"]["schema"]["type"][0] == "boolean"
    assert params["verify_ssl"]["value"] is True
    assert params["token_endpoint"]["schema"].get("format") is None


def test_ui_behaviour_relabels_host_and_hides_port_and_schema() -> None:
    behaviour = OscarHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"schema", "port"}
    assert behaviour["relabeling"]["host"] == "OSCAR endpoint"
    assert behaviour["placeholders"]["host"].startswith("https://")


# oscar-python ------------------------------------------------------------------------------


def test_oscar_python_client_lists_services_with_the_connection_credentials(
    connect: Callable[..., OscarHook], deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy("#!/bin/sh\necho hi\n")
    client = connect(extra={"cluster_id": "local-test"}).get_oscar_client()
    assert client.id == "local-test"
    names = [s["name"] for s in client.list_services().json()]
    assert service["name"] in names


def test_oscar_python_client_runs_a_service(
    connect: Callable[..., OscarHook], deploy: Callable[..., dict[str, Any]]
) -> None:
    service = deploy(
        '#!/bin/sh\nprintf "got %s" "$(cat "$INPUT_FILE_PATH")"\n', log_level="CRITICAL"
    )
    client = connect().get_oscar_client()
    response = client.run_service(service["name"], input="hello", timeout=30)
    assert response.status_code == 200
    assert response.text.rstrip("\n") == "got hello"


def test_oscar_python_client_gets_a_real_boolean_for_ssl(
    connect: Callable[..., OscarHook],
) -> None:
    client = connect(extra={"verify_ssl": "False"}).get_oscar_client()
    assert client.ssl is False


# helpers ------------------------------------------------------------------------------------


def _count_requests() -> Any:
    from airflow_provider_oscar.local.faults import Latency

    return Latency(route="/", seconds=0.001, count=1000)


def _counted(oscar: OscarLocal) -> int:
    """Requests the server saw since :func:`_count_requests` was added."""
    (fault,) = oscar.faults.active()
    return 1000 - int(str(fault["count"]))
