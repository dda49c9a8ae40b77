"""Lossless under load: every request the gateway answered has its event in the store.

Each request carries a unique address (`/p/<client>/<n>`, 10 % of them to a blocked host), so
the check is exact: the set of addresses the clients got an answer for, against the set of
`url`s in the events table once the gateway has exited. Three runs, each at the highest rate the
clients can drive (keep-alive connections in a closed loop, as many as `--clients`):

  steady     load for the whole period, then SIGTERM once the load has stopped;
  sigterm    SIGTERM half-way through while the load goes on (the clients see the gateway close);
  sigkill    SIGKILL of the whole process group half-way through: what a crash can lose, for
             the record (not a failure: the bound is stated in the README).

`steady` and `sigterm` must lose nothing: the script exits 1 if any answered request has no event.
`python benchmarks/lossless.py [--seconds 60] [--workers N] [--clients 32]` (also in make bench).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_load  # noqa: E402 - the origin and start-up helpers, shared

BIN = Path(sys.executable).parent
BLOCKED = gateway_load.BLOCKED


# -- clients -----------------------------------------------------------------------------------


async def _clients_main(proxy: tuple[str, int], origin: str, seconds: float, clients: int,
                        stop_at: float | None, out: mp.Queue) -> None:
    """Closed-loop keep-alive clients; reconnect after a failure until the deadline. Reports the
    addresses answered (any complete response: allowed, block page) and how many were sent."""
    deadline = time.monotonic() + seconds
    answered: list[str] = []
    sent = 0
    failures = 0

    async def client(c: int) -> None:
        nonlocal sent, failures
        n = 0
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), 5)
            except (OSError, TimeoutError):
                failures += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while time.monotonic() < deadline:
                    n += 1
                    host = BLOCKED if n % 10 == 0 else origin
                    url = f"http://{host}/p/{c}/{n}"
                    writer.write(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    sent += 1
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    await asyncio.wait_for(reader.readexactly(int(m[1]) if m else 0), 10)
                    answered.append(url)
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
                failures += 1
            finally:
                writer.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    out.put((answered, sent, failures))


def _clients(args: tuple) -> None:
    *rest, out = args
    asyncio.run(_clients_main(*rest, out=out))


# -- the gateway -------------------------------------------------------------------------------


def _supports_workers() -> bool:
    help_text = subprocess.run([str(BIN / "schoolgate"), "run", "--help"], capture_output=True,
                               text=True, check=False).stdout
    return "--workers" in help_text


def _stored(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {url for (url,) in db.execute("SELECT url FROM events WHERE url LIKE '%/p/%'")}


def one_run(kind: str, seconds: float, workers: int | None, clients: int,
            origin_port: int) -> dict:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cmd = [str(BIN / "schoolgate"), "run", "--config", str(gateway_load.write_config(tmp)),
               "--listen", "127.0.0.1:0"]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        port = _port(proc)
        out: mp.Queue = mp.Queue()
        origin = f"127.0.0.1:{origin_port}"
        load = mp.Process(target=_clients,
                          args=((("127.0.0.1", port), origin, seconds, clients, None, out),))
        started = time.monotonic()
        load.start()
        if kind in ("sigterm", "sigkill"):
            time.sleep(seconds / 2)
            os.killpg(proc.pid, signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
        answered, sent, failures = out.get(timeout=seconds + 120)
        load.join()
        elapsed = time.monotonic() - started
        if kind == "steady":
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        stored = _stored(tmp / "data" / "schoolgate.sqlite3")
    answered_set = set(answered)
    return {
        "kind": kind, "sent": sent, "answered": len(answered_set), "stored": len(stored),
        "missing": len(answered_set - stored), "rate": len(answered_set) / elapsed,
        "failures": failures, "exit": code,
    }


def _port(proc: subprocess.Popen) -> int:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(r"proxy listening on\s+\S+:(\d+)", line):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return int(m[1])
    proc.kill()
    raise RuntimeError("the gateway did not start:\n" + "".join(seen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_LOSSLESS_SECONDS", "60")))
    parser.add_argument("--workers", type=int, default=None,
                        help="passed to schoolgate run (default: its own default)")
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    workers = args.workers if _supports_workers() else None
    port_q: mp.Queue = mp.Queue()
    origin = mp.Process(target=gateway_load._origin, args=(port_q,), daemon=True)
    origin.start()
    origin_port = port_q.get(timeout=10)
    results = [one_run(kind, args.seconds, workers, args.clients, origin_port)
               for kind in ("steady", "sigterm", "sigkill")]
    origin.terminate()
    shown = "default" if workers is None else str(workers)
    print(f"\nLossless under load ({args.seconds:.0f} s a run, {args.clients} keep-alive clients, "
          f"workers {shown}, {os.cpu_count()} cores)")
    print(f"{'run':8} {'req/s':>7} {'sent':>8} {'answered':>9} {'stored':>8} {'missing':>8} "
          f"{'exit':>5}")
    for r in results:
        print(f"{r['kind']:8} {r['rate']:7.0f} {r['sent']:8d} {r['answered']:9d} "
              f"{r['stored']:8d} {r['missing']:8d} {r['exit']:5d}")
    lost = [r for r in results if r["kind"] != "sigkill" and r["missing"]]
    if lost:
        print("LOST EVENTS: " + ", ".join(f"{r['kind']}: {r['missing']}" for r in lost))
        return 1
    print("steady and SIGTERM: every answered request has its event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
