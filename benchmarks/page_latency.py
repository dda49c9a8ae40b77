"""Page scanning's added latency per page (#16 point 6), through two real gateways in the same
run: one with page scanning on, one with it off, both with the shipped keyword library and
the same config otherwise. A local origin serves HTML pages of 20, 50 and 100 KB; a client
fetches them one at a time through each gateway in turn (on, off, on, off..., so a busy moment
of the machine falls on both), and the table gives each size's p50 and p99 time to the last
byte, on and off, and the difference.

Two kinds of page: "unique" pages differ on every load (a token in the text), so every scan is
done in full; "repeat" pages are the same bytes each time, as a class opening the lesson's page
is, so the findings come from the worker's cache after the first.

    python benchmarks/page_latency.py [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZES = (20_000, 50_000, 100_000)


def make_page(size: int, seed: int) -> str:
    """An article-like page: a head with a style and a script, navigation, paragraphs of
    ordinary school-news words with links; no phrase of the library in it."""
    rng = random.Random(seed)
    words = ("the school said pupils would learn about volcanoes history maths science lesson "
             "teacher report government weather football music health young people community "
             "local council library project results parents week year trip museum").split()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>News</title><style>"
             + "p{margin:0 0 1em}" * 30 + "</style><script>" + "var a=1;" * 80
             + "</script></head><body><nav>"
             + "".join(f"<a href='/s/{i}'>{rng.choice(words)}</a>" for i in range(30))
             + "</nav><main><p>TOKEN</p>"]
    length = len(parts[0])
    while length < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 20)))
        p = (f"<p class='body'>{sentence.capitalize()}. "
             f"<a href='/x/{rng.randint(0, 9999)}'>more</a></p>\n")
        parts.append(p)
        length += len(p)
    parts.append("</main></body></html>")
    return "".join(parts)


class Origin:
    def __init__(self) -> None:
        pages = {size: make_page(size, size) for size in SIZES}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                kind, size = self.path.strip("/").split("/")[:2]
                token = "repeat" if kind == "repeat" else uuid.uuid4().hex
                body = pages[int(size)].replace("TOKEN", token).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gateway(tmp: Path, name: str, page_scan: bool) -> Iterator[int]:
    where = tmp / name
    where.mkdir()
    (where / "list.txt").write_text("blocked-bench.test\n")
    port, metrics = free_port(), free_port()
    doc = {
        "school": {"name": "Bench School", "timezone": "Europe/London"},
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics": {"host": "127.0.0.1", "port": metrics},
        "data_dir": str(where / "data"), "ca_dir": str(where / "ca"),
        "categories": {"bench": {"title": "Bench", "lists": [str(where / "list.txt")]}},
        "keywords": {"library": str(ROOT / "keywords")},
        "groups": {"pupils": {"title": "Pupils", "subnets": ["127.0.0.0/8"],
                              "blocked_categories": ["bench"],
                              **({} if page_scan else {"page_scan": "off"})}},
        "default_group": "pupils",
    }
    config = where / "schoolgate.yaml"
    config.write_text(json.dumps(doc))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    log = open(where / "gateway.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "schoolgate"), "run", "--config", str(config),
                             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway {name} exited:\n{(where / 'gateway.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"gateway {name} did not listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def fetch(proxy: int, origin: int, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=30)
    started = time.perf_counter()
    conn.request("GET", f"http://127.0.0.1:{origin}{path}")
    response = conn.getresponse()
    body = response.read()
    took = time.perf_counter() - started
    conn.close()
    if response.status != 200 or len(body) < 10_000:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return took


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else \
        max(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int,
                        default=int(os.environ.get("BENCH_PAGE_LATENCY_REQUESTS", "300")),
                        help="requests per (gateway, kind, size); default 300")
    args = parser.parse_args(argv)
    origin = Origin()
    with tempfile.TemporaryDirectory() as d, gateway(Path(d), "on", True) as on, \
            gateway(Path(d), "off", False) as off:
        for port in (on, off):  # warm up: connections, caches, the first scan
            for size in SIZES:
                fetch(port, origin.port, f"/unique/{size}")
        times: dict[tuple[str, str, int], list[float]] = {}
        for kind in ("unique", "repeat"):
            for size in SIZES:
                for _ in range(args.requests):
                    for name, port in (("on", on), ("off", off)):
                        times.setdefault((name, kind, size), []).append(
                            fetch(port, origin.port, f"/{kind}/{size}"))
    print(f"Page scanning's added latency, {args.requests} requests per cell, one at a time, "
          f"through two gateways (page scanning on and off) in turn; time to the last byte")
    head = (f"{'pages':8} {'size':>7} {'p50 on':>8} {'p50 off':>8} {'added':>7} "
            f"{'p99 on':>8} {'p99 off':>8} {'added':>7}")
    print(head)
    print("-" * len(head))
    for kind in ("unique", "repeat"):
        for size in SIZES:
            on_t = times[("on", kind, size)]
            off_t = times[("off", kind, size)]
            p50 = [statistics.median(t) * 1e3 for t in (on_t, off_t)]
            p99 = [percentile(t, 99) * 1e3 for t in (on_t, off_t)]
            print(f"{kind:8} {size // 1000:>5}KB {p50[0]:8.2f} {p50[1]:8.2f} "
                  f"{p50[0] - p50[1]:+7.2f} {p99[0]:8.2f} {p99[1]:8.2f} {p99[0] - p99[1]:+7.2f}")
    print("(ms; 'unique' pages differ on every load, so each is scanned in full; 'repeat' "
          "pages are the same bytes, whose findings the worker's cache keeps)")


if __name__ == "__main__":
    main()
