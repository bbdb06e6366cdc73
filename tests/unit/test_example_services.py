"""The example OSCAR services, run exactly as the embedded OSCAR runs them: ``/bin/sh script``."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVICES = Path(__file__).resolve().parents[2] / "example_dags" / "services"
PLANTS = SERVICES / "plants"
PLANT_SERVICES = ("plants-sepal", "plants-petal-length", "plants-petal-width", "plants-lengths")
LITERAL_SERVICE = "plants-sepal"
SPECIES = {"Iris setosa", "Iris versicolor", "Iris virginica"}
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
SPECIMEN = (PLANTS / "specimens" / "specimen-120.json").read_bytes()
COWSAY = SERVICES / "cowsay" / "cowsay.sh"
SLEEP = SERVICES / "sleep" / "sleep.sh"


@dataclass(frozen=True)
class Run:
    """What a script run leaves: its console text and the files in ``TMP_OUTPUT_DIR``."""

    console: str
    outputs: dict[str, bytes]


def run_script(
    script: Path, data: bytes, workdir: Path, input_name: str = "event-file-0", **env: str
) -> Run:
    """Run ``script`` like OSCAR's supervisor: ``/bin/sh``, fresh dirs, its variables, exit 0."""
    input_dir, output_dir = workdir / "input", workdir / "output"
    input_dir.mkdir(parents=True)
    output_dir.mkdir()
    (input_dir / input_name).write_bytes(data)
    environment = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "INPUT_FILE_PATH": str(input_dir / input_name),
        "TMP_INPUT_DIR": str(input_dir),
        "TMP_OUTPUT_DIR": str(output_dir),
        **env,
    }
    completed = subprocess.run(
        ["/bin/sh", str(script)],
        cwd=workdir,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=True,
        timeout=60,
    )
    outputs = {path.name: path.read_bytes() for path in output_dir.iterdir()}
    return Run(completed.stdout.decode(), outputs)


def plant_script(service: str) -> Path:
    """The generated script of a plants service."""
    return PLANTS / "scripts" / f"{service}.sh"


def parse_result(service: str, text: bytes) -> dict[str, Any]:
    """A plant result as the provider must read it: Python literal for one service, else JSON."""
    if service == LITERAL_SERVICE:
        return ast.literal_eval(text.decode())
    return json.loads(text)


def classify(service: str, data: bytes, workdir: Path, **env: str) -> dict[str, Any]:
    """The result a plants service writes for the input ``data``."""
    run = run_script(plant_script(service), data, workdir, **env)
    assert list(run.outputs) == ["output_event-file-0.json"]
    return parse_result(service, run.outputs["output_event-file-0.json"])


def fdl_services(fdl: Path) -> list[dict[str, Any]]:
    """The service definitions of an FDL file, checking they target the cluster ``oscar-local``."""
    entries = yaml.safe_load(fdl.read_text())["functions"]["oscar"]
    assert all(list(entry) == ["oscar-local"] for entry in entries)
    return [entry["oscar-local"] for entry in entries]


def readme_table() -> dict[str, tuple[str, ...]]:
    """README's table of cross-validated figures: row name -> its cells."""
    rows = {}
    for line in (PLANTS / "README.md").read_text().splitlines():
        cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
        if line.startswith("| ") and len(cells) == 6:
            rows[cells[0].strip("`")] = cells
    return rows


def hits_in(cell: str) -> int:
    """Number of correct specimens in a cell such as "0.953 (143/150)"."""
    match = re.fullmatch(r"\d\.\d{3} \((\d+)/150\)", cell)
    assert match, cell
    return int(match.group(1))


def all_specimens() -> list[dict[str, Any]]:
    return json.loads((PLANTS / "specimens" / "iris.json").read_text())


@pytest.fixture(scope="module")
def fold_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every plants service's answer for every specimen sent with its fold, by service then id."""
    jobs = [(service, specimen) for service in PLANT_SERVICES for specimen in all_specimens()]

    def run(job: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        service, specimen = job
        workdir = tmp_path_factory.mktemp(f"{service}-{specimen['specimen']}")
        return classify(service, json.dumps(specimen).encode(), workdir)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    table: dict[str, dict[str, Any]] = {service: {} for service in PLANT_SERVICES}
    for (service, specimen), result in zip(jobs, results, strict=True):
        table[service][specimen["specimen"]] = result
    return table


@pytest.mark.parametrize("service", PLANT_SERVICES)
def test_plant_service_names_its_output_after_the_input_basename(
    service: str, tmp_path: Path
) -> None:
    run = run_script(plant_script(service), SPECIMEN, tmp_path, input_name="specimen-120.json")
    assert list(run.outputs) == ["output_specimen-120.json.json"]


@pytest.mark.parametrize("service", PLANT_SERVICES)
def test_plant_service_writes_strict_json_except_the_python_literal_one(
    service: str, tmp_path: Path
) -> None:
    text = run_script(plant_script(service), SPECIMEN, tmp_path).outputs["output_event-file-0.json"]
    if service == LITERAL_SERVICE:
        assert text.startswith(b"{'status': 'OK', 'labels': ['Iris ")
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    else:
        assert json.loads(text)["status"] == "OK"


@pytest.mark.parametrize("service", PLANT_SERVICES)
def test_plant_service_ranks_all_three_species_by_descending_probability(
    service: str, tmp_path: Path
) -> None:
    result = classify(service, SPECIMEN, tmp_path)
    assert list(result) == ["status", "labels", "probabilities"]
    assert result["status"] == "OK"
    assert set(result["labels"]) == SPECIES
    probabilities = result["probabilities"]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) <= 1.0 + 1e-9


