"""Small pictures of image inputs for the results page, bounded in bytes, without image libraries.

A photograph from a camera or phone carries its own thumbnail (about 160 x 120 pixels) in the
EXIF block of the JPEG (APP1, IFD1 ``JPEGInterchangeFormat``/``JPEGInterchangeFormatLength``,
per the EXIF 2.3 specification): :func:`thumbnail` returns that one. A picture without one is
sent as it is when it is small enough (the page draws it at thumbnail size); anything larger
gets no picture. So at most :data:`MAX_THUMBNAIL_BYTES` reach the browser, and XCom only ever
holds where the picture is, never its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["MAX_THUMBNAIL_BYTES", "PICTURE_TYPES", "Thumbnail", "is_picture", "thumbnail"]

MAX_THUMBNAIL_BYTES = 256 * 1024
#: Extensions of the pictures a browser shows, and their content types.
PICTURE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
}
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)
_EXIF = b"Exif\x00\x00"
_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0201, 0x0202


@dataclass(frozen=True)
class Thumbnail:
    """Bytes to show and their content type; ``embedded`` when taken from the EXIF block."""

    data: bytes
    content_type: str
    embedded: bool = False


def is_picture(name: str) -> bool:
    """Whether an object or file name has the extension of a picture a browser shows."""
    return PurePosixPath(name).suffix[1:].lower() in PICTURE_TYPES


def thumbnail(data: bytes, limit: int = MAX_THUMBNAIL_BYTES) -> Thumbnail | None:
    """The picture's EXIF thumbnail, else the picture itself if under ``limit`` bytes, else
    ``None`` (also for data that is no picture a browser shows)."""
    kind = _content_type(data)
    if kind is None:
        return None
    if kind == "image/jpeg":
        embedded = exif_thumbnail(data)
        if embedded is not None and len(embedded) <= limit:
            return Thumbnail(embedded, "image/jpeg", embedded=True)
    return Thumbnail(data, kind) if len(data) <= limit else None


def exif_thumbnail(data: bytes) -> bytes | None:
    """The JPEG thumbnail in a JPEG's EXIF block (IFD1), or ``None``."""
    tiff = _exif_block(data)
    if tiff is None or len(tiff) < 8:
        return None
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    try:
        ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
        count = struct.unpack_from(order + "H", tiff, ifd0)[0]
        ifd1 = struct.unpack_from(order + "I", tiff, ifd0 + 2 + 12 * count)[0]
        if not ifd1:
            return None
        tags = _ifd(tiff, ifd1, order)
    except struct.error:
        return None
    offset, length = tags.get(_THUMBNAIL_OFFSET), tags.get(_THUMBNAIL_LENGTH)
    if not offset or not length or offset + length > len(tiff):
        return None
    picture = tiff[offset : offset + length]
    return picture if picture.startswith(b"\xff\xd8") else None


def _exif_block(data: bytes) -> bytes | None:
    """The TIFF structure of the first APP1 ``Exif`` segment, before the image data."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no more metadata
            return None
        (size,) = struct.unpack_from(">H", data, position + 2)
        segment = data[position + 4 : position + 2 + size]
        if marker == 0xE1 and segment.startswith(_EXIF):
            return segment[len(_EXIF) :]
        position += 2 + size
    return None


def _ifd(tiff: bytes, offset: int, order: str) -> dict[int, int]:
    """The LONG and SHORT values of one IFD's entries, by tag."""
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    values = {}
    for index in range(count):
        tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, offset + 2 + 12 * index)
        if kind == 4:  # LONG
            values[tag] = struct.unpack(order + "I", value)[0]
        elif kind == 3:  # SHORT
            values[tag] = struct.unpack(order + "H", value[:2])[0]
    return values


def _content_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)
