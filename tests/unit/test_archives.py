"""The zip bounds at their edges, and the whole of each refusal a user reads.

``test_results.py`` shows archives refused through the run-body decoding; these pin where each
bound lies (a bound moved by one is noticed) and the exact message of each refusal.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile

import pytest

from airflow_provider_oscar.archives import (
    MAX_ENTRIES,
    MAX_RATIO,
    MAX_UNPACKED_BYTES,
    RATIO_FLOOR,
    unzip,
)
from airflow_provider_oscar.errors import OscarResultError


def zipped(
    files: dict[str, bytes], method: int = zipfile.ZIP_STORED, comment: bytes = b""
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)  # (writestr refuses an empty name given as text)
            info.compress_type = method
            archive.writestr(info, data)
        archive.comment = comment
    return buffer.getvalue()


def refusal(data: bytes) -> str:
    with pytest.raises(OscarResultError) as error:
        unzip(data)
    return str(error.value)


def declaring(data: bytes, name: str, size: int) -> bytes:
    """The archive with ``name``'s size in the central directory changed to ``size``."""
    entry = data.index(b"PK\x01\x02")
    while True:
        length = struct.unpack_from("<H", data, entry + 28)[0]
        if data[entry + 46 : entry + 46 + length] == name.encode():
            return data[: entry + 24] + struct.pack("<I", size) + data[entry + 28 :]
        entry = data.index(b"PK\x01\x02", entry + 4)


def test_exactly_the_entry_limit_is_unpacked_and_one_more_is_refused() -> None:
    files = {f"f{i}": b"" for i in range(MAX_ENTRIES)}
    assert unzip(zipped(files)) == files
    assert refusal(zipped({**files, "one-more": b""})) == (
        "zip archive holds 10001 files, over the limit of 10000"
    )


def test_declared_sizes_up_to_the_unpacked_limit_pass_the_bound_and_one_byte_more_does_not() -> (
    None
):
    """A 3 MiB member keeps the ratio check out of the way; a second member declares the rest
    in the central directory (the bound reads the declared sizes)."""
    real = bytes(3 << 20)
    data = zipped({"a.bin": real, "b.bin": b"x"})
    at_limit = declaring(data, "b.bin", MAX_UNPACKED_BYTES - len(real))
    assert unzip(at_limit) == {"a.bin": real, "b.bin": b"x"}
    over = declaring(data, "b.bin", MAX_UNPACKED_BYTES - len(real) + 1)
    assert refusal(over) == (
        "zip archive unpacks to 268435457 bytes, over the 268435456-byte limit"
    )


def test_the_ratio_check_starts_at_one_mebibyte_unpacked() -> None:
    below = {"zeros.bin": bytes(RATIO_FLOOR - 1)}
    assert unzip(zipped(below, zipfile.ZIP_DEFLATED)) == below
    bomb = zipped({"zeros.bin": bytes(RATIO_FLOOR)}, zipfile.ZIP_DEFLATED)
    assert refusal(bomb) == (
        f"zip archive of {len(bomb)} bytes unpacks to 1048576 bytes, over 100 times its size "
        "(OSCAR stores output files uncompressed): refused as a zip bomb"
    )


def test_exactly_a_hundred_times_the_archive_is_unpacked_and_more_is_refused() -> None:
    unpacked = 1_100_000  # over the floor, a multiple of 100
    files = {"zeros.bin": bytes(unpacked)}
    bare = len(zipped(files, zipfile.ZIP_DEFLATED))
    padding = unpacked // MAX_RATIO - bare  # the archive's comment makes up the size
    exact = zipped(files, zipfile.ZIP_DEFLATED, comment=b"c" * padding)
    assert len(exact) * MAX_RATIO == unpacked
    assert unzip(exact) == files
    short = zipped(files, zipfile.ZIP_DEFLATED, comment=b"c" * (padding - 1))
    assert "over 100 times its size" in refusal(short)


def test_an_archive_of_folders_only_holds_no_files() -> None:
    assert refusal(zipped({"out/": b""})) == "zip archive holds no files"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "the name is empty"),
        ("/etc/passwd", "the name is an absolute path"),
        ("\\windows\\a.json", "the name is an absolute path"),
        ("d:/a.json", "the name is an absolute path"),
        ("out//a.json", "the name has an empty, '.' or '..' segment"),
    ],
)
def test_each_refused_name_is_named_with_its_problem(name: str, problem: str) -> None:
    data = zipped({"fine.json": b"{}", name: b"x"})
    assert refusal(data) == f"zip archive entry {name!r} cannot be saved: {problem}"


def test_a_file_that_is_also_a_folder_of_a_deeper_file_is_refused() -> None:
    data = zipped({"x/y": b"1", "x/y/z": b"2"})
    assert refusal(data) == "zip archive entry 'x/y' cannot be saved: it is a file and a folder"


def test_a_member_that_fails_its_check_on_reading_is_refused_with_the_cause() -> None:
    data = bytearray(zipped({"a.json": b'{"status": "ok"}', "b.json": b"{}"}))
    data[data.index(b'{"status"')] ^= 0xFF  # the stored bytes no longer match their CRC
    message = refusal(bytes(data))
    assert re.fullmatch(
        r"zip archive member cannot be read: Bad CRC-32 for file 'a\.json'", message
    )
