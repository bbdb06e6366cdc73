"""pkg/types/storage.go: where a service reads and writes, and the storage providers it names."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.types.gojson import go

DEFAULT_PROVIDER = "default"  # types.DefaultProvider


@dataclass
class StorageIOConfig:
    """One ``input``/``output`` entry (also ``mount``): ``<provider>[.<id>]`` and a path."""

    storage_provider: str = go("storage_provider", "")
    path: str = go("path", "")
    suffix: list[str] | None = go("suffix", omitempty=True)
    prefix: list[str] | None = go("prefix", omitempty=True)
    options: str = go("options", "", omitempty=True, since=Release.of("v4.1.0"))

    @property
    def provider_type(self) -> str:
        """``minio`` of ``minio.default`` (getProviderInfo lower-cases it)."""
        return self.storage_provider.split(".", 1)[0].lower()

    @property
    def provider_id(self) -> str:
        parts = self.storage_provider.split(".", 1)
        return parts[1] if len(parts) == 2 and parts[1] else DEFAULT_PROVIDER

    @property
    def bucket(self) -> str:
        return self.path.strip(" /").split("/", 1)[0]

    @property
    def folder(self) -> str:
        parts = self.path.strip(" /").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    def accepts(self, relative_name: str) -> bool:
        """Whether an output file passes the entry's ``prefix`` and ``suffix`` filters."""
        ok_prefix = not self.prefix or any(relative_name.startswith(p) for p in self.prefix)
        ok_suffix = not self.suffix or any(relative_name.endswith(s) for s in self.suffix)
        return ok_prefix and ok_suffix


@dataclass
class MinIOProvider:
    endpoint: str = go("endpoint", "")
    verify: bool = go("verify", False)
    access_key: str = go("access_key", "")
    secret_key: str = go("secret_key", "")
    region: str = go("region", "")


@dataclass
class S3Provider:
    access_key: str = go("access_key", "")
    secret_key: str = go("secret_key", "")
    region: str = go("region", "")


@dataclass
class OnedataProvider:
    oneprovider_host: str = go("oneprovider_host", "")
    token: str = go("token", "")
    space: str = go("space", "")


@dataclass
class WebDavProvider:
    hostname: str = go("hostname", "")
    login: str = go("login", "")
    password: str = go("password", "")


@dataclass
class Rucio:
    host: str = go("host", "")
    account: str = go("account", "")
    rse: str = go("rse", "")
    refresh_token: str = go("refresh_token", "")
    auth_host: str = go("auth_host", "")
    oidc_audience: str = go("oidc_audience", "")
    token_endpoint: str = go("token_endpoint", "")


@dataclass
class StorageProviders:
    s3: dict[str, S3Provider | None] | None = go("s3", omitempty=True)
    minio: dict[str, MinIOProvider | None] | None = go("minio", omitempty=True)
    onedata: dict[str, OnedataProvider | None] | None = go("onedata", omitempty=True)
    webdav: dict[str, WebDavProvider | None] | None = go("webdav", omitempty=True)
    rucio: dict[str, Rucio | None] | None = go("rucio", omitempty=True)
