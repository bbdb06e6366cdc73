"""Fuzzing: the result decoders and the FDL/YAML loaders raise only their documented errors.

Whatever bytes a cluster answers with and whatever a user writes into an FDL file, the provider
must fail with one of its own exceptions (``OscarResultError`` for outputs, ``OscarModelError``
only from ``raise_for_status``, ``OscarDefinitionError`` for definitions) whose message says
something, never with a ``KeyError``, ``AttributeError``, ``RecursionError`` or ``OSError`` from
deep inside. Inputs are drawn from realistic shapes (the documents, zips and FDL files the
provider meets) mutated and mixed with arbitrary text and bytes.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_oscar.compositions import Composition, CompositionError, load_composition
from airflow_provider_oscar.errors import (
    OscarDefinitionError,
    OscarError,
    OscarModelError,
    OscarResultError,
)
from airflow_provider_oscar.fdl import (
    Service,
    load_fdl,
    parse_cpu,
    parse_memory,
    parse_service,
)
from airflow_provider_oscar.results import (
    Prediction,
    decode_prediction,
    decode_predictions,
    decode_run_body,
    normalise_prediction,
    parse_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
PLANTS_FDL = (EXAMPLES / "services" / "plants" / "plants.yaml").read_text()
PLANT_COMPOSITION = (EXAMPLES / "compositions" / "plant_ensemble.yaml").read_text()
MESSAGE_LIMIT = 4000  # an error message a person can read in a task log
# OSCAR_FUZZ_EXAMPLES=5000 for a deeper search than the suite's.
FUZZ = settings(
    max_examples=int(os.environ.get("OSCAR_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_clear(error: OscarError) -> None:
    """A documented error with a message: not empty, and short enough to read."""
    message = str(error)
    assert message.strip(), f"{type(error).__name__} without a message"
    assert len(message) <= MESSAGE_LIMIT, f"a {len(message)}-character message"


# building blocks -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet="\x00\n\t'\"{}[]:#&*!|>%@`\\ \u2028\ufeff", max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutations(text: str) -> st.SearchStrategy[str]:
    """``text`` cut short, with a slice removed, or with something inserted."""
    positions = st.integers(0, len(text))
    return st.one_of(
        positions.map(lambda i: text[:i]),
        st.tuples(positions, positions).map(lambda ij: text[: min(ij)] + text[max(ij) :]),
        st.tuples(positions, st.text(max_size=12)).map(
            lambda pi: text[: pi[0]] + pi[1] + text[pi[0] :]
        ),
    )


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# result decoders -------------------------------------------------------------------------

PREDICTION_KEYS = [
    "status",
    "labels",
    "probabilities",
    "predictions",
    "message",
    "label",
    "probability",
    "source",
]
documents = st.dictionaries(
    st.sampled_from(PREDICTION_KEYS) | st.text(max_size=6),
    st.sampled_from(["OK", "ok", "error", "Error"]) | values,
    max_size=5,
)
good = json.dumps(
    {"status": "OK", "labels": ["Iris setosa", "Iris virginica"], "probabilities": [0.9, 0.1]}
)
texts = st.one_of(
    st.text(),
    _mutations(good),
    _mutations(repr(json.loads(good))),
    documents.map(json.dumps),
    documents.map(repr),
    st.tuples(st.text(max_size=40), documents.map(json.dumps)).map("\n".join),
    st.integers(1, 1000).map(lambda depth: "{'a': " * depth + "1" + "}" * depth),
    st.integers(1, 1000).map(lambda depth: '{"a": [' * depth),
)
bodies = st.one_of(
    texts,
    st.binary(),
    texts.map(str.encode),
    texts.map(lambda text: base64.b64encode(text.encode())),
    st.binary().map(base64.b64encode),
    st.binary().map(lambda data: base64.b64encode(b"PK\x03\x04" + data)),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z._-]{0,7}", fullmatch=True),
        texts.map(str.encode) | st.binary(),
        max_size=3,
    )
    .map(_zip)
    .flatmap(lambda archive: _mutations_bytes(archive)),
    st.tuples(st.sampled_from(["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL"]), texts).map(
        lambda lt: f"2026-01-01 10:00:00,123 - supervisor - {lt[0]} - Creating response\n{lt[1]}"
    ),
)


def _mutations_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    positions = st.integers(0, len(data))
    return st.one_of(
        st.just(data),
        st.just(base64.b64encode(data)),
        positions.map(lambda i: base64.b64encode(data[:i])),
        st.tuples(positions, st.binary(min_size=1, max_size=4)).map(
            lambda pb: base64.b64encode(data[: pb[0]] + pb[1] + data[pb[0] + len(pb[1]) :])
        ),
    )


@FUZZ
@given(body=bodies)
def test_run_body_decoding_raises_only_result_errors_with_a_message(body: bytes | str) -> None:
    try:
        output = decode_run_body(body)
    except OscarResultError as error:
        assert_clear(error)
        return
    assert (output.text is None) != (output.data is None)


@FUZZ
@given(data=bodies)
def test_document_parsing_gives_a_dict_or_a_result_error_with_a_message(data: bytes | str) -> None:
    try:
        document = parse_document(data)
    except OscarResultError as error:
        assert_clear(error)
        return
    assert isinstance(document, dict) and all(isinstance(k, str) for k in document)


@FUZZ
@given(body=bodies, source=st.none() | st.text(max_size=20))
def test_prediction_decoding_raises_result_errors_and_model_errors_only_on_demand(
    body: bytes | str, source: str | None
) -> None:
    try:
        prediction = decode_prediction(body, source=source)
    except OscarResultError as error:
        assert_clear(error)
        return
    assert isinstance(prediction, Prediction)
    if prediction.ok:
        assert prediction.raise_for_status() is prediction
        assert all(0 <= p <= 1 + 1e-6 for p in prediction.probabilities)
    else:
        with pytest.raises(OscarModelError) as raised:
            prediction.raise_for_status()
        assert_clear(raised.value)


@FUZZ
@given(files=st.dictionaries(st.text(max_size=12), bodies, max_size=4))
def test_several_files_decode_or_fail_naming_the_file(files: dict[str, bytes | str]) -> None:
    try:
        predictions = decode_predictions(files)
    except OscarResultError as error:
        assert_clear(error)
        assert any(str(error).startswith(f"{name}: ") for name in files)
        return
    assert set(predictions) == set(files)
    assert all(predictions[name].source == name for name in files)


@FUZZ
@given(document=documents | values)
def test_normalising_any_document_raises_only_result_errors(document: Any) -> None:
    try:
        normalise_prediction(document)
    except OscarResultError as error:
        assert_clear(error)


@FUZZ
@given(data=documents | values)
def test_rebuilding_a_prediction_from_any_xcom_value_raises_only_result_errors(data: Any) -> None:
    try:
        prediction = Prediction.from_dict(data)
    except OscarResultError as error:
        assert_clear(error)
        return
    assert Prediction.from_dict(prediction.to_dict()) == prediction


# FDL and service definitions -------------------------------------------------------------

SERVICE_FIELDS = [*Service.model_fields, "Variables", "Script", "NAME", "environment"]
service_definitions = st.dictionaries(
    st.sampled_from(SERVICE_FIELDS) | st.text(max_size=8),
    values
    | st.text(max_size=40).map(lambda text: f"#!/bin/sh\n{text}")
    | st.fixed_dictionaries(
        {},
        optional={
            "variables": values,
            "Variables": values,
            "secrets": values,
            "storage_provider": values,
            "path": values,
        },
    )
    | st.lists(
        st.fixed_dictionaries({}, optional={"storage_provider": values, "path": values}),
        max_size=2,
    ),
    max_size=8,
)
fdl_documents = st.fixed_dictionaries(
    {
        "functions": values
        | st.fixed_dictionaries(
            {},
            optional={
                "oscar": values
                | st.lists(
                    values
                    | st.dictionaries(
                        st.text(max_size=6), service_definitions | values, max_size=2
                    ),
                    max_size=3,
                )
            },
        )
    },
    optional={"storage_providers": values, "clusters": values},
)
fdl_texts = st.one_of(
    st.text(),
    _mutations(PLANTS_FDL),
    fdl_documents.map(lambda document: yaml.safe_dump(document, allow_unicode=True)),
    st.integers(1, 1000).map(lambda depth: "[" * depth),
    st.integers(1, 1000).map(lambda depth: "a: {" * depth),
    st.just("&a [*a, *a]"),
    st.just("a: !!python/object/apply:os.system ['true']"),
    st.text(max_size=300).map(lambda name: f"{name}.yaml"),
)


@pytest.fixture(autouse=True)
def _in_an_empty_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Script paths in fuzzed FDL text resolve against an empty working directory."""
    monkeypatch.chdir(tmp_path_factory.mktemp("fdl"))


