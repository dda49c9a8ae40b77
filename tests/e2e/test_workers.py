"""`schoolgate run --workers N` through the real gateway: one port bound once (a second gateway on
it fails with a clear message), connections served by every worker, and everything that must be
one thing for the whole gateway (events, metrics, reloads and emergency blocks, the pushed IP
map, problem-report limits) the same whichever worker a request lands on; a killed worker comes
back and is counted, one that cannot start stops the gateway, and SIGTERM under load loses no
event.

Which worker answered is read from /proc (the process holding the gateway's end of the
connection), so nothing the gateway sends to a pupil says which worker it is.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from .harness import (
    ROOT,
    TIMEOUT,
    GatewayProcess,
    GatewaySetup,
    Origin,
    Served,
    clean_env,
    read_events,
    replace_file,
    request_on_new_connection,
    resolving_script,
    run_cli,
    running_gateway,
    sample,
    schoolgate_command,
    scrape,
    wait_for,
    wait_for_events,
    worker_pids,
    write_config,
)
from .test_problem_reports import page_forms
from .test_search_alerts import Inbox

pytestmark = pytest.mark.e2e

WORKERS = 3
"""More than one, whatever the machine's cores: each test proves something across workers."""
TOKEN = "e2e-workers-push-token-0123456789"
PUSH_RE = r"IP map push endpoint on 127\.0\.0\.1:(\d+)"


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: Origin
    push_port: int

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port

    def pids(self) -> dict[int, int]:
        return worker_pids(self.gateway)

    def get(self, url: str, **kwargs) -> Served:
        return request_on_new_connection(self.port, self.pids().values(), "GET", url, **kwargs)

    def spread(self, url_for, at_least: int = 2 * WORKERS, limit: int = 400,
               headers: dict[str, str] | None = None) -> list[Served]:
        """Requests on fresh connections (`url_for(i)`) until every worker has answered at
        least one and `at_least` were sent; fails if some worker never answers."""
        served: list[Served] = []
        pids = set(self.pids().values())
        assert len(pids) == WORKERS, self.gateway.tail()
        while len(served) < at_least or {s.pid for s in served} < pids:
            assert len(served) < limit, f"workers answering: {[s.pid for s in served]} of {pids}"
            served.append(self.get(url_for(len(served)), headers=headers))
        return served

    def cli(self, *args: str):
        return run_cli(*args, "--config", str(self.setup.config))


@pytest.fixture(scope="module")
def env(tmp_path_factory, pki, origin) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("workers")
    (directory / "push-token").write_text(TOKEN + "\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["identity"] = {"push": {"listen": {"host": "127.0.0.1", "port": 0},
                                    "token_file": str(directory / "push-token")}}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    with running_gateway("workers", setup.config, script=resolving_script(directory),
                         workers=WORKERS) as gw:
        push_port = int(gw.wait_for_output(PUSH_RE)[1])
        wait_for(lambda: len(worker_pids(gw)) == WORKERS, "every worker's start in the log",
                 on_timeout=gw.tail)
        yield Env(setup, gw, origin, push_port)


# -- one socket, bound once ---------------------------------------------------------------------


def test_a_second_gateway_on_the_same_port_fails_with_a_clear_message(env, tmp_path, pki):
    other = write_config(tmp_path / "second", upstream_ca=pki.ca_cert)

    done = run_cli("run", "--config", str(other.config), "--listen", f"127.0.0.1:{env.port}",
                   "--metrics", "127.0.0.1:0")

    assert done.returncode == 1, done
    # The holder named is the supervisor (its workers share the socket), by the name the
    # system gives it: the `python` running the harness's resolving script.
    holder = Path(f"/proc/{env.gateway.pid}/comm").read_text(encoding="utf-8").strip()
    assert done.stderr.strip().splitlines()[-1] == (
        f"schoolgate: cannot listen on 127.0.0.1:{env.port} for the proxy: address already in "
        f"use by {holder} (pid {env.gateway.pid}). Stop that program, or choose another port: "
        f"listen.port in {other.config}, or --listen HOST:PORT."), done.stderr
    assert "--mode" not in done.stderr and "Traceback" not in done.stderr
    assert "proxy listening" not in done.stdout
    # It stopped before starting anything: no worker, no pid file, no store in its data folder.
    assert not (other.data_dir / "schoolgate.pid").exists()
    assert not other.database.exists()
    # And the running gateway is untouched.
    assert env.get("http://blocked.test/").status == 403


