"""OSCAR Hub crates: curated services described as RO-Crates, read into service definitions.

An OSCAR Hub repository (grycap/oscar-hub by default) holds one folder per service under
``crates/``: ``ro-crate-metadata.json`` (RO-Crate 1.2), whose root dataset (the entity with
``@id`` ``./``) lists in ``hasPart`` the service's FDL (``fdl.yml``) and script (``script.sh``),
both mandatory (grycap/oscar-hub ``docs/src/content/docs/contribute/crates.mdx``, "Required
metadata"). ``oscar-cli hub deploy <slug>`` (grycap/oscar-cli ``cmd/hub_deploy.go``
``hubDeployFunc``; ``pkg/hub/hub.go`` ``FetchFDL``, ``LoadLocalFDL``, ``embedArtifacts``) reads
the FDL of ``<root>/<slug>`` from GitHub at a ref, or from a local folder, puts the script's
text in place of its path (a path may not leave the crate), and applies the first service.

:func:`load_crate` does the same from a local folder, :func:`fetch_crate` from a repository
(``raw.githubusercontent.com``, or any server laid out the same way), with stricter checks:
the crate must parse as an RO-Crate with a root dataset whose ``hasPart`` names the FDL and
its script, and the FDL must define exactly one service. Every refusal names the field.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from airflow_provider_oscar import bounded_yaml
from airflow_provider_oscar.errors import OscarApiError, OscarDefinitionError
from airflow_provider_oscar.fdl import Service, load_fdl

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_REF",
    "DEFAULT_REPO",
    "DEFAULT_ROOT",
    "METADATA",
    "Crate",
    "fetch_crate",
    "load_crate",
]

DEFAULT_REPO = "grycap/oscar-hub"
DEFAULT_REF = "main"
DEFAULT_ROOT = "crates"  # oscar-cli hub deploy's --path default
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
METADATA = "ro-crate-metadata.json"
TIMEOUT = 15.0  # seconds, as oscar-cli's hub client
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_YAML = (".yml", ".yaml")


@dataclass(frozen=True)
class Crate:
    """A crate read and checked: what it is, where it came from, and its one service."""

    slug: str
    title: str
    version: str | None
    fdl: str
    script: str
    service: Service
    source: str


def load_crate(path: str | Path, slug: str | None = None) -> Crate:
    """The crate in folder ``path``, or in ``path/<slug>`` (``path`` an OSCAR Hub folder, or
    its root holding ``crates/<slug>``), as ``oscar-cli hub deploy --local-path`` finds it."""
    root = Path(path)
    candidates = [root] if slug is None else [root, root / slug, root / DEFAULT_ROOT / slug]
    for folder in candidates:
        if (folder / METADATA).is_file():
            return _read(folder, slug or folder.resolve().name, str(folder))
    where = ", ".join(str(c) for c in candidates)
    raise OscarDefinitionError(f"OSCAR Hub crate: no {METADATA} in {where}")


def fetch_crate(
    slug: str,
    *,
    repo: str = DEFAULT_REPO,
    ref: str = DEFAULT_REF,
    root: str = DEFAULT_ROOT,
    base_url: str = DEFAULT_BASE_URL,
    client: httpx.Client | None = None,
) -> Crate:
    """The crate ``<root>/<slug>`` of GitHub repository ``repo`` at ``ref``.

    Files are read from ``<base_url>/<repo>/<ref>/<root>/<slug>/<file>``; only the metadata,
    the FDL and the scripts it names are downloaded.
    """
    if not _SLUG.fullmatch(slug):
        raise OscarDefinitionError(f"OSCAR Hub crate name {slug!r} is not a folder name")
    if not _REPO.fullmatch(repo):
        raise OscarDefinitionError(f"OSCAR Hub repository {repo!r} is not 'owner/name'")
    parts = [*repo.split("/"), *ref.split("/"), *root.strip("/").split("/"), slug]
    base = "/".join([base_url.rstrip("/"), *(quote(p, safe="") for p in parts if p)])
    source = f"{repo}@{ref}:{'/'.join(p for p in (root.strip('/'), slug) if p)}"
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT, follow_redirects=True)
    try:

        def download(name: str) -> bytes:
            url = f"{base}/{'/'.join(quote(p, safe='') for p in name.split('/'))}"
            try:
                response = http.get(url)
            except httpx.HTTPError as exc:
                raise OscarApiError(f"OSCAR Hub crate {source}: reading {name}: {exc}") from exc
            if response.status_code == 404:
                raise OscarDefinitionError(f"OSCAR Hub crate {source}: {name} not found ({url})")
            if not response.is_success:
                raise OscarApiError(
                    f"OSCAR Hub crate {source}: reading {name} answered {response.status_code}"
                )
            if len(response.content) > bounded_yaml.MAX_DOCUMENT_BYTES:
                raise OscarDefinitionError(f"OSCAR Hub crate {source}: {name} is too large")
            return response.content

        with tempfile.TemporaryDirectory(prefix="oscar-hub-crate-") as folder:
            _copy(Path(folder), download, source, slug)
            crate = _read(Path(folder), slug, source)
    finally:
        if own:
            http.close()
    return crate


def _copy(folder: Path, download: Callable[[str], bytes], source: str, slug: str) -> None:
    """Download the metadata, then the FDL it names, then the scripts the FDL names."""
    metadata = download(METADATA)
    (folder / METADATA).write_bytes(metadata)
    parts = _parts(_root_dataset(_metadata(metadata, source), source), source)
    fdl = _fdl_name(parts, slug, source)
    text = download(fdl)
    _write(folder, fdl, text)
    for script in _script_names(text.decode("utf-8", errors="replace"), source, fdl):
        _write(folder, script, download(script))


def _write(folder: Path, name: str, content: bytes) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _read(folder: Path, slug: str, source: str) -> Crate:
    metadata_path = folder / METADATA
    try:
        raw = metadata_path.read_bytes()
    except OSError as exc:
        raise OscarDefinitionError(f"OSCAR Hub crate {source}: {METADATA}: {exc}") from None
    root = _root_dataset(_metadata(raw, source), source)
    parts = _parts(root, source)
    fdl = _fdl_name(parts, slug, source)
    fdl_path = folder / fdl
    if not fdl_path.is_file():
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: 'hasPart' names the FDL {fdl!r}, which is not in it"
        )
    scripts = _script_names(bounded_yaml.read(fdl_path), source, fdl)
    for script in scripts:
        if script not in parts:
            raise OscarDefinitionError(
                f"OSCAR Hub crate {source}: the FDL's script {script!r} is not in the root "
                f"dataset's 'hasPart' ({', '.join(parts)})"
            )
    try:
        services = load_fdl(fdl_path)
    except OscarDefinitionError as exc:
        raise OscarDefinitionError(f"OSCAR Hub crate {source}: {fdl}: {exc}") from None
    if len(services) != 1:
        names = ", ".join(repr(s.name) for s in services)
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: {fdl} defines {len(services)} services ({names}); a "
            "crate deploys one"
        )
    version = root.get("version")
    return Crate(
        slug=slug,
        title=str(root.get("name") or slug),
        version=str(version) if version is not None else None,
        fdl=fdl,
        script=scripts[0],
        service=services[0],
        source=source,
    )


def _metadata(raw: bytes, source: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: {METADATA} is not JSON: {exc}"
        ) from None
    if not isinstance(document, dict):
        raise OscarDefinitionError(f"OSCAR Hub crate {source}: {METADATA} is not a JSON object")
    return document


def _root_dataset(document: dict[str, Any], source: str) -> dict[str, Any]:
    """The entity ``./`` of ``@graph`` (oscar-cli ``pkg/hub/rocrate.go`` ``datasetNode``)."""
    graph = document.get("@graph")
    if not isinstance(graph, list) or not graph:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: field '@graph' of {METADATA} must be a non-empty list"
        )
    for entity in graph:
        if isinstance(entity, dict) and entity.get("@id") == "./":
            return entity
    raise OscarDefinitionError(
        f"OSCAR Hub crate {source}: field '@graph' has no root dataset (an entity with '@id': './')"
    )


def _parts(root: dict[str, Any], source: str) -> list[str]:
    """The ids the root dataset's ``hasPart`` lists (a reference, or a list of them)."""
    value = root.get("hasPart")
    items = value if isinstance(value, list) else [value] if value is not None else []
    parts = []
    for index, item in enumerate(items):
        ident = item.get("@id") if isinstance(item, dict) else item
        if not isinstance(ident, str) or not ident:
            raise OscarDefinitionError(
                f"OSCAR Hub crate {source}: field 'hasPart' entry {index} of the root dataset "
                "is not a reference ({'@id': ...})"
            )
        parts.append(ident.removeprefix("./"))
    if not parts:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: field 'hasPart' of the root dataset is missing or empty; "
            "it must name the FDL and the script"
        )
    return parts