@FUZZ
@given(text=fdl_texts, cluster=st.none() | st.sampled_from(["oscar-local", "other"]))
# What fuzzing found (each raised something else before the fix):
@example(text="functions: [1, 2]", cluster=None)  # AttributeError
@example(text='functions: {oscar: [{c: {script: "a\\n"}}]}\nclusters: [1]', cluster=None)
@example(
    text='functions: {oscar: [{c: {script: "a\\n", storage_providers: 5}}]}\n'
    "storage_providers: {minio: {}}",
    cluster=None,
)  # AttributeError
@example(text="functions: {oscar: [{c: {script: " + "x" * 300 + "}}]}", cluster=None)  # OSError
@example(text="x" * 300 + ".yaml", cluster=None)  # OSError: file name too long
@example(text="[" * 1000, cluster=None)  # RecursionError
def test_fdl_text_loads_or_raises_a_definition_error_with_a_message(
    text: str, cluster: str | None
) -> None:
    try:
        services = load_fdl(text, cluster)
    except OscarDefinitionError as error:
        assert_clear(error)
        return
    assert services and all(isinstance(s, Service) for s in services)


@FUZZ
@given(document=fdl_documents, cluster=st.none() | st.text(max_size=6))
def test_fdl_mapping_loads_or_raises_a_definition_error_with_a_message(
    document: dict[str, Any], cluster: str | None
) -> None:
    try:
        services = load_fdl(document, cluster)
    except OscarDefinitionError as error:
        assert_clear(error)
        return
    assert services and all(isinstance(s, Service) for s in services)


