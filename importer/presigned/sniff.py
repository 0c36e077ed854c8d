from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from importer.core.units import GIB

SNIFF_OUTPUT_LIMIT = 64 * 1024  # decompressed bytes we are willing to produce from a gzip header


@dataclass(frozen=True)
class ImageInfo:
    container: Literal["gzip"] | None
    format: Literal["qcow2", "raw", "unknown"]
    virtual_size: int | None
    object_size: int | None
    suggested_size: int | None
    explanation: str


_QCOW2_MAGIC = b"QFI\xfb"


_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"KDMV", "VMDK"),
    (0, b"# Disk DescriptorFile", "VMDK"),
    (0, b"conectix", "VHD"),
    (0, b"vhdxfile", "VHDX"),
    (0x40, b"\x7f\x10\xda\xbe", "VDI"),
    (0, b"\xfd7zXZ\x00", "xz-compressed"),
    (0, b"BZh", "bzip2-compressed"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (0, b"PK\x03\x04", "zip"),
)


_CONVERT = (
    "OUTSCALE imports raw or qcow2 images: convert it (qemu-img convert -O qcow2) and upload "
    "it again."
)


def format_gib(size: int) -> str:
    """Human size in GiB: exact for whole GiB, two decimals otherwise."""
    if size < 0:
        raise ValueError("size must not be negative")
    if size % GIB == 0:
        return f"{size // GIB} GiB"
    value = size / GIB
    if value < 0.01:
        return "less than 0.01 GiB"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " GiB"


def _describe_size(size: int) -> str:
    return f"{format_gib(size)} = {size} bytes"


def _unsized(
    container: Literal["gzip"] | None,
    format: Literal["qcow2", "raw", "unknown"],
    object_size: int | None,
    explanation: str,
) -> ImageInfo:
    """What the first bytes cannot size: no virtual size, nothing to suggest."""
    return ImageInfo(container, format, None, object_size, None, explanation)


def sniff_image(first_bytes: bytes, *, object_size: int | None) -> ImageInfo:
    """Guess format and size of a disk image from its first bytes; never raises on bad input."""
    if first_bytes[:2] == b"\x1f\x8b":
        return _sniff_gzip(first_bytes, object_size)
    return _sniff_plain(first_bytes, object_size)


def _sniff_gzip(first_bytes: bytes, object_size: int | None) -> ImageInfo:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        # max_length bounds the output, so a gzip bomb costs us at most 64 KiB.
        inner = decompressor.decompress(first_bytes, SNIFF_OUTPUT_LIMIT)
    except zlib.error:
        return _unsized(
            "gzip",
            "unknown",
            object_size,
            "gzip-compressed, but the compressed stream is damaged: check the object, and enter "
            "at least the original volume's size.",
        )
    if len(inner) < 4:
        return _unsized(
            "gzip",
            "unknown",
            object_size,
            "gzip-compressed, but too little data to read the image header inside; enter at "
            "least the original volume's size.",
        )
    if inner[:4] == _QCOW2_MAGIC:
        return _qcow2_info(inner, "gzip", object_size)
    other = _other_format(inner)
    if other:
        return _unsized("gzip", "unknown", object_size, f"{other} image inside gzip. {_CONVERT}")
    return _unsized(
        "gzip",
        "raw",
        object_size,
        "gzip-compressed raw image: the uncompressed size cannot be known from its first bytes; "
        "use at least the original volume's size.",
    )


def _sniff_plain(first_bytes: bytes, object_size: int | None) -> ImageInfo:
    if not first_bytes:
        return _unsized(None, "unknown", object_size, "The object is empty: nothing to import.")
    if first_bytes[:4] == _QCOW2_MAGIC:
        return _qcow2_info(first_bytes, None, object_size)
    other = _other_format(first_bytes)
    if other:
        return _unsized(None, "unknown", object_size, f"{other} image. {_CONVERT}")
    table = _partition_table(first_bytes)
    if object_size is None:
        return _unsized(
            None,
            "raw",
            None,
            f"Raw image{table}, but the object size is unknown: use at least the original "
            "volume's size.",
        )
    return ImageInfo(
        None,
        "raw",
        object_size,
        object_size,
        object_size or None,
        f"Raw image{table}: the object size is the volume size, {_describe_size(object_size)}.",
    )


def _qcow2_info(header: bytes, container: Literal["gzip"] | None, size: int | None) -> ImageInfo:
    where = "qcow2 inside gzip" if container else "qcow2"
    if len(header) < 32:
        return _unsized(
            container,
            "qcow2",
            size,
            f"{where}, but the header is truncated: the virtual size cannot be read; enter the "
            "original volume's size.",
        )
    (version,) = struct.unpack_from(">I", header, 4)
    (virtual_size,) = struct.unpack_from(">Q", header, 24)
    note = "" if version in (2, 3) else f" (unusual qcow2 version {version})"
    if virtual_size == 0:
        return ImageInfo(
            container,
            "qcow2",
            0,
            size,
            None,
            f"{where}{note} with a virtual size of 0 bytes: the header looks damaged.",
        )
    return ImageInfo(
        container,
        "qcow2",
        virtual_size,
        size,
        virtual_size,
        f"{where}{note}, virtual size {_describe_size(virtual_size)}",
    )


def _other_format(data: bytes) -> str | None:
    for offset, magic, name in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _partition_table(data: bytes) -> str:
    if data[512:520] == b"EFI PART":
        return " with a GPT partition table"
    if data[510:512] == b"\x55\xaa":
        return " with an MBR partition table"
    return ""
