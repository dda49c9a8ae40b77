"""A port the gateway cannot listen on stops `schoolgate run` at once, before anything starts,
with one line in Schoolgate's terms (issue #15, points 5 and 6): which address and what for, who
holds it (this test process, as the system tells), and the config key or `schoolgate run` option
to change. Never mitmproxy's advice (`--mode regular@PORT`), never a traceback, never a gateway
left running or listening.

These start the real `schoolgate run`, with and without several workers (the supervisor owns the
metrics endpoint and the push API; the proxy socket is inherited by the workers). Each run must
end within the harness's TIMEOUT: a gateway that hangs fails the test by timing out.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import TIMEOUT, run_cli, running_gateway, write_config

pytestmark = pytest.mark.e2e

HAS_PROC = Path("/proc/net/tcp").exists()


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A port this test process listens on: the one the gateway is told to use."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nothing_listens_on(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def holder() -> str:
    """How the gateway names this process: by the system's name for it, where /proc tells."""
    if not HAS_PROC:
        return "(is another schoolgate running?)"
    name = Path("/proc/self/comm").read_text(encoding="utf-8").strip()
    return f"by {name} (pid {os.getpid()})"


def run(config: Path, *, listen: str, metrics: str, workers: int) -> subprocess.CompletedProcess:
    return run_cli("run", "--config", str(config), "--listen", listen, "--metrics", metrics,
                   "--workers", str(workers), timeout=TIMEOUT)


def assert_nothing_started(done: subprocess.CompletedProcess, setup, proxy_port: int) -> None:
    assert "Traceback" not in done.stderr and "--mode" not in done.stderr, done.stderr
    assert "is filtering" not in done.stdout, done.stdout
    assert "accepting connections" not in done.stderr, done.stderr  # no worker started
    # Nothing made in its folders: no CA, no event store, no pid file.
    assert not setup.ca_dir.exists()
    assert not setup.database.exists()
    assert not (setup.data_dir / "schoolgate.pid").exists()
    assert nothing_listens_on(proxy_port), "the proxy port is still held"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_metrics_port_stops_the_gateway_with_what_to_change(tmp_path, pki, held, workers):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    port, proxy_port = held.getsockname()[1], free_port()

    done = run(setup.config, listen=f"127.0.0.1:{proxy_port}", metrics=f"127.0.0.1:{port}",
               workers=workers)

    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines()[-1] == (
        f"schoolgate: cannot listen on 127.0.0.1:{port} for the metrics endpoint: address "
        f"already in use {holder()}. Stop that program, or choose another port: metrics.port "
        f"in {setup.config}, or --metrics HOST:PORT."), done.stderr
    assert_nothing_started(done, setup, proxy_port)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_proxy_port_says_what_to_change_in_schoolgates_terms(tmp_path, pki, held,
                                                                    workers):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    port = held.getsockname()[1]

    done = run(setup.config, listen=f"127.0.0.1:{port}", metrics="127.0.0.1:0", workers=workers)

    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines()[-1] == (
        f"schoolgate: cannot listen on 127.0.0.1:{port} for the proxy: address already in use "
        f"{holder()}. Stop that program, or choose another port: listen.port in "
        f"{setup.config}, or --listen HOST:PORT."), done.stderr
    assert_nothing_started(done, setup, free_port())


def test_a_busy_push_api_port_names_its_config_key(tmp_path, pki, held):
    port, proxy_port = held.getsockname()[1], free_port()
    (tmp_path / "push-token").write_text("t" * 40 + "\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["identity"] = {"push": {"listen": {"host": "127.0.0.1", "port": port},
                                    "token_file": str(tmp_path / "push-token")}}

    setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=patch)

    done = run(setup.config, listen=f"127.0.0.1:{proxy_port}", metrics="127.0.0.1:0", workers=2)

    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines()[-1] == (
        f"schoolgate: cannot listen on 127.0.0.1:{port} for the IP map push API: address already "
        f"in use {holder()}. Stop that program, or choose another port: "
        f"identity.push.listen.port in {setup.config}."), done.stderr
    assert_nothing_started(done, setup, proxy_port)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_start_up_failure_stops_every_worker_at_once(tmp_path, pki, workers):
    # A failure the supervisor meets at once (here: the CA folder cannot be made), while its
    # workers are still being spawned: each must be stopped, not left waiting for the go it
    # will never get (the gateway then hung for 30 s before killing it).
    def patch(doc: dict) -> None:
        doc["ca_dir"] = str(tmp_path / "schoolgate.yaml" / "ca")  # under a file

    setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=patch)
    proxy_port = free_port()

    done = run(setup.config, listen=f"127.0.0.1:{proxy_port}", metrics="127.0.0.1:0",
               workers=workers)

    assert done.returncode == 1, done
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"schoolgate: cannot create the CA in {tmp_path}/schoolgate.yaml/ca: "
                           ), done.stderr
    assert "Traceback" not in done.stderr
    assert nothing_listens_on(proxy_port)


@pytest.mark.skipif(not HAS_PROC, reason="who holds a port is read from /proc (Linux)")
def test_a_second_gateway_names_the_first_by_its_supervisor(tmp_path, pki):
    first = write_config(tmp_path / "first", upstream_ca=pki.ca_cert)
    second = write_config(tmp_path / "second", upstream_ca=pki.ca_cert)
    with running_gateway("first", first.config, workers=2) as gw:
        done = run(second.config, listen=f"127.0.0.1:{gw.proxy_port}", metrics="127.0.0.1:0",
                   workers=1)

    assert done.returncode == 1, done
    # Three processes hold the socket (the supervisor and two workers): the one named is the
    # one a technician stops, the supervisor.
    assert done.stderr.strip().splitlines()[-1] == (
        f"schoolgate: cannot listen on 127.0.0.1:{gw.proxy_port} for the proxy: address already "
        f"in use by another schoolgate (pid {gw.pid}). Stop it, or choose another port: "
        f"listen.port in {second.config}, or --listen HOST:PORT."), done.stderr
    assert not second.database.exists()
