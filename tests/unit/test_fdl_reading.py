"""FDL reading: where files and scripts are looked up, how shared sections merge, and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_oscar.errors import OscarDefinitionError
from airflow_provider_oscar.fdl import (
    StorageIO,
    check_service_name,
    job_prefix,
    load_fdl,
    parse_cpu,
)

SERVICE = {"name": "plants", "image": "ai4oshub/plants", "script": "echo hi\n"}


def error(source: object, **kwargs: object) -> str:
    with pytest.raises(OscarDefinitionError) as caught:
        load_fdl(source, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def fdl(*services: dict[str, object], cluster: str = "c1", **top: object) -> dict[str, object]:
    return {"functions": {"oscar": [{cluster: dict(s)} for s in services]}, **top}


@pytest.mark.parametrize(("length", "prefix"), [(24, 24), (25, 16), (26, 16)])
def test_job_names_are_cut_to_16_characters_from_25_on(length: int, prefix: int) -> None:
    assert job_prefix("a" * length) == "a" * prefix


def test_a_bad_service_name_is_refused_with_the_rule() -> None:
    with pytest.raises(OscarDefinitionError) as caught:
        check_service_name("Plants")
    assert str(caught.value) == (
        "service name 'Plants' must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character"
    )


def test_zero_cpu_is_a_quantity() -> None:
    assert parse_cpu("0") == 0.0


def test_storage_entries_send_their_prefix_filter() -> None:
    entry = StorageIO(storage_provider="minio", path="b/in", prefix=["img-"])
    assert entry.to_api() == {"storage_provider": "minio", "path": "b/in", "prefix": ["img-"]}


# --- sources ---------------------------------------------------------------------------------


def test_an_fdl_given_as_a_text_path_is_read_with_its_scripts(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("echo from file\n")
    path = tmp_path / "services.JSON"
    path.write_text('{"functions": {"oscar": [{"c1": {"name": "plants", "script": "run.sh"}}]}}')
    (service,) = load_fdl(str(path))
    assert service.script == "echo from file\n"


def test_a_missing_fdl_file_is_named() -> None:
    assert error("absent/services.yaml") == "FDL file 'absent/services.yaml' does not exist"


def test_a_file_name_the_os_cannot_look_up_does_not_exist() -> None:
    assert error("bad\x00name.yaml") == "FDL file 'bad\\x00name.yaml' does not exist"


@pytest.mark.parametrize(("length", "shown"), [(200, 200), (201, 200), (300, 200)])
def test_long_file_names_are_cut_at_200_characters_in_messages(length: int, shown: int) -> None:
    name = "f" * (length - 5) + ".yaml"
    cut = name[:shown] + ("..." if length > shown else "")
    assert error(name) == f"FDL file {cut!r} does not exist"


def test_one_line_text_of_4096_characters_is_yaml_not_a_path() -> None:
    text = "x" * 4091 + ".yaml"
    assert error(text) == "FDL must be a mapping with a 'functions' key"
    assert error(text[1:]).startswith("FDL file ")


def test_yaml_text_ending_like_a_file_name_is_still_text() -> None:
    assert (
        error("name: plants\nscript: run.yaml") == "FDL has no 'functions.oscar' list of services"
    )


def test_a_dict_source_reads_script_files_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run.sh").write_text("echo here\n")
    monkeypatch.chdir(tmp_path)
    (service,) = load_fdl(fdl({**SERVICE, "script": "run.sh"}))
    assert service.script == "echo here\n"


# --- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("listed", [None, [], {"c1": SERVICE}])
def test_an_fdl_without_the_services_list_is_refused(listed: object) -> None:
    refused = error({"functions": {"oscar": listed}})
    assert refused == "FDL has no 'functions.oscar' list of services"


def test_yaml_errors_give_the_line_and_column() -> None:
    message = error("functions:\n  oscar: [a\n  b: c\n")
    assert " at line 3, column 4: " in message


def test_yaml_errors_without_a_position_give_the_readers_words_alone() -> None:
    message = error("functions:\n  oscar: [\x07]\n")  # the reader's error has no problem mark
    assert message.startswith("FDL is not valid YAML: unacceptable character #x0007")


def test_an_fdl_nested_deeper_than_the_parser_recurses_is_refused_by_name() -> None:
    assert error("a: " + "[" * 3000 + "]" * 3000) == "FDL is nested too deeply to be read"


def test_a_shared_cluster_that_is_no_mapping_is_named_by_its_field() -> None:
    document = fdl(SERVICE, clusters={"c2": "https://c2"})
    assert error(document) == "field clusters.c2: Input should be a valid dictionary"


@pytest.mark.parametrize("section", ["storage_providers", "clusters"])
def test_a_shared_section_that_is_no_mapping_is_named(section: str) -> None:
    assert error(fdl(SERVICE, **{section: ["x"]})) == f"{section} must be a mapping, not list"


def test_a_services_own_clusters_that_are_no_mapping_are_named() -> None:
    document = fdl({**SERVICE, "clusters": "c2"}, clusters={"c2": {"endpoint": "https://c2"}})
    assert error(document) == "functions.oscar[0].c1.clusters must be a mapping, not str"


def test_a_services_own_storage_that_is_no_mapping_is_named() -> None:
    document = fdl({**SERVICE, "storage_providers": 3}, storage_providers={"s3": {}})
    assert error(document) == "functions.oscar[0].c1.storage_providers must be a mapping, not int"


def test_a_script_that_is_no_text_is_refused_with_the_services_index() -> None:
    assert error(fdl(SERVICE, {**SERVICE, "script": 42})) == (
        "functions.oscar[1]: 'script' is required"
    )


def test_a_script_outside_the_folder_is_refused_naming_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("functions:\n  oscar:\n  - c1:\n      name: plants\n      script: ../run.sh\n")
    assert error(path) == (
        f"functions.oscar[0]: script file '../run.sh' is outside the FDL's folder "
        f"{str(tmp_path)!r}: script paths are relative to it and stay inside it "
        "(no absolute path, no '..' out of it)"
    )


def test_a_script_name_the_os_refuses_is_not_inside_the_folder() -> None:
    message = error(fdl({**SERVICE, "script": "run\x00.sh"}))
    assert message.startswith("functions.oscar[0]: script file 'run\\x00.sh' is outside the FDL's")


def test_a_script_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_bytes(b"\xff\xfe not utf-8")
    path = tmp_path / "services.yaml"
    path.write_text("functions:\n  oscar:\n  - c1:\n      name: plants\n      script: run.sh\n")
    assert error(path).startswith(
        f"functions.oscar[0]: script file {str(tmp_path / 'run.sh')!r} cannot be read: "
    )


# --- merging ---------------------------------------------------------------------------------


def test_the_cluster_key_names_the_cluster_even_over_a_cluster_id_field() -> None:
    (service,) = load_fdl(fdl({**SERVICE, "cluster_id": "other"}))
    assert service.cluster_id == "c1"


def test_shared_and_own_clusters_are_merged() -> None:
    shared = {"c2": {"endpoint": "https://c2.example.org", "auth_user": "a"}}
    own = {"c2": {"auth_user": "b"}, "c3": {"endpoint": "https://c3.example.org"}}
    (service,) = load_fdl(fdl({**SERVICE, "clusters": own}, clusters=shared))
    assert service.clusters == {
        "c2": {"endpoint": "https://c2.example.org", "auth_user": "b"},
        "c3": {"endpoint": "https://c3.example.org"},
    }


def test_a_services_own_storage_provider_type_joins_the_shared_ones() -> None:
    shared = {"s3": {"aws": {"region": "eu-west-1"}}}
    own = {"minio": {"local": {"endpoint": "http://minio:9000"}}}
    (service,) = load_fdl(fdl({**SERVICE, "storage_providers": own}, storage_providers=shared))
    assert service.storage_providers == {**shared, **own}


def test_an_unknown_field_yaml_reads_as_a_date_is_sent_back_as_json_text() -> None:
    text = "functions:\n  oscar:\n  - c1:\n      name: plants\n      script: 'echo\n\n        hi'\n"
    (service,) = load_fdl(text + "      created: 2024-05-01\n")
    assert service.to_api()["created"] == "2024-05-01"