def test_the_banner_the_pid_file_and_the_metrics_name_the_supervisor_and_its_workers(env):
    gw = env.gateway
    assert re.search(rf"^\s*workers\s+{WORKERS} processes sharing the port$", gw.output("stdout"),
                     re.M), gw.tail()
    assert gw.output("stdout").count("is filtering.") == 1
    assert int((env.setup.data_dir / "schoolgate.pid").read_text()) == gw.pid
    samples = scrape(gw.metrics_url)
    assert sample(samples, "schoolgate_workers_up") == WORKERS
    # One build info and one process series: the supervisor's, not one per worker.
    assert sum(1 for k in samples if k[0] == "schoolgate_build_info") == 1
    assert sum(1 for k in samples if k[0] == "process_start_time_seconds") == 1


def test_process_metrics_add_up_the_supervisor_and_every_worker(env):
    def cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # Read before the scrape: CPU time only grows, so the scrape must be at least this.
    used = cpu(env.gateway.pid) + sum(cpu(pid) for pid in env.pids().values())
    fds = sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in env.pids().values())
    samples = scrape(env.gateway.metrics_url)
    assert sample(samples, "process_cpu_seconds_total") >= used - 1e-6  # float sums
    assert sample(samples, "process_open_fds") > fds


def test_every_worker_serves_and_events_and_metrics_add_up(env):
    m = marker()
    before = scrape(env.gateway.metrics_url)

    served = env.spread(lambda i: f"http://blocked.test/?m={m}&i={i}")

    assert all(s.status == 403 for s in served)
    references = {s.headers["X-Schoolgate-Reference"] for s in served}
    rows = wait_for_events(env.setup.database, "url LIKE ?", [f"%m={m}&%"], count=len(served),
                           gateway=env.gateway)
    assert {r["reference"] for r in rows} == references
    after = scrape(env.gateway.metrics_url)
    labels = {"action": "block", "category": "gambling", "group": "pupils"}
    assert (sample(after, "schoolgate_requests_total", **labels)
            - sample(before, "schoolgate_requests_total", **labels)) == len(served)
    assert (sample(after, "schoolgate_blocks_total", reason="category")
            - sample(before, "schoolgate_blocks_total", reason="category")) == len(served)

    def written() -> bool:
        return (sample(scrape(env.gateway.metrics_url), "schoolgate_events_written_total")
                - sample(before, "schoolgate_events_written_total")) >= len(served)

    wait_for(written, "events_written to count every worker's events", on_timeout=env.gateway.tail)


# -- the same rules and map everywhere ----------------------------------------------------------


def test_an_emergency_block_is_in_force_in_every_worker_when_the_command_returns(env):
    target = f"emergency-{marker()[:8]}.test"
    m = marker()
    # Open everywhere first (it resolves to the origin).
    assert {s.status for s in env.spread(lambda i: f"http://{target}:{env.origin.http_port}"
                                         f"/hello?m={m}&i={i}")} == {200}

    started = time.monotonic()
    done = env.cli("block", target, "--all", "--reason", "e2e: emergency", "--by", "e2e test")
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    assert "in force in the running gateway" in done.stdout, done.stdout
    assert took < 5.0, f"`schoolgate block` took {took:.1f}s to confirm"
    # Confirmed means every worker: blocked on every one from the first request on.
    served = env.spread(lambda i: f"http://{target}:{env.origin.http_port}/hello?m={m}&b={i}")
    assert {s.status for s in served} == {403}, [(s.pid, s.status) for s in served]
    env.cli("allow", target, "--all", "--reason", "e2e: undo", "--by", "e2e test")