def _fdl_name(parts: list[str], slug: str, source: str) -> str:
    """The FDL among the parts: the only YAML file, else ``<slug>.yml`` (oscar-cli's choice)."""
    yamls = [p for p in parts if p.lower().endswith(_YAML)]
    if len(yamls) > 1:
        preferred = [p for p in yamls if PurePosixPath(p).stem == slug]
        yamls = preferred or yamls
    if not yamls:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: field 'hasPart' of the root dataset names no FDL (a "
            f".yml or .yaml file) among {', '.join(parts)}"
        )
    if len(yamls) > 1:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: field 'hasPart' names several FDLs ({', '.join(yamls)})"
        )
    return _relative(yamls[0], source, "'hasPart'")


def _script_names(text: str, source: str, fdl: str) -> list[str]:
    """The ``script`` paths of the FDL's services (relative to the FDL's folder, as oscar-cli
    reads them), each as a path inside the crate."""
    try:
        document = bounded_yaml.load(text)
    except (yaml.YAMLError, bounded_yaml.YamlLimitError, RecursionError) as exc:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: {fdl} is not valid YAML: {exc}"
        ) from None
    functions = document.get("functions") if isinstance(document, dict) else None
    entries = functions.get("oscar") if isinstance(functions, dict) else None
    if not isinstance(entries, list):
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: {fdl} has no 'functions.oscar' list of services"
        )
    names = []
    for index, entry in enumerate(entries):
        for cluster, service in (entry or {}).items() if isinstance(entry, dict) else []:
            script = service.get("script") if isinstance(service, dict) else None
            where = f"{fdl}: field functions.oscar[{index}].{cluster}.script"
            if not isinstance(script, str) or not script.strip() or "\n" in script:
                raise OscarDefinitionError(
                    f"OSCAR Hub crate {source}: {where} must name the script file of the crate"
                )
            joined = PurePosixPath(fdl).parent / script.strip().removeprefix("./")
            names.append(_relative(str(joined), source, where))
    return names


def _relative(name: str, source: str, where: str) -> str:
    """``name`` as a path inside the crate (no absolute path, no ``..``)."""
    path = PurePosixPath(name.removeprefix("./"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise OscarDefinitionError(
            f"OSCAR Hub crate {source}: {where} {name!r} leaves the crate's folder"
        )
    return str(path)
