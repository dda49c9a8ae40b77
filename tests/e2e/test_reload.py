"""Hot reload end to end: the running gateway picks up a changed list file by itself, and a
changed config on SIGHUP or `schoolgate reload`, without a restart (same process). A broken edit
keeps the running rules, and the log and the command name the file and line; fixing it and
reloading applies it. `schoolgate reload` with no gateway running says so and exits 1.

Each test has its own gateway (they change its files). Every `*.test` name resolves to the origin
in these gateways (`resolving_script`), so an allowed `.test` page really arrives.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .harness import (
    GAMBLING_TITLE,
    GAMES_TITLE,
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    Origin,
    Reply,
    config_line,
    replace_file,
    resolving_script,
    run_cli,
    running_gateway,
    sample,
    scrape,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

ILLEGAL_DOMAIN = "iwf-dom.test"
NEW_DOMAIN = "newly-bad.test"


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Running:
    setup: GatewaySetup
    gateway: GatewayProcess
    client: GatewayClient
    origin: Origin

    @property
    def lists(self) -> Path:
        return self.setup.config.parent / "lists"

    @property
    def pidfile(self) -> Path:
        return self.setup.data_dir / "schoolgate.pid"

    def status(self) -> dict | None:
        """The last reload's outcome, as the gateway wrote it (None before the first reload)."""
        path = self.setup.data_dir / "reload-status.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def get(self, host: str, scheme: str = "http") -> Reply:
        return self.client.get(self.origin.url(scheme, f"/pages/reload.html?m={marker()}",
                                               host=host))

    def assert_same_process(self) -> None:
        assert self.gateway.returncode is None, self.gateway.tail()
        assert int(self.pidfile.read_text()) == self.gateway.pid

    def reload(self) -> subprocess.CompletedProcess:
        return run_cli("reload", "--config", str(self.setup.config), "--timeout", str(TIMEOUT))


@pytest.fixture
def running(tmp_path, pki, origin) -> Iterator[Running]:
    """A gateway with the harness config plus an IWF-kind illegal list (`iwf-dom.test`)."""
    iwf = tmp_path / "iwf.txt"
    iwf.write_text(f"{ILLEGAL_DOMAIN}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["illegal_lists"] = {"iwf": {"kind": "iwf", "source": str(iwf), "form": "plain"}}

    setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=patch)
    with running_gateway("reload", setup.config, script=resolving_script(tmp_path)) as gw:
        yield Running(setup, gw, GatewayClient(gw.proxy_port, setup.schoolgate_ca), origin)


def wait_for_status(running: Running, generation: int) -> dict:
    """The reload outcome once it is recorded for `generation` (the gateway swaps the rules, then
    logs, then writes the file)."""
    return wait_for(lambda: (s := running.status()) and s["generation"] >= generation and s,
                    f"reload-status.json for generation {generation}",
                    on_timeout=running.gateway.tail)


def assert_allowed(running: Running, reply: Reply) -> None:
    assert reply.status == 200, reply.text[:500]
    assert reply.body == running.origin.body


def assert_blocked(reply: Reply, title: str) -> None:
    assert reply.status == 403, reply
    assert "This page is blocked" in reply.text
    assert f"<dd>{html.escape(title)}</dd>" in reply.text


def test_list_file_change_applies_without_restart(running):
    gambling = running.lists / "gambling"
    original = gambling.read_text(encoding="utf-8")
    assert_allowed(running, running.get(NEW_DOMAIN))

    replace_file(gambling, original + f"{NEW_DOMAIN}\n")
    reply = wait_for(lambda: (r := running.get(NEW_DOMAIN)).status != 200 and r,
                     f"{NEW_DOMAIN} to be blocked after it was added to {gambling}",
                     on_timeout=running.gateway.tail)
    assert_blocked(reply, GAMBLING_TITLE)
    running.assert_same_process()
    running.gateway.wait_for_output(
        rf"reloaded \(changed: {re.escape(str(gambling))}\) in [\d.]+s: generation 2$"
    )
    status = wait_for_status(running, 2)
    assert (status["ok"], status["problems"]) == (True, [])

    replace_file(gambling, original)
    reply = wait_for(lambda: (r := running.get(NEW_DOMAIN)).status == 200 and r,
                     f"{NEW_DOMAIN} to be allowed again after its removal",
                     on_timeout=running.gateway.tail)
    assert_allowed(running, reply)
    running.assert_same_process()
    assert_blocked(running.get("blocked.test"), GAMBLING_TITLE)  # the rest of the list stays
    status = wait_for_status(running, 3)
    assert (status["ok"], status["problems"]) == (True, [])
    samples = scrape(running.gateway.metrics_url)
    assert sample(samples, "schoolgate_reloads_total", outcome="success") == 2
    assert sample(samples, "schoolgate_reloads_total", outcome="failure") == 0


