"""The bounds on YAML documents, at their edges: size in characters and bytes, alias expansion.

The FDL and composition tests show a bomb refused as a user sees it; these pin where each bound
lies, so that a bound moved by one (or turned off) is noticed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_oscar.bounded_yaml import (
    MAX_ALIAS_VALUES,
    MAX_DOCUMENT_BYTES,
    YamlLimitError,
    compose,
    load,
    read,
)


def aliased(width: int, copies: int, blank_lines: int = 0) -> str:
    """A list of ``width`` values anchored once and aliased ``copies`` times: the aliases add
    ``copies * (width + 1)`` values (each copy is the list and its values)."""
    values = ", ".join(["leaf"] * width)
    return "\n" * blank_lines + f"[&a [{values}]" + ", *a" * copies + "]\n"


def test_aliases_adding_exactly_the_limit_are_read_and_one_list_more_is_refused() -> None:
    assert MAX_ALIAS_VALUES == 1000 * 100
    document = load(aliased(width=999, copies=100))
    assert len(document) == 101 and all(part is document[0] for part in document)
    with pytest.raises(YamlLimitError, match=r"aliases expand to over 100000 values \(line 1\)"):
        load(aliased(width=1000, copies=100))


def test_the_refusal_names_the_line_where_the_expanding_node_starts() -> None:
    with pytest.raises(YamlLimitError, match=r"\(line 3\); write the values out"):
        compose(aliased(width=1000, copies=100, blank_lines=2))


def test_many_values_written_out_count_nothing_against_the_alias_limit() -> None:
    document = load("[" + ", ".join(["1"] * (60_000)) + "]")
    assert len(document) == 60_000  # more than half the limit


def test_a_recursive_alias_is_refused_with_its_line() -> None:
    with pytest.raises(YamlLimitError, match="a recursive alias at line 2"):
        compose("top:\n  &a [1, *a]\n")


def test_a_document_of_exactly_the_size_limit_is_read() -> None:
    assert load("#" + "x" * (MAX_DOCUMENT_BYTES - 1)) is None


def test_a_document_over_the_limit_in_bytes_but_not_in_characters_is_refused() -> None:
    text = "é" * (MAX_DOCUMENT_BYTES // 2 + 1)  # two bytes a character
    assert len(text) <= MAX_DOCUMENT_BYTES
    with pytest.raises(YamlLimitError, match="the document is over 4 MiB"):
        load(text)
    with pytest.raises(YamlLimitError, match="the document is over 4 MiB"):
        compose(text)


def test_read_takes_a_file_of_exactly_the_limit_and_refuses_one_byte_more(tmp_path: Path) -> None:
    path = tmp_path / "fdl.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * 5)
    assert read(path, limit=10) == "a: 1\n#####"
    path.write_bytes(b"a: 1\n" + b"#" * 6)
    with pytest.raises(YamlLimitError, match=r"^over 10 bytes$"):
        read(path, limit=10)


def test_read_refuses_a_stream_over_the_limit_without_waiting_for_its_end(tmp_path: Path) -> None:
    """A pipe that holds more than the limit and stays open: reading it whole would wait."""
    pipe = tmp_path / "fdl.yaml"
    os.mkfifo(pipe)
    release = threading.Event()

    def writer() -> None:
        with pipe.open("wb") as stream:
            stream.write(b"#" * ((1 << 20) + 10))
            stream.flush()
            release.wait(30)  # the end comes only when the test says so

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(YamlLimitError, match=r"^over 1 MiB$"):
            read(pipe, limit=1 << 20)
        assert time.monotonic() - started < 20
    finally:
        release.set()
        thread.join()


def test_a_limit_of_whole_mebibytes_is_named_in_them(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * ((2 << 20) + 1))
    with pytest.raises(YamlLimitError, match=r"^over 2 MiB$"):
        read(path, limit=2 << 20)


def test_read_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        read(path)
