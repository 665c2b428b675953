"""What an image file's header says before it is decoded: its size (against the decoded-pixel
limit), and whether it may hold several frames (:func:`may_hold_frames`).

A small file can hold a huge image: a 20000 x 20000 PNG of 1 MB decodes to 1.2 GB (and more while
converted). OpenCV has a limit of its own, the environment variable ``OPENCV_IO_MAX_IMAGE_PIXELS``,
but reads it once, when ``cv2`` is imported: whatever imported ``cv2`` first (a plugin, a
notebook, another module of this package) decided whether the limit holds. So the limit is
checked here, from the header's width and height, before any pixel is decoded, and read at each
check (:func:`pixel_limit`): it holds whatever imported ``cv2`` first, and a changed variable
counts at once. The formats read here are those the frames of a dataset come in (PNG, JPEG,
BMP, GIF, WebP, TIFF, PNM); for the rarer ones OpenCV decodes (JPEG 2000, OpenEXR, Radiance HDR,
Sun raster, AVIF), OpenCV's own check holds where ``cv2`` was imported after the package set the
variable (:func:`set_default_limit`, at ``import feph_finetune``: every command).
"""

from __future__ import annotations

import os
import re
import struct

#: Most pixels an image may have (width x height) to be decoded: 2**27, about 134 megapixels,
#: more than any phone or DSLR photograph (100-megapixel medium format cameras included), while one
#: decode of 16-bit RGB stays under 1 GB; a face crop needs a small part of it. OpenCV's default,
#: 2**30, lets 8 decoding threads take 8 x 6 GB. A user's own ``OPENCV_IO_MAX_IMAGE_PIXELS`` is kept.
MAX_IMAGE_PIXELS = 2**27
LIMIT_VARIABLE = "OPENCV_IO_MAX_IMAGE_PIXELS"


def set_default_limit() -> None:
    """Set ``OPENCV_IO_MAX_IMAGE_PIXELS`` to :data:`MAX_IMAGE_PIXELS` unless the user set it, for
    OpenCV's own check of the formats :func:`announced_size` does not read."""
    os.environ.setdefault(LIMIT_VARIABLE, str(MAX_IMAGE_PIXELS))


def pixel_limit() -> int:
    """The most pixels decoded: ``OPENCV_IO_MAX_IMAGE_PIXELS`` as it is now, else :data:`MAX_IMAGE_PIXELS`."""
    try:
        limit = int(os.environ.get(LIMIT_VARIABLE, ""))
    except ValueError:
        return MAX_IMAGE_PIXELS
    return limit if limit > 0 else MAX_IMAGE_PIXELS


def over_limit(content: bytes) -> bool:
    """Whether the image in ``content`` (a file's bytes) announces more pixels than :func:`pixel_limit`."""
    size = announced_size(content)
    return size is not None and size[0] * size[1] > pixel_limit()


def announced_size(content: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as the header of the image in ``content`` says, for the formats this
    module reads (module docstring); None for another format or a header too short to say."""
    for signature, reader in _READERS:
        if signature(content):
            try:
                return reader(content)
            except (struct.error, IndexError, ValueError):
                return None
    return None


def may_hold_frames(content: bytes) -> bool:
    """Whether the image file in ``content`` may hold more than one frame, by its header: a GIF,
    a TIFF (pages), a PNG with an animation chunk (APNG: ``acTL`` before the image data), a WebP
    with the animation flag. Only these are counted (``cv2.imcount``), which a still PNG or JPEG
    is spared."""
    if content[:6] in (b"GIF87a", b"GIF89a") or content[:4] in (b"II*\x00", b"MM\x00*"):
        return True
    if content[:8] == b"\x89PNG\r\n\x1a\n":
        return b"acTL" in content[: content.find(b"IDAT")]
    return content[:4] == b"RIFF" and content[8:16] == b"WEBPVP8X" and bool(content[20:21]) and bool(content[20] & 0x02)


def _png(content: bytes) -> tuple[int, int] | None:
    return struct.unpack(">II", content[16:24]) if content[12:16] == b"IHDR" else None


def _gif(content: bytes) -> tuple[int, int]:
    return struct.unpack("<HH", content[6:10])  # the logical screen, every frame drawn into it


def _bmp(content: bytes) -> tuple[int, int]:
    if struct.unpack("<I", content[14:18])[0] == 12:  # an OS/2 1.x header: 16-bit sizes
        return struct.unpack("<HH", content[18:22])
    width, height = struct.unpack("<ii", content[18:26])
    return abs(width), abs(height)  # a negative height: rows stored top-down


#: JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC, which share the range).
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(content: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(content):
        if content[at] != 0xFF:
            return None
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", content[at + 5 : at + 9])
            return width, height
        elif marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            at += 2
        else:
            at += 2 + struct.unpack(">H", content[at + 2 : at + 4])[0]
    return None


def _webp(content: bytes) -> tuple[int, int] | None:
    chunk = content[12:16]
    if chunk == b"VP8X":  # the canvas of an extended (animated, alpha) file
        return int.from_bytes(content[24:27], "little") + 1, int.from_bytes(content[27:30], "little") + 1
    if chunk == b"VP8L":
        bits = int.from_bytes(content[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", content[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _tiff(content: bytes) -> tuple[int, int] | None:
    """The first page's ImageWidth (256) and ImageLength (257) tags."""
    order = "<" if content[:2] == b"II" else ">"
    at = struct.unpack(order + "I", content[4:8])[0]
    found = {}
    for entry in range(struct.unpack(order + "H", content[at : at + 2])[0]):
        tag, kind = struct.unpack(order + "HH", content[at + 2 + 12 * entry : at + 6 + 12 * entry])
        value = content[at + 10 + 12 * entry : at + 14 + 12 * entry]
        if tag in (256, 257):
            found[tag] = struct.unpack(order + "H", value[:2])[0] if kind == 3 else struct.unpack(order + "I", value)[0]
    return (found[256], found[257]) if len(found) == 2 else None


#: A PNM header's two numbers after its magic (P1-P6), comments (``# ...``) between tokens allowed.
_PNM_SIZE = re.compile(rb"^P[1-6](?:\s+(?:#[^\n]*\n\s*)*)(\d+)(?:\s+(?:#[^\n]*\n\s*)*)(\d+)")
_PAM_SIZE = re.compile(rb"^P7\s.*?\bWIDTH\s+(\d+).*?\bHEIGHT\s+(\d+)", re.DOTALL)


def _pnm(content: bytes) -> tuple[int, int] | None:
    head = content[:1024]
    match = _PNM_SIZE.match(head) or _PAM_SIZE.match(head)
    return (int(match[1]), int(match[2])) if match else None


_READERS = (
    (lambda content: content[:8] == b"\x89PNG\r\n\x1a\n", _png),
    (lambda content: content[:2] == b"\xff\xd8", _jpeg),
    (lambda content: content[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda content: content[:2] == b"BM", _bmp),
    (lambda content: content[:4] == b"RIFF" and content[8:12] == b"WEBP", _webp),
    (lambda content: content[:4] in (b"II*\x00", b"MM\x00*"), _tiff),
    (lambda content: content[:1] == b"P" and content[1:2] in b"1234567", _pnm),
)
