"""The dashboards and alert rules against a real Prometheus: `promtool` checks the shipped example
config and rules and runs the rules' unit tests; then a real Prometheus scrapes a real gateway
every second while traffic goes through it (allowed, blocked, illegal, a safe-search rewrite, a
flagged search and the e-mail alerts they raise, a reload), and every query of every panel,
annotation and variable of every dashboard is run through Prometheus' HTTP API and must return
data. The shipped rules load into
that Prometheus, evaluate without error, and a healthy gateway raises none of them.

Needs the Debian package `prometheus` (which brings `promtool`); `.ci/run` installs it. Without
it these tests skip, except under `CI=true`, where they fail.

`www.google.com` and every `*.test` name resolve to 127.0.0.1 in this gateway (see RESOLVER), and
the origin's certificate covers them, so a rewritten search really reaches the origin. Alerts go
to a real mail server (aiosmtpd) on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .harness import (
    ORIGIN_NAMES,
    ROOT,
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    Origin,
    clean_env,
    direct_get,
    make_pki,
    run_cli,
    running_gateway,
    scrape,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

DASHBOARDS = ROOT / "dashboards"
EXAMPLE_CONFIG = DASHBOARDS / "prometheus.yml"
RULES = DASHBOARDS / "rules" / "schoolgate.rules.yml"
RULE_TESTS = sorted((DASHBOARDS / "rules" / "tests").glob("*.yml"))

#: Metrics some panels use that the gateway does not export yet. A query that uses one is
#: expected to return nothing (strict xfail): once the metric exists the query returns data, the
#: test "unexpectedly passes" and fails, and the name must be removed from here (and from
#: COMING_SOON in tests/unit/test_dashboards.py).
PENDING_METRICS: dict[str, str] = {}

#: What Grafana substitutes for its built-in variables, sized for a 1 s scrape interval: rate()
#: over 1m has ~60 samples, and a subquery step of 1 s never waits for a minute boundary.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}
SCRAPE = "1s"
RANGE_SECONDS = 30  # range queries cover the last 30 s at a 1 s step, as a panel would

SEARCH_HOST = "www.google.com"
FLAGGED_TERM = "how to make a bomb"  # weapons_violence, high, in keywords/

RESOLVER = '''"""`schoolgate` with every `*.test` name and www.google.com resolving to 127.0.0.1,
where the e2e origin listens. Written by tests/e2e/test_prometheus.py; takes the arguments of
`schoolgate`."""

import socket
import sys

from schoolgate import cli

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str):
        name = name.rstrip(".").lower()
        if name.endswith(".test") or name == "www.google.com":
            host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
'''


def need(tool: str) -> str:
    """The tool's path; skip without it, but fail under CI=true (CI must run these tests)."""
    path = shutil.which(tool)
    if path is None:
        message = (f"{tool} is not installed: install the Debian package `prometheus` "
                   f"(.ci/run does) to check the dashboards against a real Prometheus")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("promtool"), *args], capture_output=True, text=True,
                          timeout=TIMEOUT * 3, env=clean_env(), cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# promtool: the shipped files alone


def test_promtool_accepts_the_example_config_and_its_rules():
    result = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(1 for g in yaml.safe_load(RULES.read_text())["groups"] for _ in g["rules"])
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Every query in every dashboard, as test parameters


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str  # panel title and refId, or annotation name
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.where}"

    @property
    def pending(self) -> list[str]:
        words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", self.expr))
        return sorted(words & PENDING_METRICS.keys())


def _dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(DASHBOARDS.glob("*.json"))}


def _queries() -> list[Query]:
    found = []
    for name, d in _dashboards().items():
        panels = [q for p in d["panels"]
                  for q in ([p] if p["type"] != "row" else p.get("panels", []))]
        for p in panels:
            for t in p.get("targets", []):
                found.append(Query(name, f"{p['title']} [{t['refId']}]", t["expr"],
                                   bool(t.get("instant")) and not t.get("range")))
        for a in d["annotations"]["list"]:
            if "expr" in a:
                found.append(Query(name, f"annotation {a['name']}", a["expr"], False))
    return found


def _params(queries: list[Query]) -> list:
    out = []
    for q in queries:
        marks = []
        if q.pending:
            reasons = "; ".join(f"{m}: {PENDING_METRICS[m]}" for m in q.pending)
            marks.append(pytest.mark.xfail(strict=True, reason=f"pending metric ({reasons})"))
        out.append(pytest.param(q, id=q.id, marks=marks))
    return out


