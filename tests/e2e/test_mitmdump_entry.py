"""Schoolgate loaded into a stock mitmproxy (`mitmdump -s proxy/entry.py`) goes through the same
bootstrap as `schoolgate run`: the illegal lists are loaded before the first request is accepted,
so a listed page is refused on the very first request, though the list's next refresh is twelve
hours away; and a list that cannot be loaded stops mitmdump with the reason.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import (
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    ListServer,
    clean_env,
    closed_port_url,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

ENTRY = Path(__file__).resolve().parents[2] / "proxy" / "entry.py"
IWF_DOMAIN = "iwf-entry.test"  # a domain entry: blocked before any name is resolved
IWF_PAGE = "localhost/pages/iwf-entry-page.html"  # a URL entry on a name that reaches the origin


def mitmdump() -> str:
    found = Path(sys.executable).with_name("mitmdump")
    assert found.exists(), f"mitmdump is not installed beside {sys.executable}"
    return str(found)


def entry_config(directory: Path, upstream_ca: Path, source: str):
    def patch(doc: dict) -> None:
        doc["illegal_lists"] = {
            "iwf": {"title": "IWF URL list", "kind": "iwf", "source": source, "form": "plain",
                    "refresh": "12h"},
        }

    return write_config(directory, upstream_ca=upstream_ca, patch=patch)


def start(name: str, config: Path) -> GatewayProcess:
    return GatewayProcess(name, [mitmdump(), "-q", "-s", str(ENTRY), "--set",
                                 f"schoolgate_config={config}", "--listen-host", "127.0.0.1",
                                 "--listen-port", "0"])


def listen_port(gw: GatewayProcess, data_dir: Path) -> int:
    """The port mitmdump bound: Schoolgate writes it to the data folder once it listens."""
    address = data_dir / "listen-address"

    def written() -> int | None:
        if gw.returncode is not None:
            raise AssertionError(f"mitmdump exited with status {gw.returncode}\n{gw.tail()}")
        text = address.read_text(encoding="ascii").strip() if address.exists() else ""
        return int(text.rpartition(":")[2]) if text else None

    return wait_for(written, "the listen address", on_timeout=gw.tail)


def test_an_illegal_list_entry_is_blocked_on_the_first_request(tmp_path, pki, origin):
    feed = ListServer(f"# served over HTTP\n{IWF_DOMAIN}\n{IWF_PAGE}\n")
    setup = entry_config(tmp_path, pki.ca_cert, feed.url)
    gw = start("mitmdump", setup.config)
    try:
        port = listen_port(gw, setup.data_dir)
        # Loaded at start: the one fetch happened before the port was opened.
        assert feed.served(200) == 1, gw.tail()
        client = GatewayClient(port, setup.schoolgate_ca)
        before = len(origin.requests)

        page = client.get(origin.url("https", "/pages/iwf-entry-page.html", host="localhost"))
        domain = client.get(f"http://{IWF_DOMAIN}/anything.html")

        for reply in (page, domain):
            assert reply.status == 403, reply
            assert "<h1>Access denied</h1>" in reply.text
            assert "Internet Watch Foundation (IWF)" in reply.text
        assert len(origin.requests) == before, "a listed request reached the origin"
        # The gateway is otherwise a working filter: an unlisted page is fetched.
        assert client.get(origin.url("https", "/pages/open.html")).status == 200
    finally:
        if gw.returncode is None:
            gw.stop()
        else:
            gw.kill()
        feed.close()
    assert "Traceback" not in gw.output(), gw.tail()


def test_mitmdump_does_not_start_without_the_illegal_list(tmp_path, pki):
    setup = entry_config(tmp_path, pki.ca_cert, closed_port_url())
    done = subprocess.run(
        [mitmdump(), "-q", "-s", str(ENTRY), "--set", f"schoolgate_config={setup.config}",
         "--listen-host", "127.0.0.1", "--listen-port", "0"],
        capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    assert done.returncode != 0, done
    output = done.stdout + done.stderr
    assert "illegal list iwf: cannot read " in output, output
    assert "(and no last good copy to fall back on)" in output, output
    assert not (setup.data_dir / "listen-address").exists()


def test_a_busy_metrics_port_stops_mitmdump_with_one_line(tmp_path, pki):
    # Under mitmdump the gateway is one process that serves its own metrics; a busy port
    # stops it with Schoolgate's line (no `schoolgate run` option in it), not a traceback.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]

        def patch(doc: dict) -> None:
            doc["metrics"] = {"host": "127.0.0.1", "port": port}

        setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=patch)
        done = subprocess.run(
            [mitmdump(), "-q", "-s", str(ENTRY), "--set", f"schoolgate_config={setup.config}",
             "--listen-host", "127.0.0.1", "--listen-port", "0"],
            capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    assert done.returncode != 0, done
    output = done.stdout + done.stderr
    assert re.search(
        rf"schoolgate: cannot listen on 127\.0\.0\.1:{port} for the metrics endpoint: address "
        rf"already in use (by \S+ \(pid {os.getpid()}\)|\(is another schoolgate running\?\))\. "
        rf"Stop that program, or choose another port: metrics\.port in "
        rf"{re.escape(str(setup.config))}\.$", output, re.M), output
    assert "Traceback" not in output and "--metrics" not in output, output
    assert not (setup.data_dir / "listen-address").exists()
