"""Thumbnails for the results page: a photograph's EXIF thumbnail, or a small picture itself."""

from __future__ import annotations

import struct

import pytest

from airflow_provider_oscar.pictures import exif_thumbnail, is_picture, thumbnail
from tests.helpers import png

SMALL_JPEG = b"\xff\xd8\xff\xdb" + bytes(200) + b"\xff\xd9"  # stands for a 160 x 120 JPEG


def photo(order: str = "<", embedded: bytes | None = SMALL_JPEG, pixels: int = 300_000) -> bytes:
    """A JPEG as a camera writes it: SOI, APP0 (JFIF), APP1 (EXIF with IFD0, and IFD1 naming
    the thumbnail), then ``pixels`` bytes standing for the compressed image."""
    mark = b"II" if order == "<" else b"MM"
    ifd0 = struct.pack(order + "H", 1) + struct.pack(order + "HHI4s", 0x0112, 3, 1, b"\x00\x01\0\0")
    ifd1_at = 8 + len(ifd0) + 4
    entries = []
    if embedded is not None:
        data_at = ifd1_at + 2 + 2 * 12 + 4
        entries = [
            struct.pack(order + "HHII", 0x0201, 4, 1, data_at),
            struct.pack(order + "HHII", 0x0202, 4, 1, len(embedded)),
        ]
    ifd1 = struct.pack(order + "H", len(entries)) + b"".join(entries) + bytes(4)
    tiff = (
        mark
        + struct.pack(order + "HI", 42, 8)
        + ifd0
        + struct.pack(order + "I", ifd1_at if embedded is not None else 0)
        + (ifd1 + embedded if embedded is not None else b"")
    )
    app1 = b"Exif\x00\x00" + tiff
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xe1"
        + struct.pack(">H", len(app1) + 2)
        + app1
        + b"\xff\xda"
        + bytes(pixels)
        + b"\xff\xd9"
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_photograph_gives_the_thumbnail_its_camera_embedded(order: str) -> None:
    found = thumbnail(photo(order))

    assert found is not None
    assert (found.data, found.content_type, found.embedded) == (SMALL_JPEG, "image/jpeg", True)
    assert exif_thumbnail(photo(order)) == SMALL_JPEG


def test_a_small_picture_without_one_is_shown_as_it_is() -> None:
    picture = png(64, 48, (30, 120, 40))

    found = thumbnail(picture)

    assert found is not None
    assert (found.data, found.content_type, found.embedded) == (picture, "image/png", False)


def test_a_large_picture_without_an_embedded_thumbnail_gets_none() -> None:
    assert thumbnail(photo(embedded=None, pixels=300_000)) is None
    assert thumbnail(photo(embedded=None, pixels=1_000), limit=256 * 1024) is not None


@pytest.mark.parametrize(
    "data",
    [b"plain text", b"%PDF-1.7", photo()[:40], b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*"],
)
def test_data_that_is_no_picture_or_a_broken_exif_block_gets_no_embedded_thumbnail(
    data: bytes,
) -> None:
    assert exif_thumbnail(data) is None
    if not data.startswith(b"\xff\xd8"):
        assert thumbnail(data) is None


def test_picture_names_are_known_by_their_extension() -> None:
    assert is_picture("plants-images/leaf.JPG")
    assert is_picture("a/b.webp")
    assert not is_picture("plants-images/leaf.json")
    assert not is_picture("leaf")