QUERIES = _queries()
VARIABLES = [(name, v) for name, d in _dashboards().items() for v in d["templating"]["list"]
             if v["type"] == "query"]


def test_every_dashboard_has_queries():
    assert {q.dashboard for q in QUERIES} == {"operations", "safeguarding", "capacity"}


# ---------------------------------------------------------------------------------------------
# The stack: origin, gateway, Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A `prometheus` server on 127.0.0.1 with its data in `directory`."""

    def __init__(self, binary: str, config: Path, directory: Path):
        self.log_path = directory / "prometheus.log"
        for _ in range(3):  # the port may be taken between choosing and binding it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with self.log_path.open("w") as log:
                self.proc = subprocess.Popen(
                    [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
                )
            try:
                wait_for(self._ready_or_exited, "Prometheus to be ready", on_timeout=self.tail)
            except BaseException:
                self.stop()
                raise
            if self.proc.poll() is None:
                return
            if "address already in use" not in self.tail():
                break
        raise AssertionError(f"Prometheus exited with status {self.proc.returncode}\n{self.tail()}")

    def _ready_or_exited(self) -> bool:
        if self.proc.poll() is not None:
            return True
        try:
            return direct_get(f"{self.url}/-/ready", timeout=2) is not None
        except OSError:
            return False

    def tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "prometheus log:\n" + "\n".join(lines[-n:])

    def api(self, path: str, **params: str | float) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            reply = json.loads(direct_get(url, timeout=10))
        except urllib.error.HTTPError as e:  # a query Prometheus cannot parse: say why
            with e:
                raise AssertionError(f"Prometheus refused {params}: {e.read().decode()}") from None
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def query_range(self, expr: str, seconds: int = RANGE_SECONDS) -> list[dict]:
        end = time.time()
        data = self.api("query_range", query=expr, start=end - seconds, end=end, step=1)
        assert data["resultType"] == "matrix", data
        return [s for s in data["result"] if s["values"]]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def prometheus_config(directory: Path, metrics_url: str) -> Path:
    """The shipped example, scraping the test gateway every second with the shipped rules."""
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    doc["global"].update(scrape_interval=SCRAPE, scrape_timeout=SCRAPE, evaluation_interval=SCRAPE)
    doc["rule_files"] = [str(RULES)]
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "schoolgate"]
    job["static_configs"][0]["targets"] = [urllib.parse.urlsplit(metrics_url).netloc]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class MailServer:
    """An SMTP server on 127.0.0.1 (aiosmtpd in a thread) that keeps what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[bytes] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.original_content)
        return "250 OK"

    def stop(self) -> None:
        self._controller.stop()


def write_routing(directory: Path, smtp_port: int) -> Path:
    """Alert routing: every high-severity concern (and every illegal-list hit) e-mails the DSL."""
    path = directory / "routing.yaml"
    path.write_text(
        f"templates: {ROOT / 'templates' / 'email'}\n"
        f"smtp: {{host: 127.0.0.1, port: {smtp_port}, from: schoolgate@school.test}}\n"
        "rules:\n  - {name: high to the DSL, min_severity: high, recipients: [dsl@school.test]}\n"
        "fallback:\n  pupils: {recipients: [dsl@school.test]}\n"
        "  staff: {recipients: [head@school.test]}\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Stack:
    gateway: GatewayProcess
    client: GatewayClient
    origin: Origin
    prometheus: Prometheus
    config: Path
    mail: MailServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    binary = need("prometheus")
    directory = tmp_path_factory.mktemp("prometheus")
    pki = make_pki(directory / "pki", (*ORIGIN_NAMES, SEARCH_HOST))
    origin = Origin(pki)
    mail = MailServer()
    iwf = directory / "iwf.txt"
    iwf.write_text("iwf-dom.test\n", encoding="utf-8")
    routing = write_routing(directory, mail.port)

    def patch(doc: dict) -> None:
        doc["illegal_lists"] = {"iwf": {"kind": "iwf", "source": str(iwf), "form": "plain"}}
        doc["keywords"] = {"library": str(ROOT / "keywords")}
        doc["alerts"] = {"routing": str(routing)}

    setup = write_config(directory / "gateway", upstream_ca=pki.ca_cert, patch=patch)
    script = directory / "resolving_gateway.py"
    script.write_text(RESOLVER, encoding="utf-8")
    try:
        with running_gateway("prometheus", setup.config, script=script) as gw:
            assert gw.metrics_url is not None and gw.proxy_port is not None
            prometheus = Prometheus(binary, prometheus_config(directory, gw.metrics_url), directory)
            try:
                yield Stack(gw, GatewayClient(gw.proxy_port, setup.schoolgate_ca), origin,
                            prometheus, setup.config, mail)
            finally:
                prometheus.stop()
    finally:
        mail.stop()
        origin.close()


# Series whose Prometheus value must equal the gateway's own before the queries run: then every
# request below has been scraped.
SCRAPED = ("schoolgate_requests_total", "schoolgate_flagged_searches_total",
           "schoolgate_safe_search_rewrites_total", "schoolgate_reloads_total",
           "schoolgate_alerts_total")


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Stack:
    """Browse through the gateway once for the module, then wait until Prometheus has it all."""
    # Two scrapes before any traffic, so every rate() has a sample on each side of it.
    twice = 'count_over_time(up{job="schoolgate"}[1m]) >= 2 and on () up{job="schoolgate"} == 1'
    wait_for(lambda: stack.prometheus.query(twice), "Prometheus to scrape the gateway twice",
             on_timeout=stack.prometheus.tail)
    m = uuid.uuid4().hex
    client, origin = stack.client, stack.origin
    assert client.get(origin.url("http", f"/hello?m={m}")).status == 200
    assert client.get(origin.url("https", f"/hello?m={m}")).status == 200
    assert client.get(f"http://blocked.test/?m={m}").status == 403  # gambling
    assert client.get(f"https://www.bet365.com/?m={m}").status == 403  # gambling, inside TLS
    assert client.get(origin.url("http", f"/hello?m={m}", host="localhost")).status == 403  # games
    assert client.get(f"http://iwf-dom.test/?m={m}").status == 403  # illegal list
    search = origin.url("https", f"/search?q=volcanoes&m={m}", host=SEARCH_HOST)
    client.get(search)  # the origin answers 404; what matters is what it was asked for
    (seen,) = origin.requests_with(f"q=volcanoes&m={m}")
    assert "safe=active" in seen.path, f"safe search was not locked: {seen.path}"
    flagged = urllib.parse.quote_plus(FLAGGED_TERM)
    client.get(origin.url("https", f"/search?q={flagged}&m={m}", host=SEARCH_HOST))
    reload = run_cli("reload", "--config", str(stack.config), "--timeout", str(TIMEOUT))
    assert reload.returncode == 0, reload.stdout + reload.stderr

    # The illegal-list hit and the high-severity search each e-mail the DSL.
    wait_for(lambda: len(stack.mail.messages) >= 2, "two alert e-mails",
             on_timeout=stack.gateway.tail)

    def sent() -> dict:
        samples = scrape(stack.gateway.metrics_url)
        totals = {name: sum(v for (n, _), v in samples.items() if n == name) for name in SCRAPED}
        delivered = samples.get(("schoolgate_alerts_total",
                                 frozenset({"channel": "email", "outcome": "sent"}.items())), 0)
        return totals if delivered >= 2 else {}

    expected = wait_for(sent, "the gateway to count two alerts sent", on_timeout=stack.gateway.tail)
    assert expected["schoolgate_flagged_searches_total"] >= 1, "the search was not flagged"
    assert expected["schoolgate_safe_search_rewrites_total"] >= 1

    def scraped() -> bool:
        return all(stack.prometheus.value(f"sum({name})") == total
                   for name, total in expected.items())

    wait_for(scraped, f"Prometheus to scrape {expected}",
             on_timeout=lambda: stack.prometheus.tail() + "\n" + stack.gateway.tail(40))
    return stack


# ---------------------------------------------------------------------------------------------
# The tests against the running stack


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **variables}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def label_values(prometheus: Prometheus, query: str, variables: dict[str, str]) -> list[str]:
    """What Grafana's `label_values(selector, label)` offers, through the same HTTP API."""
    m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
    assert m, f"not a label_values() query: {query}"
    return prometheus.api(f"label/{m[2]}/values", **{"match[]": substitute(m[1], variables)})


