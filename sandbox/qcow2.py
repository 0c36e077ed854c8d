"""Build and read just enough of the qcow2 format for the sandbox's demo image."""

from __future__ import annotations

import gzip
import random
import struct

MAGIC = b"QFI\xfb"
HEADER_LENGTH = 104  # a version 3 header without extensions
GIB = 1024**3

_CLUSTER_BITS = 16
_CLUSTER_SIZE = 1 << _CLUSTER_BITS
_COPIED = 1 << 63  # "refcount is exactly one" flag on L1/L2 entries
# magic, version, backing offset/size, cluster bits, virtual size, crypt method, L1 size,
# L1 offset, refcount table offset/clusters, snapshot count/offset, feature bitmaps,
# refcount order, header length.
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")


def read_virtual_size(head: bytes) -> int | None:
    """Return the virtual size a qcow2 header declares, or None when `head` is not qcow2."""
    if len(head) < 32 or head[:4] != MAGIC:
        return None
    (size,) = struct.unpack(">Q", head[24:32])
    return int(size)


def build_image(virtual_size: int = 10 * GIB, data_clusters: int = 6, seed: int = 42) -> bytes:
    """A valid qcow2 v3 image declaring `virtual_size`, with a few allocated data clusters.

    The data clusters hold pseudo-random bytes so the gzipped image stays a few hundred KB:
    large enough for an import's progress to be watched, small enough for tests.
    """
    l2_entries = _CLUSTER_SIZE // 8
    l1_size = -(-virtual_size // (_CLUSTER_SIZE * l2_entries))
    if data_clusters > l2_entries or l1_size * 8 > _CLUSTER_SIZE:
        raise ValueError("the demo image supports one L1 cluster and one L2 table")
    refcount_table, refcount_block, l1_table, l2_table = (1, 2, 3, 4)
    first_data = 5
    total_clusters = first_data + data_clusters

    header = _HEADER.pack(
        MAGIC, 3, 0, 0, _CLUSTER_BITS, virtual_size, 0, l1_size,
        l1_table * _CLUSTER_SIZE, refcount_table * _CLUSTER_SIZE, 1, 0, 0, 0, 0, 0, 4,
        HEADER_LENGTH,
    )  # fmt: skip
    image = bytearray(total_clusters * _CLUSTER_SIZE)
    image[: len(header)] = header
    _put_u64(image, refcount_table * _CLUSTER_SIZE, refcount_block * _CLUSTER_SIZE)
    for cluster in range(total_clusters):
        struct.pack_into(">H", image, refcount_block * _CLUSTER_SIZE + 2 * cluster, 1)
    _put_u64(image, l1_table * _CLUSTER_SIZE, l2_table * _CLUSTER_SIZE | _COPIED)
    noise = random.Random(seed)  # noqa: S311 - filler bytes, not a secret
    for index in range(data_clusters):
        offset = (first_data + index) * _CLUSTER_SIZE
        _put_u64(image, l2_table * _CLUSTER_SIZE + 8 * index, offset | _COPIED)
        image[offset : offset + _CLUSTER_SIZE] = noise.randbytes(_CLUSTER_SIZE)
    return bytes(image)


def build_gzipped_image(virtual_size: int = 10 * GIB, data_clusters: int = 6) -> bytes:
    return gzip.compress(build_image(virtual_size, data_clusters), mtime=0)


def _put_u64(buffer: bytearray, offset: int, value: int) -> None:
    struct.pack_into(">Q", buffer, offset, value)
