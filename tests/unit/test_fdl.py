"""FDL loading and the service model (``airflow_provider_oscar.fdl``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_oscar.errors import OscarDefinitionError
from airflow_provider_oscar.fdl import (
    Service,
    check_service_name,
    load_fdl,
    parse_cpu,
    parse_memory,
    parse_service,
)

FDL = """\
functions:
  oscar:
  - local:
      name: grayify
      image: grycap/imagemagick
      cpu: 1
      memory: 1Gi
      script: scripts/grayify.sh
      input:
      - storage_provider: minio.default
        path: grayify/in
      output:
      - storage_provider: minio.default
        path: grayify/out
  - remote:
      name: classify
      image: ai4oshub/plants-classification
      script: classify.sh
      storage_providers:
        minio:
          default:
            endpoint: http://own-minio:9000
storage_providers:
  minio:
    shared:
      endpoint: http://shared-minio:9000
      access_key: ak
      secret_key: sk
      region: us-east-1
clusters:
  remote:
    endpoint: https://remote.example
    auth_user: oscar
    auth_password: pw
    ssl_verify: true
"""


@pytest.fixture
def fdl(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "grayify.sh").write_text("convert in out\n")
    (tmp_path / "classify.sh").write_text("deepaas-cli predict\n")
    path = tmp_path / "workflow.yaml"
    path.write_text(FDL)
    return path


# loading ---------------------------------------------------------------------------------


def test_script_path_is_resolved_next_to_the_fdl_and_replaced_by_its_content(
    fdl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    grayify, classify = load_fdl(fdl)
    assert grayify.script == "convert in out\n"
    assert classify.script == "deepaas-cli predict\n"


def test_cluster_key_becomes_the_cluster_id(fdl: Path) -> None:
    assert [s.cluster_id for s in load_fdl(fdl)] == ["local", "remote"]


def test_cluster_id_filter_keeps_only_that_clusters_services(fdl: Path) -> None:
    assert [s.name for s in load_fdl(fdl, cluster_id="remote")] == ["classify"]


def test_cluster_id_with_no_service_is_an_error(fdl: Path) -> None:
    with pytest.raises(OscarDefinitionError, match="no service for cluster 'elsewhere'"):
        load_fdl(fdl, cluster_id="elsewhere")


def test_top_level_storage_providers_are_merged_into_every_service(fdl: Path) -> None:
    grayify, classify = load_fdl(fdl)
    assert grayify.storage_providers["minio"]["shared"]["endpoint"] == "http://shared-minio:9000"
    assert set(classify.storage_providers["minio"]) == {"shared", "default"}


def test_a_services_own_storage_provider_wins_over_the_shared_one(tmp_path: Path) -> None:
    document = {
        "functions": {
            "oscar": [
                {
                    "c": {
                        "name": "s",
                        "image": "i",
                        "script": "echo\n",
                        "storage_providers": {"minio": {"shared": {"endpoint": "mine"}}},
                    }
                }
            ]
        },
        "storage_providers": {"minio": {"shared": {"endpoint": "theirs"}}},
    }
    (service,) = load_fdl(document)
    assert service.storage_providers["minio"]["shared"]["endpoint"] == "mine"


def test_top_level_clusters_are_merged_into_every_service(fdl: Path) -> None:
    for service in load_fdl(fdl):
        assert service.clusters is not None
        assert service.clusters["remote"]["endpoint"] == "https://remote.example"


def test_numeric_cpu_becomes_a_string(fdl: Path) -> None:
    grayify, _ = load_fdl(fdl)
    assert (grayify.cpu, grayify.memory) == ("1", "1Gi")


def test_missing_cpu_takes_the_default_instead_of_failing(fdl: Path) -> None:
    _, classify = load_fdl(fdl)
    assert classify.cpu == "0.2"


def test_yaml_text_loads_like_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = "functions:\n  oscar:\n  - c:\n      name: s\n      image: i\n      script: |\n"
    text += "        echo inline\n"
    (service,) = load_fdl(text)
    assert service.script == "echo inline\n"


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("functions:\n  oscar:\n  - c: {name: [unclosed\n")
    with pytest.raises(OscarDefinitionError, match=r"not valid YAML at line \d+, column \d+"):
        load_fdl(path)


def test_missing_fdl_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OscarDefinitionError, match="does not exist"):
        load_fdl(tmp_path / "absent.yaml")


def test_missing_script_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "f.yml"
    path.write_text(
        "functions:\n  oscar:\n  - c:\n      name: s\n      image: i\n      script: x.sh\n"
    )
    with pytest.raises(OscarDefinitionError, match=r"script file 'x\.sh' not found"):
        load_fdl(path)


def test_service_without_script_is_an_error() -> None:
    with pytest.raises(OscarDefinitionError, match="'script' is required"):
        load_fdl({"functions": {"oscar": [{"c": {"name": "s", "image": "i"}}]}})


@pytest.mark.parametrize("document", ["- a\n- b\n", "just text\n"])
def test_fdl_that_is_not_a_mapping_is_an_error(document: str) -> None:
    with pytest.raises(OscarDefinitionError, match="must be a mapping"):
        load_fdl(document)


def test_fdl_without_functions_oscar_is_an_error() -> None:
    with pytest.raises(OscarDefinitionError, match=r"no 'functions\.oscar' list"):
        load_fdl({"functions": {"aws": []}})


def test_entry_mapping_two_clusters_is_an_error() -> None:
    entry = {"a": {"name": "s"}, "b": {"name": "t"}}
    with pytest.raises(OscarDefinitionError, match=r"functions.oscar\[0\] must map one cluster"):
        load_fdl({"functions": {"oscar": [entry]}})


def test_service_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(OscarDefinitionError, match=r"functions.oscar\[0\].c must be a mapping"):
        load_fdl({"functions": {"oscar": [{"c": "grayify"}]}})


# the service model -----------------------------------------------------------------------


def test_keys_match_case_insensitively() -> None:
    service = parse_service(
        {
            "NAME": "s",
            "Image": "i",
            "Script": "echo",
            "Environment": {"Variables": {"A": "1"}, "SECRETS": {"K": "v"}},
            "Input": [{"Storage_Provider": "minio", "PATH": "b/in"}],
        }
    )
    assert (service.name, service.image) == ("s", "i")
    assert service.environment.variables == {"A": "1"}
    assert service.environment.secrets == {"K": "v"}
    assert service.input is not None and service.input[0].path == "b/in"


def test_exact_key_wins_over_a_differently_cased_duplicate() -> None:
    assert parse_service({"Name": "upper", "name": "lower"}).name == "lower"


def test_unknown_keys_are_kept_and_sent_back() -> None:
    service = parse_service({"name": "s", "volume": {"size": "1Gi", "mount_path": "/data"}})
    assert service.to_api()["volume"] == {"size": "1Gi", "mount_path": "/data"}


def test_variables_are_stringified() -> None:
    service = parse_service({"environment": {"variables": {"N": 5, "F": 0.5, "E": None}}})
    assert service.environment.variables == {"N": "5", "F": "0.5", "E": ""}


def test_log_level_is_upper_cased_and_unknown_levels_become_info() -> None:
    assert parse_service({"log_level": "debug"}).log_level == "DEBUG"
    assert parse_service({"log_level": "loud"}).log_level == "INFO"


def test_a_definition_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(OscarDefinitionError, match="must be a mapping, not list"):
        parse_service(["name", "s"])


def test_a_field_of_the_wrong_type_names_the_field() -> None:
    with pytest.raises(OscarDefinitionError, match=r"field synchronous\.max_scale"):
        parse_service({"synchronous": {"max_scale": "many"}})


def test_to_api_keeps_go_field_order_and_drops_empty_optionals() -> None:
    keys = list(Service(name="s").to_api())
    assert keys[:4] == ["name", "cluster_id", "memory", "cpu"]
    assert keys.index("token") < keys.index("input") < keys.index("script")
    assert keys[-1] == "mount"
    assert not {"image_pull_secrets", "clusters", "namespace"} & set(keys)


def test_storage_io_splits_provider_bucket_and_folder() -> None:
    (io,) = parse_service({"output": [{"storage_provider": "minio", "path": "b/f/g"}]}).output or []
    assert (io.provider_type, io.provider_id, io.bucket, io.folder) == (
        "minio",
        "default",
        "b",
        "f/g",
    )


def test_output_filters_need_both_prefix_and_suffix_to_match() -> None:
    (io,) = (
        parse_service(
            {
                "output": [
                    {"storage_provider": "minio", "path": "b/o", "prefix": ["a"], "suffix": [".j"]}
                ]
            }
        ).output
        or []
    )
    assert [io.accepts(n) for n in ("a.j", "a.t", "b.j")] == [True, False, False]


# quantities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores"), [("500m", 0.5), ("1", 1.0), ("0.2", 0.2), ("2.5", 2.5), ("100m", 0.1)]
)
def test_cpu_quantities_parse_to_cores(text: str, cores: float) -> None:
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2Gi", 2 * 2**30),
        ("256Mi", 256 * 2**20),
        ("512Ki", 512 * 2**10),
        ("1G", 10**9),
        ("1000", 1000),
        ("1.5Gi", 3 * 2**29),
    ],
)
def test_memory_quantities_parse_to_bytes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "", "1.2.3", "m", "-1", "nan", "inf", "-500m"])
def test_bad_cpu_quantities_are_errors(text: str) -> None:
    with pytest.raises(OscarDefinitionError, match="not a CPU quantity"):
        parse_cpu(text)


@pytest.mark.parametrize("text", ["2GB", "Gi", "-1Mi", "one"])
def test_bad_memory_quantities_are_errors(text: str) -> None:
    with pytest.raises(OscarDefinitionError, match="not a memory quantity"):
        parse_memory(text)


def test_service_exposes_its_limits_as_numbers() -> None:
    service = parse_service({"cpu": "250m", "memory": "2Gi"})
    assert (service.cpu_cores, service.memory_bytes) == (0.25, 2 * 2**30)


# names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "plants-classification", "x" * 39, "a1-b2", "9lives"])
def test_valid_service_names_pass(name: str) -> None:
    check_service_name(name)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("x" * 40, "has 40 characters; at most 39"),
        ("Plants", "lower case alphanumeric"),
        ("plants_classification", "lower case alphanumeric"),
        ("plants.classification", "lower case alphanumeric"),
        ("-plants", "start and end with an alphanumeric"),
        ("plants-", "start and end with an alphanumeric"),
        ("pl ants", "lower case alphanumeric"),
        ("plants\n", "lower case alphanumeric"),
    ],
)
def test_invalid_service_names_name_the_broken_rule(name: str, rule: str) -> None:
    with pytest.raises(OscarDefinitionError, match=rule):
        check_service_name(name)


# hostile FDL files -------------------------------------------------------------------------


def alias_bomb(levels: int, width: int = 10) -> str:
    """YAML whose last anchor stands for ``width ** levels`` values ("billion laughs")."""
    lines = ["x0: &x0 [lol]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*x{level - 1}"] * width)
        lines.append(f"x{level}: &x{level} [{refs}]")
    return "\n".join(lines) + "\n"


def fdl_with(extra: str, script: str = "echo hi") -> str:
    return (
        f"{extra}functions:\n  oscar:\n  - local:\n      name: svc\n      image: img\n"
        f"      script: {script}\n"
    )


def test_an_alias_bomb_is_refused_before_anything_expands_it() -> None:
    # Six levels: a million values once expanded (by the API body, an XCom, a log line).
    with pytest.raises(OscarDefinitionError, match="aliases expand to over 100000 values"):
        load_fdl(fdl_with(alias_bomb(6)))


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(OscarDefinitionError, match="recursive alias at line 1"):
        load_fdl(fdl_with("loop: &loop [*loop]\n"))


def test_reused_blocks_and_merge_keys_stay_accepted() -> None:
    text = (
        "defaults: &defaults {image: img, cpu: '0.5', memory: 1Gi, script: \"echo hi\\n\"}\n"
        "functions:\n  oscar:\n"
        + "".join(f"  - c{i}:\n      <<: *defaults\n      name: svc-{i}\n" for i in range(50))
    )
    services = load_fdl(text)
    assert [s.name for s in services] == [f"svc-{i}" for i in range(50)]
    assert {s.memory for s in services} == {"1Gi"}


def test_an_fdl_over_4_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(fdl_with(f"padding: {'x' * (4 << 20)}\n"))
    with pytest.raises(OscarDefinitionError, match=r"FDL file .*big\.yaml.* over 4 MiB"):
        load_fdl(path)
    with pytest.raises(OscarDefinitionError, match="over 4 MiB"):
        load_fdl(path.read_text())


@pytest.mark.parametrize("script", ["/etc/passwd", "../outside.sh", "scripts/../../outside.sh"])
def test_a_script_outside_the_fdls_folder_is_refused(tmp_path: Path, script: str) -> None:
    folder = tmp_path / "project"
    (folder / "scripts").mkdir(parents=True)
    (tmp_path / "outside.sh").write_text("cat ~/.ssh/id_rsa\n")
    path = folder / "fdl.yaml"
    path.write_text(fdl_with("", script))
    with pytest.raises(OscarDefinitionError, match="outside the FDL's folder") as caught:
        load_fdl(path)
    assert repr(script) in str(caught.value) and "no absolute path, no '..'" in str(caught.value)


def test_a_script_linked_from_outside_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (tmp_path / "secret.sh").write_text("cat ~/.ssh/id_rsa\n")
    (folder / "run.sh").symlink_to(tmp_path / "secret.sh")
    (folder / "fdl.yaml").write_text(fdl_with("", "run.sh"))
    with pytest.raises(OscarDefinitionError, match="outside the FDL's folder"):
        load_fdl(folder / "fdl.yaml")


def test_a_script_in_a_subfolder_even_through_dot_dot_inside_is_read(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_text("echo in\n")
    (tmp_path / "fdl.yaml").write_text(fdl_with("", "scripts/../scripts/run.sh"))
    (service,) = load_fdl(tmp_path / "fdl.yaml")
    assert service.script == "echo in\n"
