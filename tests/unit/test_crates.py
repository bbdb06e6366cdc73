"""OSCAR Hub crates: reading the RO-Crate, its FDL and script, locally and from a repository."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_oscar.crates import fetch_crate, load_crate
from airflow_provider_oscar.errors import OscarDefinitionError

ROOT = Path(__file__).resolve().parents[2]
FDL = """functions:
  oscar:
  - oscar-cluster:
      name: word-count
      image: ubuntu:22.04
      memory: 128Mi
      cpu: '0.1'
      script: script.sh
      input:
      - storage_provider: minio.default
        path: word-count/in
      output:
      - storage_provider: minio.default
        path: word-count/out
"""
SCRIPT = '#!/bin/sh\nwc -w < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/count.txt"\n'


def metadata(has_part: Any = None, **root: Any) -> dict[str, Any]:
    """An RO-Crate 1.2 metadata document whose root dataset lists ``has_part``."""
    dataset = {
        "@id": "./",
        "@type": ["Dataset", "Service", "SoftwareApplication"],
        "name": "Word count",
        "version": "0.3.0",
        "hasPart": [{"@id": "fdl.yml"}, {"@id": "script.sh"}] if has_part is None else has_part,
        **root,
    }
    return {
        "@context": "https://w3id.org/ro/crate/1.2/context",
        "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
            dataset,
        ],
    }


def write_crate(
    folder: Path, document: Any = None, fdl: str = FDL, files: dict[str, str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document or metadata())
    (folder / "ro-crate-metadata.json").write_text(text)
    (folder / "fdl.yml").write_text(fdl)
    for name, content in {"script.sh": SCRIPT, **(files or {})}.items():
        (folder / name).write_text(content)
    return folder


def test_a_crate_folder_gives_its_one_service_with_the_script_text_in_place(
    tmp_path: Path,
) -> None:
    crate = load_crate(write_crate(tmp_path / "word-count"))

    assert (crate.slug, crate.title, crate.version) == ("word-count", "Word count", "0.3.0")
    assert (crate.fdl, crate.script) == ("fdl.yml", "script.sh")
    assert crate.service.name == "word-count"
    assert crate.service.script == SCRIPT
    assert [io.path for io in crate.service.output or []] == ["word-count/out"]


def test_a_hub_folder_is_searched_for_the_slug_and_under_crates(tmp_path: Path) -> None:
    write_crate(tmp_path / "hub" / "crates" / "word-count")

    assert load_crate(tmp_path / "hub", "word-count").service.name == "word-count"
    assert load_crate(tmp_path / "hub" / "crates", "word-count").slug == "word-count"
    with pytest.raises(OscarDefinitionError, match=r"no ro-crate-metadata\.json in"):
        load_crate(tmp_path / "hub", "cowsay")


def test_the_repositorys_cowsay_service_is_a_crate_too() -> None:
    crate = load_crate(ROOT / "example_dags" / "services", "cowsay")

    assert (crate.fdl, crate.script, crate.service.name) == ("cowsay.yaml", "cowsay.sh", "cowsay")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "ro-crate-metadata.json is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ({"@graph": []}, "field '@graph' of ro-crate-metadata.json must be a non-empty list"),
        ({"@graph": [{"@id": "x"}]}, "field '@graph' has no root dataset"),
        (metadata(has_part=[]), "field 'hasPart' of the root dataset is missing or empty"),
        (metadata(has_part=[{"name": "x"}]), "field 'hasPart' entry 0 of the root dataset"),
        (metadata(has_part=[{"@id": "script.sh"}]), "names no FDL"),
        (
            metadata(has_part=[{"@id": "a.yml"}, {"@id": "b.yaml"}, {"@id": "script.sh"}]),
            r"names several FDLs \(a.yml, b.yaml\)",
        ),
        (metadata(has_part=[{"@id": "../fdl.yml"}]), "'hasPart' '../fdl.yml' leaves the crate"),
        (metadata(has_part=[{"@id": "fdl.yml"}]), "the FDL's script 'script.sh' is not in"),
        (metadata(has_part=["deploy.yml", "script.sh"]), "names the FDL 'deploy.yml', which is"),
    ],
)
def test_an_invalid_crate_fails_naming_the_field(
    tmp_path: Path, document: Any, problem: str
) -> None:
    with pytest.raises(OscarDefinitionError, match=problem) as raised:
        load_crate(write_crate(tmp_path / "bad", document))
    assert "OSCAR Hub crate" in str(raised.value)


@pytest.mark.parametrize(
    ("fdl", "problem"),
    [
        ("functions: [", "fdl.yml is not valid YAML"),
        ("functions: {}", "has no 'functions.oscar' list"),
        (FDL.replace("script: script.sh", "script: ../x.sh"), "script '../x.sh' leaves"),
        (FDL.replace("      script: script.sh\n", ""), r"functions.oscar\[0\].oscar-cluster.scr"),
        (FDL + "  - other:\n      name: two\n      image: x\n      script: script.sh\n", "2 serv"),
        (FDL.replace("name: word-count", "name: [1]"), "fdl.yml: field name"),
    ],
)
def test_an_invalid_fdl_in_a_crate_fails_naming_the_field(
    tmp_path: Path, fdl: str, problem: str
) -> None:
    with pytest.raises(OscarDefinitionError, match=problem):
        load_crate(write_crate(tmp_path / "bad", fdl=fdl))


# --- from a repository, over HTTP ---------------------------------------------------------------


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A static server laid out as raw.githubusercontent.com: ``/<owner>/<repo>/<ref>/...``;
    yields its base URL, its folder and the paths it was asked for."""
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            requested.append(self.path)

    handler = functools.partial(Handler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path, requested
    finally:
        server.shutdown()
        server.server_close()


def test_a_crate_is_fetched_from_a_repository_at_a_ref_reading_only_what_it_names(
    hub_server: tuple[str, Path, list[str]],
) -> None:
    base, folder, requested = hub_server
    write_crate(
        folder / "grycap" / "oscar-hub" / "v1.2" / "crates" / "word-count",
        files={"icon.png": "not fetched", "input.txt": "not fetched"},
    )

    crate = fetch_crate("word-count", ref="v1.2", base_url=base)

    assert crate.service.script == SCRIPT
    assert crate.source == "grycap/oscar-hub@v1.2:crates/word-count"
    assert sorted(p.rsplit("/", 1)[1].split(" ")[0] for p in requested) == [
        "fdl.yml",
        "ro-crate-metadata.json",
        "script.sh",
    ]


def test_a_missing_crate_or_file_in_a_repository_fails_naming_it(
    hub_server: tuple[str, Path, list[str]],
) -> None:
    base, folder, _ = hub_server
    crate = write_crate(folder / "me" / "hub" / "main" / "crates" / "word-count")
    (crate / "script.sh").unlink()

    with pytest.raises(OscarDefinitionError, match=r"ro-crate-metadata\.json not found"):
        fetch_crate("cowsay", repo="me/hub", base_url=base)
    with pytest.raises(OscarDefinitionError, match=r"script\.sh not found"):
        fetch_crate("word-count", repo="me/hub", base_url=base)


@pytest.mark.parametrize(
    ("slug", "repo", "problem"),
    [("../etc", "grycap/oscar-hub", "is not a folder name"), ("x", "grycap", "not 'owner/name'")],
)
def test_a_crate_name_or_repository_that_cannot_be_a_path_is_refused(
    slug: str, repo: str, problem: str
) -> None:
    with pytest.raises(OscarDefinitionError, match=problem):
        fetch_crate(slug, repo=repo, base_url="http://127.0.0.1:9")
