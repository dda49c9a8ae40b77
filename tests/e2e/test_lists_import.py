"""UT1 imports and config changes end to end, against a running gateway.

`schoolgate lists import ut1 URL` downloads a tarball from a server on 127.0.0.1, swaps the
category folder the config already reads, and the gateway blocks a newly listed domain within 5
seconds of the command being given (same process, no restart); the import is in the audit log
with its counts. A config edit the gateway finds by itself is recorded as a readable difference;
a broken edit is recorded as refused. The real UT1 `vpn` list (../shared/data/ut1) is imported
beside the hand-made tree, so the download is a real UT1 category, not only a toy.

Every `*.test` name resolves to the origin in these gateways (`resolving_script`), so an allowed
page really arrives.
"""

from __future__ import annotations

import html
import io
import json
import os
import sqlite3
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import (
    GAMBLING_TITLE,
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    Origin,
    Reply,
    replace_file,
    resolving_script,
    run_cli,
    running_gateway,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

UT1 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ut1"

#: The bound the feature promises: in force this long after the command is given.
EFFECT_WITHIN = 5.0

LISTED = "casino-listed.test"
NEWLY_LISTED = "casino-new.test"


def marker() -> str:
    return uuid.uuid4().hex


class TarballServer:
    """Serves one file's bytes at /blacklists.tar.gz from 127.0.0.1; a test swaps it any time."""

    def __init__(self) -> None:
        self.body = b""
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = served.body if self.path == "/blacklists.tar.gz" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/blacklists.tar.gz"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def tarball(gambling: list[str], with_ut1_vpn: bool) -> bytes:
    """A UT1-layout tarball (`blacklists/<category>/...`): a hand-made gambling list and, when
    the real lists are here, UT1's own vpn folder."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in (("domains", "".join(f"{d}\n" for d in gambling)), ("usage", "black\n")):
            data = text.encode()
            info = tarfile.TarInfo(f"blacklists/gambling/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if with_ut1_vpn:
            tar.add(UT1 / "vpn", arcname="blacklists/vpn")
    return out.getvalue()


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    client: GatewayClient
    origin: Origin
    lists: TarballServer
    dest: Path

    def cli(self, *args: str):
        return run_cli(*args, "--config", str(self.setup.config), timeout=60)

    def get(self, host: str) -> Reply:
        return self.client.get(self.origin.url("http", f"/pages/import.html?m={marker()}",
                                               host=host))

    def audit(self) -> list[dict]:
        """The audit log as `schoolgate audit --json` prints it (needs a config that loads)."""
        done = self.cli("audit", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def audit_rows(self, action: str) -> list[dict]:
        """The audit rows straight from the store (read-only), whatever state the config is in."""
        conn = sqlite3.connect(f"file:{self.setup.database}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))
            return [dict(r, detail=json.loads(r["detail"])) for r in rows]
        finally:
            conn.close()


def ut1_present() -> bool:
    if UT1.is_dir():
        return True
    if os.environ.get("CI") == "true":
        pytest.fail(f"the UT1 lists must be present in CI, expected at {UT1}")
    return False


@pytest.fixture
def env(tmp_path, pki, origin) -> Iterator[Env]:
    """A gateway whose gambling category reads its harness list and the imported
    `<data_dir>/lists/ut1/gambling`, first imported (from a folder) holding LISTED only."""
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    first = tmp_path / "ut1-first" / "gambling"
    first.mkdir(parents=True)
    (first / "domains").write_text(f"{LISTED}\n", encoding="utf-8")
    done = run_cli("lists", "import", "ut1", str(first.parent), "--by", "setup",
                   "--config", str(setup.config))
    assert done.returncode == 0, done.stderr
    dest = setup.data_dir / "lists" / "ut1"

    def use_import(doc: dict) -> None:
        doc["categories"]["gambling"]["lists"].append(str(dest / "gambling"))

    setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=use_import)
    server = TarballServer()
    try:
        with running_gateway("lists", setup.config, script=resolving_script(tmp_path)) as gw:
            yield Env(setup, gw, GatewayClient(gw.proxy_port, setup.schoolgate_ca), origin,
                      server, dest)
    finally:
        server.close()


def assert_blocked(reply: Reply) -> None:
    assert reply.status == 403, reply
    assert f"<dd>{html.escape(GAMBLING_TITLE)}</dd>" in reply.text


def test_an_import_blocks_a_newly_listed_domain_within_5_seconds(env):
    real = ut1_present()
    assert_blocked(env.get(LISTED))
    assert env.get(NEWLY_LISTED).status == 200
    env.lists.body = tarball([LISTED, NEWLY_LISTED], with_ut1_vpn=real)
    pid = env.gateway.pid

    given = time.monotonic()
    done = env.cli("lists", "import", "ut1", env.lists.url, "--by", "T Tech",
                   "--reason", "weekly update")
    assert done.returncode == 0, done.stderr + env.gateway.tail()
    assert "in use by the config: gambling" in done.stdout
    assert "in force in the running gateway (generation " in done.stdout
    reply = wait_for(lambda: (r := env.get(NEWLY_LISTED)).status == 403 and r,
                     f"{NEWLY_LISTED} to be blocked after the import",
                     timeout=max(0.0, given + EFFECT_WITHIN - time.monotonic()),
                     on_timeout=env.gateway.tail)
    assert_blocked(reply)
    assert_blocked(env.get(LISTED))
    assert env.gateway.returncode is None and env.gateway.pid == pid

    (row,) = [a for a in env.audit() if a["actor"] == "T Tech"]
    assert (row["action"], row["outcome"], row["target"], row["reason"]) == (
        "lists-import", "done", env.lists.url, "weekly update")
    assert row["detail"]["categories"]["gambling"] == {
        "domains": 2, "urls": 0, "expressions": 0, "bad_lines": 0}
    if real:
        # UT1's vpn list arrived whole (the readers' count of the real file), ready to configure.
        vpn_lines = (UT1 / "vpn" / "domains").read_text(encoding="utf-8").splitlines()
        assert row["detail"]["categories"]["vpn"]["domains"] == len(vpn_lines)
        assert (env.dest / "vpn" / "domains").read_bytes() == (UT1 / "vpn" / "domains").read_bytes()
        assert f"lists: [{env.dest / 'vpn'}]" in done.stdout


def test_a_config_edit_is_recorded_as_a_readable_difference(env):
    config = env.setup.config
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc["groups"]["staff"]["blocked_categories"] = ["gambling"]
    doc["groups"]["pupils"]["safe_search"] = "moderate"
    replace_file(config, yaml.safe_dump(doc, sort_keys=False))

    def recorded() -> list[dict]:
        return env.audit_rows("config")

    # Nobody runs a command: the gateway finds the edit by itself and records it.
    (row,) = wait_for(recorded, "the config change in the audit log", timeout=TIMEOUT,
                      on_timeout=env.gateway.tail)
    assert (row["actor"], row["outcome"]) == ("reload", "done")
    assert row["reason"] == f"changed: {config}"
    assert row["detail"]["diff"] == [
        "group pupils: safe_search strict -> moderate",
        "group staff: blocked_categories added gambling",
    ]
    shown = env.cli("audit")
    assert "reload           config" in shown.stdout
    assert "                          group staff: blocked_categories added gambling" in shown.stdout

    # A broken edit is refused and recorded as refused; the running rules stay.
    replace_file(config, yaml.safe_dump(doc, sort_keys=False) + "colour: blue\n")
    rows = wait_for(lambda: len(r := recorded()) == 2 and r, "the refused edit in the audit log",
                    on_timeout=env.gateway.tail)
    assert rows[1]["outcome"] == "refused"
    assert "colour: unknown key" in rows[1]["detail"]["refused"]
    assert_blocked(env.get(LISTED))
