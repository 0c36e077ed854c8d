"""A small asyncio HTTP/1.1 load generator: N concurrent clients, one request per connection
(as many browsers behind a proxy would open), latencies recorded per request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies: list[float] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


async def _one(port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await reader.readuntil(b"\r\n")
        await reader.read()  # to the end: the server closes the connection
        return int(head.split()[1])
    finally:
        writer.close()


async def _run(port: int, raw: bytes, clients: int, total: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal sent
        while sent < total and time.monotonic() < deadline:
            sent += 1
            started = time.monotonic()
            try:
                status = await asyncio.wait_for(_one(port, raw), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                status = 0
            latencies.append(time.monotonic() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return LoadResult(len(latencies), time.monotonic() - started, statuses, latencies)


def run_load(
    port: int,
    path: str,
    *,
    cookie: str = "",
    clients: int = 200,
    total: int = 10**9,
    seconds: float = 10.0,
) -> LoadResult:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    lines.append("HX-Request: true")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return asyncio.run(_run(port, raw, clients, total, seconds))
