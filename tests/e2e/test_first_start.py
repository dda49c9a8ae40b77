"""A first `make run`, as a technician meets it: the real gateway on the repository's example
config, copied as shipped beside its lists, keywords, alert routing and templates, so its
`../data` is a folder nothing has used yet. The log must read clean: no warning or error, one
line saying what is being created, one saying that with no mail server alerts go to the store and
the log only; and an alert then retries nothing against a mail server that is not there."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ROOT, GatewayClient, GatewayProcess, running_gateway, wait_for

pytestmark = pytest.mark.e2e

#: What `config/schoolgate.yaml` refers to, relative to the repository.
SHIPPED = ("config", "categories", "keywords", "alerts", "templates")
#: On the example's IWF test list (categories/illegal/iwf-test.txt): always blocked, always an
#: alert, and answered by the gateway itself (nothing is fetched from the internet).
ILLEGAL_URL = "http://iwf-test-domain.example.net/"

#: The marks `schoolgate run` puts on a warning or an error (gateway/logs.py).
FAULT = re.compile(r"\] (?:schoolgate: )?(?:warning|error): |Traceback")
#: What a mail server that is not there looked like in the log: a retry, and then a failure.
SMTP_RETRY = re.compile(r"via email failed|next try in|FAILED and will not be retried|"
                        r"localhost:25|Connect call failed")


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's example, as a school unpacks it."""
    tmp = tmp_path_factory.mktemp("first-start")
    for folder in SHIPPED:
        shutil.copytree(ROOT / folder, tmp / folder)
    assert not (tmp / "data").exists()
    return tmp


@pytest.fixture(scope="module")
def first(school: Path) -> Iterator[GatewayProcess]:
    with running_gateway("first-start", school / "config" / "schoolgate.yaml") as gw:
        yield gw


def finished(gw: GatewayProcess) -> GatewayProcess:
    """`gw` stopped (SIGTERM), with a clean exit, so its whole log is in."""
    if gw.returncode is None:
        assert gw.stop() == 0, gw.tail()
    assert gw.returncode == 0, gw.tail()
    return gw


def lines(gw: GatewayProcess, pattern: str) -> list[str]:
    return [line for line in gw.output().splitlines() if re.search(pattern, line)]


def outbox(school: Path) -> list[tuple[str, str, int]]:
    conn = sqlite3.connect(f"file:{school / 'data' / 'schoolgate.sqlite3'}?mode=ro", uri=True,
                           timeout=5)
    try:
        return conn.execute("SELECT channel, status, attempts FROM alert_outbox").fetchall()
    finally:
        conn.close()


def test_the_first_start_says_once_what_it_creates(first: GatewayProcess, school: Path):
    data = school / "data"
    (created,) = lines(first, r"creating ")
    assert "first start: creating " in created
    for what in (f"the interception CA in {data / 'ca'}", f"the event store {data}",
                 f"the list cache {data / 'cache'}", "illegal list"):
        assert what in created, created
    # The parts that create them say nothing of their own: no missing cache file, no list of
    # migrations, no second "created" line.
    for news in (r"cannot be read", r"No such file", r"applied migration", r"created a new"):
        assert lines(first, news) == [], first.tail()


def test_with_no_mail_server_it_says_once_where_alerts_go(first: GatewayProcess):
    (said,) = lines(first, r"mail server")
    assert "alerts: no mail server is configured (smtp: off in " in said
    assert "e-mail alerts go to the store and the log only" in said


def test_the_first_start_writes_no_report_for_the_days_before_it(first: GatewayProcess,
                                                                 school: Path):
    # Yesterday's report would only have said that nothing was recorded.
    assert lines(first, r"daily report for|weekly summary for") == []
    reports = school / "data" / "reports"
    assert not reports.exists() or list(reports.iterdir()) == []


def test_an_alert_with_no_mail_server_is_recorded_and_retries_nothing(first: GatewayProcess,
                                                                      school: Path):
    assert first.proxy_port is not None
    client = GatewayClient(first.proxy_port, school / "data" / "ca" / "mitmproxy-ca-cert.pem")
    assert client.get(ILLEGAL_URL).status == 403
    first.wait_for_output(r"alert for dsl@example\.sch\.uk.* recorded in the store, not "
                          r"e-mailed \(no mail server is configured\): \[Schoolgate\] "
                          r"Illegal-content block")
    wait_for(lambda: outbox(school), "the alert in the outbox", on_timeout=first.tail)
    finished(first)  # the deliverer's rounds have all finished
    assert set(outbox(school)) == {("email", "recorded", 0)}
    assert lines(first, SMTP_RETRY.pattern) == [], first.tail()


def test_the_whole_first_run_logged_no_warning_or_error(first: GatewayProcess):
    # From the start to the stop: it served, alerted (above) and shut down.
    assert lines(finished(first), FAULT.pattern) == [], first.tail()


def test_a_second_start_creates_nothing_and_still_reads_clean(first: GatewayProcess,
                                                              school: Path):
    finished(first)  # same data folder, new start
    with running_gateway("second-start", school / "config" / "schoolgate.yaml") as again:
        pass
    assert lines(again, r"creating ") == []
    assert len(lines(again, r"no mail server is configured")) == 1
    assert lines(again, FAULT.pattern) == [], again.tail()
