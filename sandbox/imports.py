"""Imports that really happen: download the pre-signed URL, gunzip, size-check, report progress."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import requests

from sandbox import qcow2
from sandbox.state import CloudState, Snapshot

logger = logging.getLogger(__name__)

_FAST_CHUNK = 64 * 1024
_PACED_CHUNK = 16 * 1024
_TICK = 0.05


class ImportFailed(Exception):
    """Why an import ended in `error`; its message never holds the URL."""


@dataclass(frozen=True)
class ImportSpeed:
    """`bytes_per_second` caps the download; `min_seconds` stretches a small import out."""

    bytes_per_second: int | None = None
    min_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.bytes_per_second is not None and self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive or null")
        if self.min_seconds < 0:
            raise ValueError("min_seconds must not be negative")

    @property
    def paced(self) -> bool:
        return self.bytes_per_second is not None or self.min_seconds > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Stream:
    """Counts uncompressed bytes of a possibly gzipped stream and keeps its first bytes."""

    def __init__(self) -> None:
        self.gzipped: bool | None = None
        self.uncompressed = 0
        self.head = b""
        self._pending = b""
        self._inflater: Any = None

    def feed(self, chunk: bytes) -> None:
        if self.gzipped is None:
            self._pending += chunk
            if len(self._pending) < 2:
                return
            chunk, self._pending = self._pending, b""
            self.gzipped = chunk[:2] == b"\x1f\x8b"
        if not self.gzipped:
            self._count(chunk)
            return
        while chunk:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                self._count(self._inflater.decompress(chunk))
            except zlib.error:
                raise ImportFailed("the object is not a valid gzip stream") from None
            # A gzip file may hold several members; start over on what follows one.
            chunk = self._inflater.unused_data if self._inflater.eof else b""
            if self._inflater.eof:
                self._inflater = None

    def finish(self) -> None:
        if self._pending:
            self.gzipped = False
            self._count(self._pending)
        if self._inflater is not None:
            raise ImportFailed("the gzip stream is truncated")

    @property
    def virtual_size(self) -> int | None:
        return qcow2.read_virtual_size(self.head)

    def _count(self, data: bytes) -> None:
        self.uncompressed += len(data)
        if len(self.head) < 32:
            self.head += data[: 32 - len(self.head)]


class Importer:
    """Runs imports on a bounded pool of threads; queued imports stay `in-queue`."""

    def __init__(
        self,
        state: CloudState,
        *,
        workers: int = 32,
        speed: ImportSpeed | None = None,
        timeouts: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self._state = state
        self._speed = speed or ImportSpeed()
        self._default_speed = self._speed
        self._timeouts = timeouts
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sb-import")

    @property
    def speed(self) -> ImportSpeed:
        return self._speed

    def set_speed(self, speed: ImportSpeed | None = None) -> None:
        """Change the pace of running and future imports; None restores the starting pace."""
        self._speed = speed or self._default_speed

    def submit(self, snapshot: Snapshot) -> None:
        self._executor.submit(self._run, snapshot)

    def stop(self) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, snapshot: Snapshot) -> None:
        try:
            self._import(snapshot)
        except ImportFailed as failure:
            self._state.update(snapshot, state="error", error_reason=str(failure))
        except Exception as exc:
            # Exception texts from HTTP libraries quote the URL, signature included.
            logger.error("import of %s crashed: %s", snapshot.snapshot_id, type(exc).__name__)
            self._state.update(
                snapshot, state="error", error_reason=f"internal error ({type(exc).__name__})"
            )

    def _import(self, snapshot: Snapshot) -> None:
        if self._abandoned(snapshot):
            return
        self._state.update(snapshot, state="pending")
        started = time.monotonic()
        stream = _Stream()
        with self._open(snapshot) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            while not self._abandoned(snapshot):
                chunk = self._read(response)
                if not chunk:
                    break
                stream.feed(chunk)
                self._check_size(snapshot, stream, final=False)
                read = snapshot.bytes_read + len(chunk)
                self._state.update(
                    snapshot, bytes_read=read, uncompressed_bytes=stream.uncompressed
                )
                self._pace(snapshot, started, read, total)
        if self._abandoned(snapshot):
            return
        stream.finish()
        self._check_size(snapshot, stream, final=True)
        self._wait_min_duration(snapshot, started)
        if not self._abandoned(snapshot):
            self._state.update(snapshot, state="completed", progress=100)

    def _open(self, snapshot: Snapshot) -> requests.Response:
        try:
            response = requests.get(
                snapshot.file_location or "",
                stream=True,
                timeout=self._timeouts,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise ImportFailed("the object store did not answer in time") from None
        except requests.ConnectionError:
            raise ImportFailed("the object store is unreachable") from None
        except requests.RequestException as exc:
            raise ImportFailed(f"the download failed ({type(exc).__name__})") from None
        if response.status_code != 200:
            response.close()
            raise ImportFailed(f"the object store answered HTTP {response.status_code}")
        return response

    def _read(self, response: requests.Response) -> bytes:
        size = _PACED_CHUNK if self._speed.paced else _FAST_CHUNK
        try:
            chunk: bytes = response.raw.read(size, decode_content=False)
        except Exception as exc:
            raise ImportFailed(f"the download broke off ({type(exc).__name__})") from None
        return chunk

    def _check_size(self, snapshot: Snapshot, stream: _Stream, *, final: bool) -> None:
        wanted = snapshot.snapshot_size or 0
        virtual = stream.virtual_size
        if virtual is not None and virtual > wanted:
            raise ImportFailed(
                f"SnapshotSize {wanted} is smaller than the image's virtual size {virtual}"
            )
        too_big = stream.uncompressed > wanted
        if virtual is None and too_big and (final or len(stream.head) >= 32):
            raise ImportFailed(
                f"SnapshotSize {wanted} is smaller than the uncompressed size "
                f"(at least {stream.uncompressed} bytes)"
            )

    def _pace(self, snapshot: Snapshot, started: float, read: int, total: int | None) -> None:
        speed = self._speed
        share = read / total if total else 0.0
        targets = [0.0]
        if speed.bytes_per_second:
            targets.append(read / speed.bytes_per_second)
        if speed.min_seconds and total:
            targets.append(share * speed.min_seconds)
        delay = max(targets) - (time.monotonic() - started)
        if delay > 0:
            self._stopping.wait(delay)
        self._state.update(snapshot, progress=self._progress(speed, started, share))

    def _wait_min_duration(self, snapshot: Snapshot, started: float) -> None:
        while not self._abandoned(snapshot):
            speed = self._speed
            if time.monotonic() - started >= speed.min_seconds:
                return
            self._state.update(snapshot, progress=self._progress(speed, started, 1.0))
            self._stopping.wait(_TICK)

    @staticmethod
    def _progress(speed: ImportSpeed, started: float, share: float) -> int:
        if speed.min_seconds:
            share = min(share, (time.monotonic() - started) / speed.min_seconds)
        return max(0, min(99, int(share * 100)))

    def _abandoned(self, snapshot: Snapshot) -> bool:
        return self._stopping.is_set() or snapshot.cancelled.is_set()