def test_a_list_file_edit_reaches_every_worker_within_5_seconds(env):
    host = f"listed-{marker()[:8]}.test"
    m = marker()
    url = f"http://{host}:{env.origin.http_port}/hello?m={m}"
    assert {s.status for s in env.spread(lambda i: f"{url}&a={i}")} == {200}
    gambling = env.setup.config.parent / "lists" / "gambling"
    before = gambling.read_text(encoding="utf-8")
    try:
        replace_file(gambling, before + f"{host}\n")
        edited = time.monotonic()
        # Each worker notices by itself (every 2 s): all of them block it within 5 s.
        wait_for(lambda: {s.status for s in env.spread(lambda i: f"{url}&b={i}")} == {403},
                 f"every worker to block {host}", timeout=5.0, on_timeout=env.gateway.tail)
        assert time.monotonic() - edited < 5.0
    finally:
        replace_file(gambling, before)


def test_a_pushed_ip_map_entry_is_seen_by_every_worker(env):
    user = f"kim{marker()[:6]}"
    body = f'{{"ip": "127.0.0.1", "user": "{user}", "ttl": 600}}'.encode()
    conn = http.client.HTTPConnection("127.0.0.1", env.push_port, timeout=10)
    conn.request("POST", "/v1/ip-map", body=body,
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200, reply.read()
    conn.close()
    m = marker()
    try:
        # Answered 200 once every worker had it: the very next requests are that user's.
        served = env.spread(lambda i: f"http://blocked.test/?m={m}&i={i}")
        rows = wait_for_events(env.setup.database, "url LIKE ?", [f"%m={m}&%"],
                               count=len(served), gateway=env.gateway)
        assert {r["user"] for r in rows} == {user}
    finally:
        conn = http.client.HTTPConnection("127.0.0.1", env.push_port, timeout=10)
        conn.request("DELETE", "/v1/ip-map", body=b'{"ip": "127.0.0.1"}',
                     headers={"Authorization": f"Bearer {TOKEN}",
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()


def test_the_problem_report_limit_holds_across_workers(env):
    # The "this should be blocked" form, as a pupil gets it from any page's footer link.
    page = env.get("http://news-site.test/.well-known/schoolgate/report-site")
    assert page.status == 200, page.body
    (form,) = page_forms(page.body.decode())
    sent: list[Served] = []
    for i in range(11):
        body = urllib.parse.urlencode({**form["fields"], "url": f"https://r{i}.test/{marker()}",
                                       "reason": f"e2e report {i}"}).encode()
        sent.append(request_on_new_connection(
            env.port, env.pids().values(), "POST",
            "http://news-site.test/.well-known/schoolgate/report-site", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Sec-Fetch-Site": "same-origin"}))
    assert [s.status for s in sent] == [200] * 10 + [429], [(s.status, s.body[:80]) for s in sent]
    # Not one worker's count: the ten accepted came through more than one worker.
    assert len({s.pid for s in sent[:10]}) > 1, [s.pid for s in sent]
    assert int(sent[-1].headers["Retry-After"]) > 0


def test_a_changed_password_file_ends_cached_logins_in_every_worker(tmp_path, pki, origin):
    def sha(password: str) -> str:
        return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"amy:{sha('first-pass')}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["identity"] = {"htpasswd": str(htpasswd), "login_required": ["pupils"]}

    setup = write_config(tmp_path, upstream_ca=pki.ca_cert, patch=patch)
    with running_gateway("logins", setup.config, workers=WORKERS) as gw:
        wait_for(lambda: len(worker_pids(gw)) == WORKERS, "every worker", on_timeout=gw.tail)
        env = Env(setup, gw, origin, 0)

        def everywhere(password: str) -> set[int]:
            token = base64.b64encode(f"amy:{password}".encode()).decode()
            return {s.status for s in env.spread(
                lambda i: f"http://blocked.test/?i={i}",
                headers={"Proxy-Authorization": f"Basic {token}"})}

        # Logged in (and cached) in every worker: blocked.test's block page, not a 407.
        assert everywhere("first-pass") == {403}
        replace_file(htpasswd, f"amy:{sha('second-pass')}\n")
        wait_for(lambda: everywhere("first-pass") == {407}, "the old password refused by every "
                 "worker", timeout=5.0, on_timeout=gw.tail)
        assert everywhere("second-pass") == {403}
        assert everywhere("not-her-password") == {407}


def test_schoolgate_check_passes_against_a_gateway_of_workers(env):
    done = env.cli("check", "--html", str(env.setup.data_dir / "check.html"))
    assert done.returncode == 0, done.stdout + done.stderr


# -- processes ----------------------------------------------------------------------------------


def test_a_killed_worker_is_started_again_and_counted(env):
    before = sample(scrape(env.gateway.metrics_url), "schoolgate_worker_restarts_total")
    pids = env.pids()
    victim = pids[1]

    os.kill(victim, signal.SIGKILL)

    def back() -> dict[int, int] | None:
        now = env.pids()
        return now if now.get(1) not in (None, victim) else None

    now = wait_for(back, "worker 1 to be started again", timeout=10, on_timeout=env.gateway.tail)
    assert now[0] == pids[0] and now[2] == pids[2]  # the others went on serving
    env.gateway.wait_for_output(rf"worker 1 \(pid {victim}\) died \(status -9\); starting it "
                                "again")
    samples = scrape(env.gateway.metrics_url)
    assert sample(samples, "schoolgate_worker_restarts_total") == before + 1
    wait_for(lambda: sample(scrape(env.gateway.metrics_url), "schoolgate_workers_up") == WORKERS,
             "workers_up back to every worker")
    # The new worker serves, with the same rules and events.
    m = marker()
    served = env.spread(lambda i: f"http://blocked.test/?m={m}&i={i}")
    assert now[1] in {s.pid for s in served}
    wait_for_events(env.setup.database, "url LIKE ?", [f"%m={m}&%"], count=len(served),
                    gateway=env.gateway)


def test_a_worker_that_keeps_failing_to_start_stops_the_gateway(tmp_path, pki):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    gw = GatewayProcess.run("failing restarts", setup.config, workers=2)
    try:
        wait_for(lambda: len(worker_pids(gw)) == 2, "both workers", on_timeout=gw.tail)
        # Break the config, so a worker started now cannot load it; the running ones refuse
        # the edit and keep their rules.
        text = setup.config.read_text(encoding="utf-8")
        replace_file(setup.config, text.replace("default_group: pupils", "default_group: nobody"))
        started = time.monotonic()
        os.kill(worker_pids(gw)[1], signal.SIGKILL)
        status = gw.proc.wait(60)
        took = time.monotonic() - started
    finally:
        gw.kill()
    assert status == 2, gw.tail()
    out = gw.output()
    # Backing off, not a fast loop: 0.5, 1, 2 and 4 seconds between the five failed starts.
    for delay in ("0.5", "1.0", "2.0", "4.0"):
        assert f"starting it again in {delay}s" in out, gw.tail()
    assert took >= 0.5 + 1 + 2 + 4
    assert out.count("default_group") >= 5, gw.tail()  # the worker's own error, each time
    assert "worker 1 exited with status 2 before it accepted connections (5 time(s)" in out
    assert not (setup.data_dir / "schoolgate.pid").exists()


def test_sigterm_under_load_loses_no_answered_request(tmp_path, pki):
    # A long flush interval: events wait in the workers' relays and the writer's queue, so a
    # SIGTERM mid-load finds plenty in flight.
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert,
                         events={"flush_interval": 30, "batch_size": 100_000})
    gw = GatewayProcess.run("sigterm under load", setup.config, workers=WORKERS)
    m = marker()
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                s = request_on_new_connection(gw.proxy_port, [], "GET",
                                              f"http://blocked.test/?m={m}&t={n}&i={i}")
            except (OSError, http.client.HTTPException):
                continue  # refused or cut off once the gateway stops: not answered
            if s.status == 403:
                with lock:
                    answered.append(s.headers["X-Schoolgate-Reference"])

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(8)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(answered) >= 300, "300 answered requests", on_timeout=gw.tail)
        gw.proc.send_signal(signal.SIGTERM)  # mid-load: the threads keep sending
        status = gw.proc.wait(TIMEOUT)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        gw.kill()
    assert status == 0, gw.tail()
    stored = {r["reference"] for r in read_events(setup.database, "url LIKE ?", [f"%m={m}&%"])}
    assert len(answered) >= 300
    missing = set(answered) - stored
    assert missing == set(), f"{len(missing)} of {len(answered)} answered requests not stored"
    assert re.search(r"event store closed: \d+ events written, \d+ flushed at shutdown, 0 dropped",
                     gw.output()), gw.tail()


def test_the_default_is_one_worker_per_core(tmp_path, pki):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    cores = os.cpu_count() or 1
    with running_gateway("default workers", setup.config, workers=0) as gw:
        assert sample(scrape(gw.metrics_url), "schoolgate_workers_up") == cores
        plural = "process" if cores == 1 else "processes"
        assert re.search(rf"^\s*workers\s+{cores} {plural} sharing the port$",
                         gw.output("stdout"), re.M), gw.tail()


def test_workers_flag_is_checked(tmp_path, pki):
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert)
    done = subprocess.run([*schoolgate_command(), "run", "--config", str(setup.config),
                           "--workers", "0"], capture_output=True, text=True, timeout=TIMEOUT,
                          env=clean_env())
    assert done.returncode == 2
    assert "--workers: at least 1" in done.stderr




# -- alerts: one engine for every worker ---------------------------------------------------------


def test_one_concern_seen_by_every_worker_is_one_alert(tmp_path, pki, origin):
    handler = Inbox()
    with socket.socket() as s:  # aiosmtpd's readiness check connects to the given port
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    routing = tmp_path / "routing.yaml"
    routing.write_text(f"""\
templates: {ROOT / "templates" / "email"}
smtp: {{host: 127.0.0.1, port: {smtp_port}, from: "Schoolgate <schoolgate@school.test>",
        timeout: 10s}}
rules:
  - name: concerns about pupils to the DSL
    min_severity: medium
    recipients: [dsl@school.test]
fallback:
  pupils: {{recipients: [dsl@school.test]}}
  staff: {{recipients: [dsl@school.test]}}
""", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["keywords"] = {"library": str(ROOT / "keywords")}
        doc["alerts"] = {"routing": str(routing)}

    setup = write_config(tmp_path / "gateway", upstream_ca=pki.ca_cert, patch=patch)
    try:
        with running_gateway("alerts", setup.config, workers=WORKERS) as gw:
            wait_for(lambda: len(worker_pids(gw)) == WORKERS, "every worker", on_timeout=gw.tail)
            env = Env(setup, gw, origin, 0)
            m = marker()
            # The same person (127.0.0.1) searching the same high-severity phrase, on every
            # worker, inside the 30-minute dedup window.
            served = env.spread(
                lambda i: f"http://www.google.com/search?q=how+to+k1ll+mys3lf&m={m}&i={i}")
            assert {s.status for s in served} == {403}

            def counted(outcome: str) -> float:
                return sample(scrape(gw.metrics_url), "schoolgate_alerts_total",
                              channel="email", outcome=outcome)

            wait_for(lambda: counted("deduplicated") == len(served) - 1,
                     f"{len(served) - 1} deduplicated", on_timeout=gw.tail)
            wait_for(lambda: counted("sent") == 1, "one alert sent", on_timeout=gw.tail)
            handler.wait_for("suicide_selfharm")
            assert len(handler.messages) == 1, [msg["Subject"] for _, msg in handler.messages]
    finally:
        controller.stop()
