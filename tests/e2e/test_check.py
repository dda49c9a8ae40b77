"""`schoolgate check` end to end: the real gateway with several kinds of group (decrypted pupils, a
walled garden, an SNI-only BYOD group, staff with relaxed safe search), and the real command.

It passes and prints the expected rows; nothing it sends reaches any server (every host name the
gateway could resolve is logged and mapped to a tripwire that counts connections); it is no event
and no request in the metrics, but a recorded run, a metric and an HTML summary; a wrong token
gets 403 and no check mode; a policy that lets a test site through makes it exit 1 naming the
row; and with no gateway running it exits 2.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from .harness import (
    ROOT,
    TIMEOUT,
    GatewayProcess,
    GatewaySetup,
    OriginPKI,
    run_cli,
    running_gateway,
    sample,
    scrape,
    wait_for_events,
    write_config,
)

pytestmark = pytest.mark.e2e

ILLEGAL = ROOT / "categories" / "illegal"

_RESOLVER = '''"""`schoolgate` in which every host name resolves to 127.0.0.1 and is written to a file, one per
line, before it is: any connection the gateway tried to open to a website shows up there (and
reaches the test's tripwire). Written by tests/e2e/test_check.py."""

import ipaddress
import socket
import sys

from schoolgate import cli

LOG = {log!r}
_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str) and name:
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(name + "\\n")
            host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
