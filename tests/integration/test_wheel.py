"""The wheel users install: what it holds, and that Airflow discovers the provider from it.

The wheel is built with ``uv build`` into a temporary directory, then installed (``--no-deps``)
into a fresh virtual environment that borrows this environment's packages (Airflow included)
through a ``.pth`` file, so the provider found there is the wheel's and not this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_oscar"


def _uv() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = _uv()
    if uv is None:
        message = "uv is not installed (make setup installs it into .tools/bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # `make test` always has it: in CI this is a broken set-up
        pytest.skip(message)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, f"uv build failed:\n{built.stderr[-3000:]}"
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _dist_info(wheel: Path, names: list[str], file: str) -> str:
    (path,) = [n for n in names if n.endswith(f".dist-info/{file}")]
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(path).decode()


def test_wheel_holds_every_module_of_the_package_and_its_py_typed_marker(
    names: list[str],
) -> None:
    sources = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= set(names)
    assert f"{PACKAGE}/py.typed" in names


def test_wheel_holds_no_example_dags_tests_or_caches(names: list[str]) -> None:
    top_levels = {name.split("/", 1)[0] for name in names}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {PACKAGE}
    assert not [n for n in names if "example_dags" in n or "/tests/" in n or n.startswith("tests")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_declares_the_provider_entry_point_and_the_oscar_local_script(
    wheel: Path, names: list[str]
) -> None:
    entry_points = _dist_info(wheel, names, "entry_points.txt")
    assert "[apache_airflow_provider]" in entry_points
    assert (
        "provider_info = airflow_provider_oscar.get_provider_info:get_provider_info" in entry_points
    )
    assert "[console_scripts]" in entry_points
    assert "oscar-local = airflow_provider_oscar.local.cli:main" in entry_points


def test_wheel_metadata_names_the_distribution_airflow_checks_and_requires_airflow_3_1(
    wheel: Path, names: list[str]
) -> None:
    from airflow_provider_oscar.get_provider_info import get_provider_info

    metadata = Parser().parsestr(_dist_info(wheel, names, "METADATA"))
    assert metadata["Name"] == get_provider_info()["package-name"]
    requires = metadata.get_all("Requires-Dist") or []
    assert "apache-airflow>=3.1" in requires
    assert "Framework :: Apache Airflow :: Provider" in (metadata.get_all("Classifier") or [])
    assert any(url.startswith("Documentation, ") for url in metadata.get_all("Project-URL") or [])


# Runs the four ``airflow providers`` listings in one interpreter (Airflow's start-up dominates).
_LIST_PROVIDERS = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import airflow_provider_oscar
    from airflow.cli import cli_parser

    found = {"module": airflow_provider_oscar.__file__}
    for what in ("list", "hooks", "links", "triggers"):
        args = cli_parser.get_parser().parse_args(["providers", what, "--output", "json"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            args.func(args)
        text = out.getvalue()
        found[what] = json.loads(text[text.index("[") : text.rindex("]") + 1])
    print("RESULT" + json.dumps(found))
    """
)


def test_installed_wheel_appears_in_airflow_providers_list_hooks_links_and_triggers(
    wheel: Path, tmp_path: Path
) -> None:
    from airflow_provider_oscar.get_provider_info import get_provider_info

    uv = _uv()
    assert uv is not None
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This environment's packages (Airflow and the provider's dependencies) come after the
    # venv's own site-packages, which holds the wheel; this checkout is not on the path.
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    home = tmp_path / "airflow-home"
    env = {
        "PATH": str(venv / "bin") + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    result = subprocess.run(
        [str(python), "-c", _LIST_PROVIDERS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    found = json.loads(line.removeprefix("RESULT"))

    assert Path(found["module"]).is_relative_to(venv), "the provider was not the wheel's"
    assert (venv / "bin" / "oscar-local").exists()
    providers = {p["package_name"]: p for p in found["list"]}
    assert providers["airflow-provider-oscar"]["version"] == "0.1.0"
    hooks = {h["connection_type"]: h for h in found["hooks"]}
    assert hooks["oscar"]["class"] == "airflow_provider_oscar.hooks.oscar.OscarHook"
    assert hooks["oscar"]["package_name"] == "airflow-provider-oscar"
    info = get_provider_info()
    links = {link["extra_link_class_name"] for link in found["links"]}
    assert set(info["extra-links"]) <= links
    triggers = {t["class"] for t in found["triggers"] if t["package_name"] == info["package-name"]}
    assert triggers == {m for entry in info["triggers"] for m in entry["python-modules"]}