@pytest.fixture(scope="module")
def variables(traffic: Stack) -> dict[str, dict[str, str]]:
    """Each dashboard's variables as a viewer would leave them: All where offered, else the
    first value. Fails if a variable offers nothing."""
    out: dict[str, dict[str, str]] = {}
    for name, v in VARIABLES:
        chosen = out.setdefault(name, {})
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        values = label_values(traffic.prometheus, query, chosen)
        assert values, f"{name}: variable ${v['name']} ({query}) offers no value"
        chosen[f"${v['name']}"] = v.get("allValue", ".+") if v.get("includeAll") else values[0]
    return out


@pytest.mark.parametrize(("dashboard", "variable"), VARIABLES,
                         ids=[f"{n}/${v['name']}" for n, v in VARIABLES])
def test_dashboard_variable_offers_values(dashboard, variable, traffic, variables):
    query = variable["query"]["query"]
    values = label_values(traffic.prometheus, query, variables[dashboard])
    assert values, f"{dashboard}: ${variable['name']} offers nothing"


@pytest.mark.parametrize("query", _params(QUERIES))
def test_panel_query_returns_data(query: Query, traffic: Stack, variables):
    expr = substitute(query.expr, variables[query.dashboard])
    prometheus = traffic.prometheus
    result = prometheus.query(expr) if query.instant else prometheus.query_range(expr)
    assert result, f"{query.id}: no data for\n  {expr}"