@FUZZ
@given(definition=service_definitions | values)
def test_service_definition_parses_or_raises_a_definition_error_with_a_message(
    definition: Any,
) -> None:
    try:
        service = parse_service(definition)
    except OscarDefinitionError as error:
        assert_clear(error)
        return
    assert isinstance(service, Service)
    json.dumps(service.to_api(), allow_nan=False)  # what the hook sends must be valid JSON


@FUZZ
@given(quantity=st.text(max_size=20) | st.floats().map(str) | st.integers().map(str))
def test_cpu_and_memory_quantities_parse_or_raise_definition_errors(quantity: str) -> None:
    for parse in (parse_cpu, parse_memory):
        try:
            value = parse(quantity)
        except OscarDefinitionError as error:
            assert_clear(error)
        else:
            assert math.isfinite(value) and value >= 0


# compositions ----------------------------------------------------------------------------

COMPOSITION_FIELDS = [*Composition.model_fields, "connection", "fdl", "glob", "method"]
composition_texts = st.one_of(
    st.text(),
    _mutations(PLANT_COMPOSITION),
    st.dictionaries(
        st.sampled_from(COMPOSITION_FIELDS) | st.text(max_size=8), values, max_size=6
    ).map(lambda document: yaml.safe_dump(document, allow_unicode=True)),
    st.sampled_from(["dag_id", "start_date", "schedule", "services", "x"]).flatmap(
        lambda field: st.sampled_from(
            [
                "!foo x",
                '!!binary "###"',
                "!!timestamp 2026-13-45",
                "&a [*a]",
                "!!set {a, b}",
                "!!python/name:os.system ''",
                "[" * 1000,
                "{a: 1, a: 2}",
            ]
        ).map(lambda value: f"{field}: {value}\n")
    ),
)


@FUZZ
@given(text=composition_texts | st.binary().map(lambda data: data.decode("latin-1")))
# What fuzzing found (each raised something else before the fix):
@example(text="dag_id: !foo x\n")  # yaml ConstructorError
@example(text="start_date: !!timestamp 2026-13-45\n")  # ValueError
@example(text="services: " + "[" * 1000 + "\n")  # RecursionError
def test_composition_file_loads_or_raises_a_composition_error_with_a_message(text: str) -> None:
    path = Path("composition.yaml")
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    try:
        composition = load_composition(path)
    except CompositionError as error:
        assert isinstance(error, OscarDefinitionError)
        assert error.issues
        assert_clear(error)
        return
    assert isinstance(composition, Composition)


def test_a_composition_file_that_is_not_utf8_is_a_composition_error() -> None:
    path = Path("composition.yaml")
    path.write_bytes(b"dag_id: \xff\xfe\n")
    with pytest.raises(CompositionError, match="cannot be read"):
        load_composition(path)
