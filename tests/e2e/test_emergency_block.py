"""Emergency blocks end to end: `schoolgate block HOST|URL --all --reason TEXT --by NAME` takes
effect for every user of the running gateway within 5 seconds, without a restart (same process),
over HTTP and inside intercepted HTTPS; the change is in the audit log with who, when and why
(`schoolgate audit`). `unblock` undoes it the same way; a URL prefix blocks only its pages; a
block for one group leaves the others alone; a block with `--until` lapses by itself.

Clients stand in for machines in different groups by their loopback address (127.0.0.1 pupils,
127.0.0.2 staff, 127.0.0.3 sixth form, 127.0.0.4 a BYOD device whose HTTPS is never decrypted,
so only its CONNECT and handshake can be refused). Every `*.test` name resolves to the test origin
(`policy_gateway.py`), so the pages are really fetched until the block is in force.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .harness import (
    ORIGIN_NAMES,
    GatewayProcess,
    GatewaySetup,
    make_pki,
    read_events,
    run_cli,
    wait_for,
    wait_for_events,
    write_config,
)
from .policy_harness import (
    Browser,
    RecordingOrigin,
    only_trusting,
    sources_available,
    start_gateway,
)

pytestmark = pytest.mark.e2e

PUPILS, STAFF, SIXTH, BYOD = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
EVERYONE = (PUPILS, STAFF, SIXTH, BYOD)

#: The bound the feature promises: in force for everyone this long after the command is given.
EFFECT_WITHIN = 5.0


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin

    def browser(self, source: str) -> Browser:
        assert self.gateway.proxy_port is not None
        tls = only_trusting(self.setup.schoolgate_ca)
        if source == BYOD:
            # Its HTTPS passes through: it meets the origin's own certificate.
            tls = only_trusting(self.origin.ca_cert)
        return Browser(self.gateway.proxy_port, tls, source=source)

    def status(self, source: str, scheme: str, host: str, path: str = "/hello") -> int:
        """The status `source` gets for the page now (a fresh marker each time)."""
        reply = self.browser(source).get(self.origin.url(scheme, host, f"{path}?m={marker()}"))
        assert reply.status in (200, 403), reply
        return reply.status

    def cli(self, *args: str):
        return run_cli(*args, "--config", str(self.setup.config))

    def audit(self) -> list[dict]:
        done = self.cli("audit", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def assert_same_process(self, pid: int) -> None:
        assert self.gateway.pid == pid and self.gateway.returncode is None, self.gateway.tail()
        assert int((self.setup.data_dir / "schoolgate.pid").read_text()) == pid


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(*EVERYONE)
    directory = tmp_path_factory.mktemp("emergency")
    names = [f"{n}.test" for n in ("viral", "news", "wiki", "img", "lapse")]
    pki = make_pki(directory / "pki", (*ORIGIN_NAMES, *names))
    origin = RecordingOrigin(pki)

    def patch(doc: dict) -> None:
        doc["groups"] = {
            "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"]},
            "staff": {"subnets": [f"{STAFF}/32"], "blocked_categories": [],
                      # A standing allow: an emergency block for everyone must still win.
                      "allow": [{"target": "viral.test", "reason": "staff research"}]},
            "sixth": {"subnets": [f"{SIXTH}/32"], "blocked_categories": []},
            "byod": {"subnets": [f"{BYOD}/32"], "blocked_categories": [], "https": "sni-only"},
        }

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    try:
        with start_gateway("emergency", setup.config) as gw:
            yield Env(setup, gw, origin)
    finally:
        origin.close()


def wait_until_everyone(env: Env, status: int, host: str, deadline: float,
                        sources=EVERYONE, path: str = "/hello") -> None:
    """Poll until every client gets `status` over HTTP and HTTPS, failing at `deadline`
    (a time.monotonic() value)."""
    def done() -> bool:
        return all(env.status(s, scheme, host, path) == status
                   for s in sources for scheme in ("http", "https"))

    wait_for(done, f"{host}{path} to answer {status} for {', '.join(sources)}",
             timeout=max(deadline - time.monotonic(), 0.0), on_timeout=env.gateway.tail)


def test_emergency_block_for_all_takes_effect_for_everyone_within_5_seconds(env):
    host = "viral.test"
    pid = env.gateway.pid
    for source in EVERYONE:
        for scheme in ("http", "https"):
            assert env.status(source, scheme, host) == 200

    reason = "Harmful 'challenge' video circulating; DSL request, ref #4411"
    started_utc = datetime.now(UTC)
    given = time.monotonic()
    done = env.cli("block", host, "--all", "--reason", reason, "--by", "J. Okafor (DSL)")
    assert done.returncode == 0, done.stderr
    assert f"blocked {host} for all groups" in done.stdout
    wait_until_everyone(env, 403, host, deadline=given + EFFECT_WITHIN)
    env.assert_same_process(pid)

    # The block page and the events say it was the local block, and why.
    m = marker()
    reply = env.browser(STAFF).get(env.origin.url("https", host, f"/hello?m={m}"))
    assert reply.status == 403 and f"<dd>{html.escape(reason)}</dd>" in reply.text
    (row,) = wait_for_events(env.setup.database, "url LIKE ?", [f"%m={m}"], gateway=env.gateway)
    assert (row["action"], row["reason"], row["group_name"]) == ("block", "override", "staff")
    assert row["matched_rule"] == f"group staff blocks {host} (local override: {reason})"
    assert env.origin.requests_with(m) == []

    # Who, when and why.
    (entry,) = [a for a in env.audit() if a["target"] == host]
    when = datetime.strptime(entry.pop("ts"), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert started_utc - timedelta(seconds=1) <= when <= datetime.now(UTC)
    assert entry.pop("id") >= 1
    assert entry == {"actor": "J. Okafor (DSL)", "action": "block", "target": host,
                     "scope": "all groups", "reason": reason, "outcome": "done",
                     "detail": {"host": host, "path": None, "until": None}}
    text = env.cli("audit")
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^\S+Z  J\. Okafor \(DSL\) +block {host} for all groups$", text.stdout,
                     re.MULTILINE), text.stdout
    assert f"reason: {reason}" in text.stdout


def test_unblock_lifts_it_for_everyone_and_is_audited(env):
    host = "news.test"
    pid = env.gateway.pid
    done = env.cli("block", host, "--all", "--reason", "rumour page", "--by", "it-tech")
    assert done.returncode == 0, done.stderr
    wait_until_everyone(env, 403, host, deadline=time.monotonic() + EFFECT_WITHIN)

    given = time.monotonic()
    done = env.cli("unblock", host, "--all", "--reason", "page taken down", "--by", "it-tech")
    assert done.returncode == 0, done.stderr
    wait_until_everyone(env, 200, host, deadline=given + EFFECT_WITHIN)
    env.assert_same_process(pid)

    assert [(a["actor"], a["action"], a["scope"], a["reason"]) for a in env.audit()
            if a["target"] == host] == [("it-tech", "block", "all groups", "rumour page"),
                                        ("it-tech", "unblock", "all groups", "page taken down")]


def test_url_prefix_block_for_one_group_leaves_other_pages_and_groups_alone(env):
    host = "wiki.test"
    done = env.cli("block", f"https://{host}/Challenge/", "--group", "pupils",
                   "--reason", "article vandalised", "--by", "it-tech")
    assert done.returncode == 0, done.stderr
    wait_until_everyone(env, 403, host, deadline=time.monotonic() + EFFECT_WITHIN,
                        sources=(PUPILS,), path="/Challenge/today")

    assert env.status(PUPILS, "https", host, "/Other_page") == 200
    assert env.status(STAFF, "https", host, "/Challenge/today") == 200
    assert env.status(SIXTH, "http", host, "/Challenge/today") == 200
    (entry,) = [a for a in env.audit() if a["target"] == f"https://{host}/Challenge/"]
    assert (entry["scope"], entry["detail"]["path"]) == ("pupils", "/Challenge/")


URL_BLOCKS = [
    # (target given to `schoolgate block`, request path) -> blocked? A URL block covers its page
    # however the address is written (the request is compared in its canonical form).
    ("https://img.test/upload/abc123.jpg", "/upload/abc123.jpg", True),  # the README's example
    ("https://img.test/upload/abc123.jpg", "/upload/abc123.jpg?w=200", True),  # a prefix
    ("https://img.test/upload/abc123.jpg", "/upload/abc%31%32%33.jpg", True),  # escaped digits
    ("https://img.test/upload/abc123.jpg", "/upload/./abc123.jpg", True),  # dot segment
    ("https://img.test/upload/abc123.jpg", "/upload/abc124.jpg", False),  # another image
    # A target copied with escapes in it, as a report or an address bar may show it.
    ("https://img.test/~john/pic%2Ejpg", "/~john/pic.jpg", True),
    ("https://img.test/~john/pic%2Ejpg", "/%7Ejohn/pic%2Ejpg", True),
]


def test_url_block_covers_its_page_however_the_address_is_written(env):
    for target in dict.fromkeys(t for t, _, _ in URL_BLOCKS):
        done = env.cli("block", target, "--all", "--reason", "reported image", "--by", "dsl")
        assert done.returncode == 0, done.stderr
        assert "in force in the running gateway" in done.stdout
    wait_until_everyone(env, 403, "img.test", deadline=time.monotonic() + EFFECT_WITHIN,
                        sources=(PUPILS,), path="/upload/abc123.jpg")

    got = []
    for _, path, _ in URL_BLOCKS:
        m = marker()
        sep = "&" if "?" in path else "?"
        reply = env.browser(STAFF).get(env.origin.url("https", "img.test", f"{path}{sep}m={m}"))
        got.append(reply.status == 403)
        assert (reply.status == 403) == (env.origin.requests_with(m) == []), path
    assert got == [blocked for _, _, blocked in URL_BLOCKS]


def test_block_with_until_lapses_by_itself(env):
    """`--until` in school time: the gateway reloads when the entry lapses, with no command."""
    host = "lapse.test"
    # Long enough to see the block in force first, even on a loaded machine.
    until = datetime.now(ZoneInfo("Europe/London")) + timedelta(seconds=6)
    done = env.cli("block", host, "--all", "--reason", "exam in progress", "--by", "exams-officer",
                   "--until", until.replace(tzinfo=None).isoformat(timespec="seconds"))
    assert done.returncode == 0, done.stderr
    wait_until_everyone(env, 403, host, deadline=time.monotonic() + EFFECT_WITHIN,
                        sources=(PUPILS, STAFF))
    # Lapses at `until` (whole seconds), then the watcher notices within its 2 s poll.
    wait_until_everyone(env, 200, host, deadline=time.monotonic() + 6 + EFFECT_WITHIN,
                        sources=(PUPILS, STAFF))
    (entry,) = [a for a in env.audit() if a["target"] == host]
    assert entry["detail"]["until"] is not None
    assert read_events(env.setup.database, "host = ? AND reason = 'override'", [host])
