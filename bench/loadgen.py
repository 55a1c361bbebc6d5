"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next
request when the previous answer is read. Raw asyncio streams, so the client costs little CPU
next to the servers it measures (on a 2-core machine the client shares the cores)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(
    url: str, headers: dict[str, str], deadline: float, result: dict, interval_s: float = 0.0
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    request = head.encode()
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            elapsed = time.perf_counter() - started
            result["latencies"].append(elapsed * 1000)
            if status != 200:
                result["errors"] += 1
            if interval_s:
                await asyncio.sleep(max(0.0, interval_s - elapsed))
    finally:
        writer.close()


async def _run(targets: list[tuple[str, dict[str, str]]], seconds: float, interval_s: float) -> LoadResult:
    result: dict = {"latencies": [], "errors": 0}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(url, headers, deadline, result, interval_s) for url, headers in targets))
    elapsed = time.perf_counter() - started
    return LoadResult(len(result["latencies"]), result["errors"], elapsed, result["latencies"])


def run_load(url: str, headers: dict[str, str], *, connections: int, seconds: float) -> LoadResult:
    """Closed loop: each connection sends its next request as soon as the answer is read."""
    return asyncio.run(_run([(url, headers)] * connections, seconds, 0.0))


def run_clients(targets: list[tuple[str, dict[str, str]]], *, seconds: float, interval_s: float) -> LoadResult:
    """One keep-alive connection per target, each polling its URL every `interval_s` seconds."""
    return asyncio.run(_run(targets, seconds, interval_s))