'''


class Tripwire:
    """A TCP port on 127.0.0.1 that counts every connection made to it (and closes it)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tripwire", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    tripwire: Tripwire
    lookups: Path

    def check(self, *args: str) -> object:
        return run_cli("check", "--config", str(self.setup.config), *args, timeout=60)

    def looked_up(self) -> list[str]:
        return self.lookups.read_text().split() if self.lookups.exists() else []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("check")
    tripwire = Tripwire()
    port = tripwire.port
    lists = directory / "check-lists"  # the harness writes its own into lists/
    lists.mkdir()
    for name, text in {"education": "edu.test\n", "vpn": "vpn.test\n",
                       "games": "games.test\n"}.items():
        (lists / name).write_text(text, encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["illegal_lists"] = {
            "iwf": {"kind": "iwf", "source": str(ILLEGAL / "iwf-test.txt"), "form": "plain"},
            "ctiru": {"kind": "ctiru", "source": str(ILLEGAL / "ctiru-test.sha256"),
                      "form": "sha256"},
        }
        cats = doc["categories"]
        cats["games"]["lists"] = [str(lists / "games")]
        cats["education"] = {"title": "Education", "lists": [str(lists / "education")]}
        cats["vpn"] = {"title": "VPNs", "lists": [str(lists / "vpn")]}
        doc["circumvention"]["categories"] = ["vpn"]
        groups = doc["groups"]
        groups["infants"] = {"title": "Infants", "subnets": ["10.10.0.0/16"],
                             "walled_garden": True, "allowed_categories": ["education"],
                             "blocked_categories": ["gambling"]}
        groups["byod"] = {"title": "Own devices", "subnets": ["172.17.0.0/16"],
                          "https": "sni-only", "blocked_categories": ["gambling"]}
        groups["selective"] = {"title": "Selective", "subnets": ["172.18.0.0/16"],
                               "https": "selective", "blocked_categories": ["gambling"]}
        groups["staff"].update(safe_search="moderate", youtube="off", circumvention="log")
        # Canaries on the tripwire's port: an allowed one that leaked would connect there.
        doc["check"] = {"canaries": {
            "education": f"https://edu.test:{port}/lesson",
            "outside_garden": f"https://outside.test:{port}/",
            "categories": {"gambling": f"https://blocked.test:{port}/"},
        }}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    lookups = directory / "lookups.txt"
    script = directory / "resolving_gateway.py"
    script.write_text(_RESOLVER.format(log=str(lookups)), encoding="utf-8")
    try:
        with running_gateway("check", setup.config, script=script) as gw:
            yield Env(setup, gw, tripwire, lookups)
    finally:
        tripwire.close()


def rows(stdout: str) -> dict[tuple[str, str], str]:
    """(group, test) -> the whole row, from the table."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^(PASS|FAIL|WARN|SKIP)\s+(\S+)\s+(.+?)\s{2,}", line)
        if m:
            out[(m[2], m[3])] = line
    return out


def test_check_passes_and_nothing_reaches_any_server(env: Env):
    result = env.check()
    # Nothing reached a server: no name was resolved, the tripwire saw no connection.
    assert env.looked_up() == []
    assert env.tripwire.connections == 0
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    expect = {
        # Illegal lists, through TLS for decrypted groups, at the CONNECT for SNI-only ones.
        ("pupils", "IWF list (iwf)"): "block: illegal list iwf",
        ("pupils", "CTIRU list (ctiru)"): "block: illegal list ctiru",
        ("byod", "IWF list (iwf)"): "block at CONNECT: illegal list iwf",
        ("infants", "CTIRU list (ctiru)"): "block: illegal list ctiru",
        ("pupils", "Gambling & betting"): "block: category gambling",
        ("byod", "Gambling & betting"): "block at CONNECT: category gambling",
        ("pupils", "VPNs"): "block: circumvention (vpn)",
        ("pupils", "DNS-over-HTTPS"): "block: DNS-over-HTTPS",
        ("pupils", "Google safe search"): "allow: safe=active",
        ("pupils", "YouTube safe search"): "allow: YouTube-Restrict: Strict",
        ("staff", "Bing safe search"): "allow: adlt=moderate",
        ("pupils", "Search engine without safe mode"): "block: no lockable safe search",
        ("byod", "Search engine without safe mode"): "block at CONNECT: no lockable safe search",
        ("infants", "Outside the walled garden"): "block: walled garden",
        ("pupils", "Education site"): "allow",
        ("byod", "Education site"): "allow: passed through undecrypted",
        # Selective: hosts with URL-level illegal entries and search engines are decrypted,
        # the rest decided by name (the shipped CTIRU test list names its entries' hosts).
        ("selective", "IWF list (iwf)"): "block: illegal list iwf",
        ("selective", "CTIRU list (ctiru)"): "block: illegal list ctiru",
        ("selective", "Gambling & betting"): "block at CONNECT: category gambling",
        ("selective", "Google safe search"): "allow: safe=active",
        ("selective", "YouTube safe search"): "allow: YouTube-Restrict: Strict",
        ("selective", "Education site"): "allow: passed through undecrypted",
    }
    for key, got in expect.items():
        assert key in table, f"no row {key}:\n{result.stdout}"
        assert table[key].startswith("PASS"), table[key]
        assert table[key].endswith(got), table[key]
    # What cannot be enforced without decrypting is a warning that says why, never a pass.
    assert table[("byod", "Google safe search")].startswith("WARN")
    assert table[("selective", "DNS-over-HTTPS")].startswith("WARN")  # on a relayed host
    assert "school's DNS" in result.stdout
    assert table[("staff", "Filter-bypass tools")].startswith("SKIP")
    # Illegal-list test addresses are shown by host only.
    assert "test-image-1.jpg" not in result.stdout and "iwf-test.example.org" in result.stdout
    assert result.stdout.count("PASSED: all") == 1


def test_a_check_is_recorded_measured_and_summarised_but_is_not_browsing(env: Env):
    result = env.check("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert run["failed"] == 0 and run["passed"] > 30 and run["trigger"] == "command"
    assert set(run["groups"]) == {"pupils", "staff", "infants", "byod", "selective"}

    conn = sqlite3.connect(f"file:{env.setup.database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT id, passed, failed, skipped FROM check_runs "
                           "ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    assert row == (run["id"], run["passed"], 0, run["warnings"] + run["skipped"])

    samples = scrape(env.gateway.metrics_url)
    assert sample(samples, "schoolgate_filter_check_failures") == 0
    last = sample(samples, "schoolgate_filter_check_last_run_timestamp_seconds")
    assert abs(last - datetime.fromisoformat(run["ts"]).timestamp()) < 0.01
    assert sample(samples, "schoolgate_filter_check_requests_total", action="block") > 0
    assert sample(samples, "schoolgate_filter_check_requests_total", action="allow") > 0
    # Not browsing: no request of any group counted, and no event stored. A pupil's request
    # made now is the first event (it is written within 50 ms; the checks before it never are).
    counted = sum(v for (name, _), v in samples.items() if name == "schoolgate_requests_total")
    assert counted == 0
    plain = http.client.HTTPConnection("127.0.0.1", env.gateway.proxy_port, timeout=TIMEOUT)
    plain.request("GET", "http://bet365.com/sentinel")
    assert plain.getresponse().status == 403
    plain.close()
    (event,) = wait_for_events(env.setup.database, "1", gateway=env.gateway)
    assert (event["host"], event["group_name"]) == ("bet365.com", "pupils")

    day = datetime.now(ZoneInfo("Europe/London")).date().isoformat()
    summary = Path(run["summary"])
    assert summary == env.setup.data_dir / "reports" / f"filter-check-{day}.html"
    html = summary.read_text(encoding="utf-8")
    assert "PASSED: all" in html and "Test School" in html and "What each test proves" in html
    # The harness's group title has angle brackets: escaped, never markup.
    assert "Pupils &lt;KS3&gt;" in html and "<KS3>" not in html


def test_groups_and_the_html_file_can_be_chosen(env: Env, tmp_path: Path):
    out = tmp_path / "byod.html"
    result = env.check("--group", "byod", "--json", "--html", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert {r["group"] for r in run["results"]} == {"byod"}
    assert out.exists() and "Own devices" in out.read_text(encoding="utf-8")
    assert env.check("--group", "nobody").returncode == 2


def send_raw(port: int, head: str) -> tuple[int, http.client.HTTPMessage]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode("ascii"))
        response = http.client.HTTPResponse(sock, method=head.split()[0])
        response.begin()
        response.read()
        return response.status, response.msg


def test_the_check_token_is_required(env: Env):
    port = env.gateway.proxy_port
    token = (env.setup.data_dir / "check-token").read_text().strip()
    url = f"http://edu.test:{env.tripwire.port}/"
    for header in ("wrong group=staff", f"{token}x group=staff", "group=staff"):
        status, headers = send_raw(port, f"GET {url} HTTP/1.1\r\nHost: edu.test\r\n"
                                   f"X-Schoolgate-Check: {header}\r\n\r\n")
        assert status == 403 and "X-Schoolgate-Check-Action" not in headers
        status, headers = send_raw(port, f"CONNECT edu.test:{env.tripwire.port} HTTP/1.1\r\n"
                                   f"Host: edu.test\r\nX-Schoolgate-Check: {header}\r\n\r\n")
        assert status == 403 and "X-Schoolgate-Check-Action" not in headers
    # The right token: answered by the gateway itself with the verdict.
    status, headers = send_raw(port, f"GET {url} HTTP/1.1\r\nHost: edu.test\r\n"
                               f"X-Schoolgate-Check: {token} group=staff\r\n\r\n")
    assert (status, headers["X-Schoolgate-Check-Action"]) == (200, "allow")
    assert env.tripwire.connections == 0 and env.looked_up() == []
    samples = scrape(env.gateway.metrics_url)
    assert sample(samples, "schoolgate_filter_check_requests_total", action="refused") >= 6


def test_a_policy_that_lets_a_test_site_through_fails_the_check(env: Env):
    # A technician allows the gambling test site for pupils: the running gateway now lets it
    # through, and the check must say so, by group and test.
    allowed = run_cli("allow", "blocked.test", "--group", "pupils", "--reason", "testing",
                      "--by", "e2e", "--config", str(env.setup.config))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    try:
        result = env.check("--group", "pupils", "--group", "byod")
        assert result.returncode == 1, result.stdout + result.stderr
        table = rows(result.stdout)
        failing = table[("pupils", "Gambling & betting")]
        assert failing.startswith("FAIL") and f"blocked.test:{env.tripwire.port}/" in failing
        assert failing.endswith("allow: local allow entry")
        assert table[("byod", "Gambling & betting")].startswith("PASS")  # only pupils were changed
        assert "FAILED: 1 of" in result.stdout
        samples = scrape(env.gateway.metrics_url)
        assert sample(samples, "schoolgate_filter_check_failures") == 1
        assert env.tripwire.connections == 0 and env.looked_up() == []
    finally:
        undone = run_cli("unallow", "blocked.test", "--group", "pupils", "--by", "e2e",
                         "--config", str(env.setup.config))
        assert undone.returncode == 0, undone.stdout + undone.stderr


def test_without_a_running_gateway_the_check_exits_2(tmp_path: Path, pki: OriginPKI):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    result = run_cli("check", "--config", str(setup.config))
    assert result.returncode == 2
    assert "no running gateway found" in result.stderr and "listen-address" in result.stderr


def test_the_example_config_documents_the_check_section():
    example = yaml.safe_load((ROOT / "config" / "schoolgate.yaml").read_text(encoding="utf-8"))
    assert "check" not in example  # commented out: the defaults need no configuration
