"""Request rate through the running gateway, against baselines measured in the same run.

Scenarios, each a fixed-duration closed loop of keep-alive HTTP/1.1 clients on loopback:
  direct          client → origin (what the machine can do without a proxy)
  mitmdump        client → plain mitmproxy, no addons (the host we live in)
  schoolgate      client → `schoolgate run`, allowed host (full pipeline + origin)
  schoolgate-blk  client → `schoolgate run`, blocked host (block page, origin never contacted)

The client and the origin are asyncio processes of their own, so the proxy under test competes
only with them for the two cores, as it would with real clients. Figures are for the record on
this machine; ratios against `mitmdump` are what to compare between runs.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BODY = os.urandom(1024)


# -- origin ------------------------------------------------------------------------------------


async def _origin_main(port_q: mp.Queue) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m[1]))
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port_q.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _origin(port_q: mp.Queue) -> None:
    asyncio.run(_origin_main(port_q))


# -- client ------------------------------------------------------------------------------------


async def _client_main(proxy: tuple[str, int] | None, url: str, host: str, seconds: float,
                       concurrency: int) -> tuple[int, list[float], int]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0
    request_target = url if proxy else url.split(host, 1)[1]
    request = f"GET {request_target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode()

    async def one() -> None:
        nonlocal errors
        addr = proxy or (host.split(":")[0], int(host.split(":")[1]))
        reader, writer = await asyncio.open_connection(*addr)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(m[1]) if m else 0)
                latencies.append(time.perf_counter() - t0)
        except (asyncio.IncompleteReadError, ConnectionError):
            errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def _client(args: tuple, out: mp.Queue) -> None:
    out.put(asyncio.run(_client_main(*args)))


def load(proxy: tuple[str, int] | None, url: str, host: str, seconds: float,
         concurrency: int) -> dict:
    out: mp.Queue = mp.Queue()
    p = mp.Process(target=_client, args=((proxy, url, host, seconds, concurrency), out))
    p.start()
    count, latencies, errors = out.get(timeout=seconds + 60)
    p.join()
    latencies.sort()
    return {
        "requests": count,
        "rate": count / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "errors": errors,
    }


# -- proxies under test ------------------------------------------------------------------------


def _start(cmd: list[str], pattern: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(pattern, line):
            # Keep draining output so the proxy never blocks on a full pipe.
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, int(m[1])
    proc.kill()
    raise RuntimeError("proxy did not start:\n" + "".join(seen))


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


BLOCKED = "blocked.test"
"""The one host the load configs block (a gambling list of one line)."""


def write_config(tmp: Path) -> Path:
    """A one-group config blocking `BLOCKED`, with metrics on; shared by the load benchmarks."""
    lists = tmp / "gambling"
    lists.write_text(f"{BLOCKED}\n")
    config = tmp / "bench.yaml"
    config.write_text(
        f"""
data_dir: {tmp / 'data'}
metrics: {{host: 127.0.0.1, port: 0}}
categories:
  gambling: {{title: Gambling, lists: [{lists}]}}
groups:
  pupils: {{subnets: [127.0.0.0/8], blocked_categories: [gambling]}}
default_group: pupils
"""
    )
    return config


def run(seconds: float = 10.0, concurrency: int = 16) -> list[tuple[str, dict]]:
    port_q: mp.Queue = mp.Queue()
    origin = mp.Process(target=_origin, args=(port_q,), daemon=True)
    origin.start()
    origin_port = port_q.get(timeout=10)
    host = f"127.0.0.1:{origin_port}"
    url = f"http://{host}/page"
    results = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        results.append(("direct", load(None, url, host, seconds, concurrency)))

        mitm, port = _start(
            [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port", "0",
             "--set", f"confdir={tmp / 'mitm'}", "--set", "connection_strategy=lazy",
             "--set", "termlog_verbosity=info", "--flow-detail", "0"],
            r"listening at .*:(\d+)",
        )
        try:
            results.append(("mitmdump", load(("127.0.0.1", port), url, host, seconds, concurrency)))
        finally:
            _stop(mitm)

        gate, port = _start(
            [str(BIN / "schoolgate"), "run", "--config", str(write_config(tmp)),
             "--listen", "127.0.0.1:0"],
            r"proxy listening on\s+\S+:(\d+)",
        )
        try:
            result = load(("127.0.0.1", port), url, host, seconds, concurrency)
            results.append(("schoolgate", result))
            results.append(("schoolgate-blk", load(("127.0.0.1", port), f"http://{BLOCKED}/x",
                                                   BLOCKED, seconds, concurrency)))
        finally:
            _stop(gate)
    origin.terminate()
    return results


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    results = run(seconds)
    base = dict(results)["mitmdump"]["rate"]
    print(f"\nGateway request rate ({seconds:.0f} s per scenario, 16 keep-alive clients, "
          f"{os.cpu_count()} cores, loopback)")
    print(f"{'scenario':16} {'req/s':>9} {'vs mitmdump':>12} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7}")
    for name, r in results:
        print(f"{name:16} {r['rate']:9.0f} {r['rate'] / base:11.2f}x {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['errors']:7d}")


if __name__ == "__main__":
    main()