def _expr(dashboard: str, title: str, ref: str = "A") -> str:
    (q,) = [q for q in QUERIES if q.dashboard == dashboard and q.where == f"{title} [{ref}]"]
    return q.expr


def test_panels_show_the_traffic(traffic: Stack, variables):
    """Not just any data: the safeguarding and operations panels count what was done above."""
    p = traffic.prometheus

    def by(dashboard: str, title: str, label: str) -> dict[str, float]:
        expr = substitute(_expr(dashboard, title), variables[dashboard])
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in p.query(expr)}

    def total(dashboard: str, title: str) -> float:
        (only,) = by(dashboard, title, "").values()
        return only

    blocked = by("safeguarding", "Most-blocked categories", "category")
    # increase() extrapolates, so counts are compared with half a request's margin.
    assert blocked["gambling"] >= 1.5, blocked
    assert blocked["games"] >= 0.5 and blocked["illegal"] >= 0.5, blocked
    assert total("safeguarding", "Illegal-content blocks") >= 0.5
    assert total("safeguarding", "Safe-search rewrites") >= 0.5
    assert by("safeguarding", "Flagged searches by theme", "theme")["weapons_violence"] >= 0.5
    assert total("safeguarding", "High-severity flags") >= 0.5
    assert total("operations", "Fail-closed errors") == 0
    assert total("operations", "Events dropped") == 0
    up = p.query(substitute(_expr("operations", "Gateway up"), variables["operations"]))
    assert [float(r["value"][1]) for r in up] == [1.0]
    ages = by("operations", "Illegal list age", "list")
    assert list(ages) == ["iwf"] and 0 <= ages["iwf"] < 3600, ages
    title = "Alerts to the DSL by channel and outcome"
    alerts = p.query_range(substitute(_expr("operations", title), variables["operations"]))
    sent = [s for s in alerts if s["metric"] == {"channel": "email", "outcome": "sent"}]
    assert sent and max(float(v) for _, v in sent[0]["values"]) >= 0.5, alerts


def test_the_rules_load_and_evaluate_without_error(traffic: Stack):
    shipped = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]

    def evaluated() -> list[dict]:
        rules = [r for g in traffic.prometheus.api("rules")["groups"] for r in g["rules"]]
        # A rule not evaluated yet shows Go's zero time.
        done = rules and not any(r["lastEvaluation"].startswith("0001-") for r in rules)
        return rules if done else []

    rules = wait_for(evaluated, "every rule to be evaluated once",
                     on_timeout=traffic.prometheus.tail)
    assert sorted(r["name"] for r in rules) == sorted(shipped)
    for r in rules:
        assert r["health"] == "ok", f"{r['name']}: {r.get('lastError')}"


def test_a_healthy_gateway_raises_no_alert(traffic: Stack):
    alerts = traffic.prometheus.api("alerts")["alerts"]
    assert alerts == [], alerts
