"""A small HTTP load generator, run as a second process by `benchmarks.bench web`:

    python -m benchmarks.webload http://127.0.0.1:8080/path --connections 16 --seconds 10

Each connection sends keep-alive HTTP/1.1 GETs one after another (as wrk does) for the given time and records
each request's latency; it prints one JSON line: requests, errors, bytes, requests/s, p50 and p99 in ms.
It is a measuring tool, not part of wgbot: it reads just enough of a response (Content-Length) to go on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def _one(host: str, port: int, path: str, until: float, latencies: list[float], counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: webload\r\n\r\n".encode()
    try:
        while time.monotonic() < until:
            start = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.monotonic() - start)
            counts["bytes"] += len(body)
            if not head.startswith(b"HTTP/1.1 200"):
                counts["errors"] += 1
    finally:
        writer.close()


async def run(url: str, connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    counts = {"errors": 0, "bytes": 0}
    start = time.monotonic()
    await asyncio.gather(*(_one(parts.hostname or "127.0.0.1", parts.port or 80, path, start + seconds, latencies,
                                counts) for _ in range(connections)))
    elapsed = time.monotonic() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0.0
    return {"requests": len(latencies), "errors": counts["errors"], "bytes": counts["bytes"],
            "rps": len(latencies) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