@pytest.mark.parametrize(("top_k", "expected"), [("1", 1), ("2", 2), ("0", 1), ("9", 3), ("x", 3)])
def test_plant_service_honours_top_k_clamped_to_one_to_three(
    top_k: str, expected: int, tmp_path: Path
) -> None:
    result = classify("plants-petal-width", SPECIMEN, tmp_path, TOP_K=top_k)
    assert len(result["labels"]) == len(result["probabilities"]) == expected
    assert set(result["labels"]) <= SPECIES


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "input is not a JSON specimen"),
        (b"sepal 5.1 3.5", "input is not a JSON specimen"),
        (b"[5.1, 3.5, 1.4, 0.2]", "not an object of measurements"),
        (b'{"sepal_length_cm": 5.1}', "sepal_width_cm is missing"),
        (b'{"sepal_length_cm": "5.1", "sepal_width_cm": 3.5}', "sepal_length_cm is not a number"),
        (b'{"sepal_length_cm": true, "sepal_width_cm": 3.5}', "sepal_length_cm is not a number"),
        (b'{"sepal_length_cm": 5.1, "sepal_width_cm": -3.5}', "sepal_width_cm is negative"),
        (b'{"sepal_length_cm": NaN, "sepal_width_cm": 3.5}', "sepal_length_cm is not finite"),
        (b'{"sepal_length_cm": 1e999, "sepal_width_cm": 3.5}', "sepal_length_cm is not finite"),
    ],
)
def test_plant_service_reports_unusable_input_as_an_error_with_the_reason(
    data: bytes, reason: str, tmp_path: Path
) -> None:
    result = classify(LITERAL_SERVICE, data, tmp_path)
    assert result["status"] == "error"
    assert reason in result["message"]


def test_plant_service_needs_only_the_measurements_its_model_sees(tmp_path: Path) -> None:
    sepals_only = b'{"sepal_length_cm": 5.1, "sepal_width_cm": 3.5}'
    assert classify("plants-sepal", sepals_only, tmp_path / "sepal")["status"] == "OK"
    result = classify("plants-petal-width", sepals_only, tmp_path / "petal")
    assert result == {"status": "error", "message": "invalid specimen: petal_width_cm is missing"}


def test_plant_service_prints_its_result_on_the_console(tmp_path: Path) -> None:
    run = run_script(plant_script("plants-petal-length"), SPECIMEN, tmp_path)
    assert run.console.encode() == run.outputs["output_event-file-0.json"]


def test_plant_service_runs_on_a_python3_without_site_packages(tmp_path: Path) -> None:
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    shim.chmod(0o755)
    path = os.pathsep.join([str(shim.parent), "/usr/bin", "/bin"])
    result = classify("plants-petal-length", SPECIMEN, tmp_path / "run", PATH=path)
    assert result["status"] == "OK"


@pytest.mark.parametrize("service", PLANT_SERVICES)
def test_plant_service_scores_the_cross_validated_accuracy_the_readme_states(
    service: str, fold_results: dict[str, dict[str, Any]]
) -> None:
    truth = json.loads((PLANTS / "specimens" / "truth.json").read_text())
    results = fold_results[service]
    assert set(results) == set(truth) and len(truth) == 150
    hits = sum(results[name]["labels"][0] == species for name, species in truth.items())
    assert hits == hits_in(readme_table()[service][2])


def test_a_specimen_with_a_fold_is_classified_by_weights_that_never_saw_it(tmp_path: Path) -> None:
    specimen = next(s for s in all_specimens() if s["specimen"] == "specimen-120")
    without = {k: v for k, v in specimen.items() if k != "fold"}
    in_fold = classify("plants-lengths", json.dumps(specimen).encode(), tmp_path / "fold")
    trained_on_it = classify("plants-lengths", json.dumps(without).encode(), tmp_path / "all")
    assert in_fold["status"] == trained_on_it["status"] == "OK"
    assert in_fold["probabilities"] != trained_on_it["probabilities"]