def test_broken_config_keeps_the_running_rules_until_it_is_fixed(running):
    config = running.setup.config
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    # The intended change: pupils no longer block games (`localhost`, the origin).
    doc["groups"]["pupils"]["blocked_categories"] = ["gambling"]
    fixed = yaml.safe_dump(doc, sort_keys=False)
    broken = fixed + "colour: blue\n"  # ... saved with a mistake in it
    assert_blocked(running.get("localhost"), GAMES_TITLE)

    replace_file(config, broken)
    line = config_line(config, "colour: blue")
    problem = f"{config}:{line}: colour: unknown key"
    # The file watcher notices, refuses the edit and says where the mistake is.
    running.gateway.wait_for_output(
        r"reload \(changed: .*\) refused, keeping the running rules: " + re.escape(problem)
    )
    # ... and records the outcome (just after logging it).
    status = wait_for(running.status, "reload-status.json", on_timeout=running.gateway.tail)
    assert status["ok"] is False
    assert any(p.startswith(problem) for p in status["problems"]), status

    done = running.reload()
    assert done.returncode == 2, done
    assert problem in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""

    # Decisions are those of the running rules, not of the broken file.
    assert_blocked(running.get("localhost"), GAMES_TITLE)
    assert_blocked(running.get("blocked.test"), GAMBLING_TITLE)
    assert_allowed(running, running.get("fine.test"))
    assert running.get(ILLEGAL_DOMAIN).status == 403
    running.assert_same_process()

    replace_file(config, fixed)
    done = running.reload()
    assert done.returncode == 0, done
    assert re.fullmatch(r"reloaded: generation \d+ in [\d.]+s\n", done.stdout), done.stdout
    # `schoolgate reload` returns once the new rules are in force: no waiting needed.
    assert_allowed(running, running.get("localhost"))
    assert_blocked(running.get("blocked.test"), GAMBLING_TITLE)
    assert running.get(ILLEGAL_DOMAIN).status == 403
    running.assert_same_process()
    status = running.status()
    assert status is not None and status["ok"] is True and status["problems"] == []


def test_reload_that_would_allow_an_illegal_entry_is_refused(running):
    config = running.setup.config
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    target = "www." + ILLEGAL_DOMAIN
    doc["groups"]["pupils"]["blocked_categories"] = ["gambling"]
    doc["groups"]["pupils"]["allow"] = [{"target": target, "reason": "A teacher asked"}]
    replace_file(config, yaml.safe_dump(doc, sort_keys=False))
    line = config_line(config, f"target: {target}")

    done = running.reload()

    assert done.returncode == 2, done
    assert (f"schoolgate: reload refused: {config}:{line}: groups.pupils.allow[0]: refused: "
            f"'{target}' is on the illegal-content list 'iwf'") in done.stderr, done.stderr
    assert "the running rules stay in force" in done.stderr
    # Nothing but what the administrator typed: not the entry that matched.
    assert ILLEGAL_DOMAIN not in done.stderr.replace(target, "")
    assert running.get(target).status == 403
    assert_blocked(running.get("localhost"), GAMES_TITLE)  # the whole edit was refused
    running.assert_same_process()


def test_sighup_and_the_reload_command_reload_the_running_gateway(running):
    before = running.status()
    generation = before["generation"] if before else 1

    os.kill(running.gateway.pid, signal.SIGHUP)
    status = wait_for_status(running, generation + 1)
    assert (status["ok"], status["why"], status["generation"]) == (True, "SIGHUP", generation + 1)
    running.gateway.wait_for_output(rf"reloaded \(SIGHUP\) in [\d.]+s: generation {generation + 1}$")
    assert_blocked(running.get("blocked.test"), GAMBLING_TITLE)

    done = running.reload()
    assert done.returncode == 0, done
    assert done.stdout.startswith(f"reloaded: generation {generation + 2} in "), done.stdout
    status = running.status()
    assert status is not None and status["generation"] == generation + 2
    running.assert_same_process()

    # Once the gateway has stopped, there is nothing to reload.
    assert running.gateway.stop() == 0
    assert not running.pidfile.exists()
    done = running.reload()
    assert done.returncode == 1, done
    assert "no running gateway found" in done.stderr, done.stderr


@pytest.mark.parametrize("pidfile", ["missing", "garbage", "dead"])
def test_reload_without_a_running_gateway_exits_1(tmp_path, pki, pidfile):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    path = setup.data_dir / "schoolgate.pid"
    if pidfile != "missing":
        setup.data_dir.mkdir(parents=True)
        # Above any possible pid (pid_max is at most 2**22): certainly no such process.
        path.write_text("not a pid\n" if pidfile == "garbage" else f"{2**22 + 1}\n")

    done = run_cli("reload", "--config", str(setup.config), "--timeout", "5")

    assert done.returncode == 1, done
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (message,) = done.stderr.splitlines()
    if pidfile == "dead":
        assert message == (f"schoolgate: the gateway (pid {2**22 + 1}) is not running; "
                           f"remove {path}")
    else:
        assert message == (f"schoolgate: no running gateway found ({path} is missing or "
                           f"unreadable)")