@pytest.mark.parametrize("fold", [5, -1, "2", 1.0, True, None])
def test_a_fold_outside_zero_to_four_is_refused_with_the_reason(fold: Any, tmp_path: Path) -> None:
    specimen = {**json.loads(SPECIMEN), "fold": fold}
    result = classify("plants-petal-width", json.dumps(specimen).encode(), tmp_path)
    assert result["status"] == "error"
    assert "fold must be one of 0, 1, 2, 3, 4" in result["message"]
    assert repr(fold) in result["message"]


def test_training_reproduces_the_committed_files_and_readme_table(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(PLANTS / "train.py"), "--out", str(tmp_path)],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(PLANTS)
        for folder in ("specimens", "scripts")
        for p in (PLANTS / folder).iterdir()
    )
    assert generated == committed
    for path in generated:
        assert (tmp_path / path).read_bytes() == (PLANTS / path).read_bytes(), path
    readme_lines = (PLANTS / "README.md").read_text().splitlines()
    assert all(line in readme_lines for line in completed.stdout.splitlines())


def test_specimens_are_iris_csv_with_folds_stratified_by_species() -> None:
    truth = json.loads((PLANTS / "specimens" / "truth.json").read_text())
    rows = (PLANTS / "data" / "iris.csv").read_text().splitlines()[1:]
    specimens = all_specimens()
    assert [s["specimen"] for s in specimens] == [f"specimen-{n:03d}" for n in range(1, 151)]
    for specimen, line in zip(specimens, rows, strict=True):
        *measurements, label = line.split(",")
        values = dict(zip(FEATURES, map(float, measurements), strict=True))
        assert {k: v for k, v in specimen.items() if k in FEATURES} == values
        assert truth[specimen["specimen"]] == sorted(SPECIES)[int(label)]
    per_fold = Counter((s["fold"], truth[s["specimen"]]) for s in specimens)
    assert per_fold == {(f, species): 10 for f in range(5) for species in SPECIES}
    files = sorted((PLANTS / "specimens").glob("specimen-*.json"))
    assert [json.loads(f.read_text()) for f in files] == [s for s in specimens if s["fold"] == 4]


def test_plants_fdl_deploys_each_plant_script_with_its_own_buckets() -> None:
    services = fdl_services(PLANTS / "plants.yaml")
    assert [service["name"] for service in services] == list(PLANT_SERVICES)
    for service in services:
        name = service["name"]
        assert service["script"] == f"scripts/{name}.sh"
        assert service["environment"]["variables"] == {"TOP_K": "3"}
        assert service["log_level"] == "CRITICAL"
        assert service["input"] == [{"storage_provider": "minio.default", "path": f"{name}/input"}]
        assert service["output"] == [
            {"storage_provider": "minio.default", "path": f"{name}/output", "suffix": [".json"]}
        ]


@pytest.mark.parametrize(
    "fdl", [PLANTS / "plants.yaml", SERVICES / "cowsay" / "cowsay.yaml", SLEEP.with_suffix(".yaml")]
)
def test_fdl_names_are_valid_and_scripts_exist(fdl: Path) -> None:
    for service in fdl_services(fdl):
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?", service["name"])
        assert (fdl.parent / service["script"]).is_file()
        assert service["image"]


def test_cowsay_prints_the_json_message_and_writes_no_file(tmp_path: Path) -> None:
    run = run_script(COWSAY, b'{"message": "Hello from OSCAR"}', tmp_path)
    assert run.outputs == {}
    assert "< Hello from OSCAR >" in run.console
    assert "(oo)" in run.console


def test_cowsay_prints_raw_text_that_is_not_a_json_message(tmp_path: Path) -> None:
    run = run_script(COWSAY, b'{"text": "hi"}\n', tmp_path)
    assert '< {"text": "hi"} >' in run.console


def test_cowsay_sleeps_sleep_seconds_first(tmp_path: Path) -> None:
    started = time.monotonic()
    run = run_script(COWSAY, b"moo", tmp_path, SLEEP_SECONDS="0.3")
    assert time.monotonic() - started >= 0.3
    assert "< moo >" in run.console


def test_sleep_returns_its_input_named_after_the_input_file(tmp_path: Path) -> None:
    run = run_script(SLEEP, b"\x00binary\xffinput", tmp_path, SLEEP_SECONDS="0")
    assert run.outputs == {"event-file-0.out": b"\x00binary\xffinput"}


def test_sleep_waits_a_fifth_of_a_second_by_default(tmp_path: Path) -> None:
    started = time.monotonic()
    run_script(SLEEP, b"x", tmp_path)
    assert time.monotonic() - started >= 0.2
