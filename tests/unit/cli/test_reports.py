"""The report commands as a technician runs them (`report daily|weekly|context`, `export user`,
`purge`), and the built-in timetable that writes and sends reports at school time."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schoolgate.cli import reports as commands
from schoolgate.config.model import ConfigError, ReportSettings
from schoolgate.events import Event
from schoolgate.reports.scheduler import ReportSchedule, next_at, previous_at
from schoolgate.store import EVENT_COLUMNS, event_row, open_for_writing

LONDON = ZoneInfo("Europe/London")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def seed(db: Path) -> None:
    open_for_writing(db)
    events = [
        Event(ts=at("2026-03-02T10:00"), client_ip="10.20.1.5", group="secondary",
              action="allow", reference="7KQ2M-9XDPA", user="alice", host="www.google.com",
              search_term="kill myself", search_normalised="kill myself",
              matched_phrase="kill myself", theme="suicide_selfharm", severity="high",
              engine="google"),
        Event(ts=at("2026-03-02T10:20"), client_ip="10.20.1.5", group="secondary",
              action="allow", reference=None, user="alice", host="www.bbc.co.uk"),
        Event(ts=at("2026-03-02T10:30"), client_ip="10.20.1.6", group="secondary",
              action="block", reference=None, device="LAPTOP-7", host="casino.example",
              categories=("gambling",)),
        Event(ts=at("2025-01-01T10:00"), client_ip="10.20.1.5", group="secondary",
              action="allow", reference=None, user="alice", host="ancient.example"),
    ]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
            [event_row(e) for e in events],
        )
    conn.close()


@pytest.fixture
def school(write_config, tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    path = write_config()
    seed(tmp_path / "data" / "schoolgate.sqlite3")
    return path


def run(config: Path, *argv: str, send_email=None) -> int:
    """Parse and run like `schoolgate` does once cli.py calls `register`."""
    parser = argparse.ArgumentParser(prog="schoolgate")
    sub = parser.add_subparsers(dest="command")

    def config_arg(sp):
        sp.add_argument("--config", default=str(config))

    commands.register(sub, config_arg, send_email=send_email)
    args = parser.parse_args(list(argv))
    return args.func(args)


# ---------------------------------------------------------------------------------------------
# report daily / weekly


def test_report_daily_writes_the_days_files(school, tmp_path, capsys):
    assert run(school, "report", "daily", "--date", "2026-03-02", "--out", str(tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 flagged search by 1 person on 2026-03-02; wrote ")
    page = (tmp_path / "r" / "suspicious-searches-2026-03-02.html").read_text()
    assert "alice" in page and "kill myself" in page
    assert (tmp_path / "r" / "suspicious-searches-2026-03-02.csv").exists()


def test_report_daily_counts_an_illegal_list_hit_apart_from_the_searches(school, tmp_path, capsys):
    # Issue #15: "2 flagged searches by 2 people" counted the illegal-list hit as a search.
    hit = Event(ts=at("2026-03-02T11:00"), client_ip="10.20.1.9", group="secondary",
                action="block", reference=None, user="bob", host="bad.example",
                severity="high", reason="illegal:iwf")
    conn = sqlite3.connect(tmp_path / "data" / "schoolgate.sqlite3")
    with conn:
        conn.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})", event_row(hit))
    conn.close()
    assert run(school, "report", "daily", "--date", "2026-03-02", "--out", str(tmp_path / "r")) == 0
    assert capsys.readouterr().out.startswith(
        "1 flagged search and 1 illegal-list hit by 2 people on 2026-03-02; wrote ")
    # A day with nothing flagged says so in words, not "0 flagged searches by 0 people".
    assert run(school, "report", "daily", "--date", "2026-03-03", "--out", str(tmp_path / "r")) == 0
    assert capsys.readouterr().out.startswith("no suspicious searches on 2026-03-03; wrote ")


def test_report_daily_defaults_to_yesterday_in_the_data_folder(school, tmp_path, capsys):
    assert run(school, "report", "daily") == 0
    yesterday = datetime.now(LONDON).date() - timedelta(days=1)
    assert (tmp_path / "data" / "reports" / f"suspicious-searches-{yesterday}.html").exists()
    assert f"on {yesterday}; wrote " in capsys.readouterr().out


def test_report_daily_email_uses_the_given_sender(school, tmp_path, monkeypatch, capsys):
    sent = []
    # Without a sender (e-mail not set up) the files are written and --email is refused.
    assert run(school, "report", "daily", "--date", "2026-03-02", "--email") == 1
    assert "e-mail is not set up" in capsys.readouterr().err
    # Without recipients, likewise.
    assert run(school, "report", "daily", "--date", "2026-03-02", "--email",
               send_email=lambda *a: sent.append(a)) == 2
    assert "reports.email_to lists nobody" in capsys.readouterr().err
    # With the DSL named in the config's `reports.email_to`.
    school.write_text(school.read_text(encoding="utf-8")
                      + "reports:\n  email_to: [dsl@school.example]\n", encoding="utf-8")
    assert run(school, "report", "daily", "--date", "2026-03-02", "--email",
               send_email=lambda *a: sent.append(a)) == 0
    ((config, to, subject, text, html, attachments),) = sent
    assert to == ("dsl@school.example",)
    assert subject.startswith("Test Academy: suspicious searches on Monday 2 March 2026")
    assert "alice" in text and "<!doctype html>" in html
    assert [p.name for p in attachments] == ["suspicious-searches-2026-03-02.csv"]


def test_report_weekly_writes_the_summary(school, tmp_path, capsys):
    assert run(school, "report", "weekly", "--week-of", "2026-03-04", "--out", str(tmp_path)) == 0
    assert "1 safeguarding concern in the week of 2026-03-02" in capsys.readouterr().out
    page = (tmp_path / "weekly-summary-2026-03-02.html").read_text()
    assert "Suicide and self-harm" in page and "alice" not in page


def test_a_bad_date_is_a_usage_error(school):
    with pytest.raises(ConfigError, match=r"--date: '2026-02-30' is not a date"):
        run(school, "report", "daily", "--date", "2026-02-30")


def test_a_missing_store_is_one_line_and_status_1(write_config, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert run(write_config(), "report", "daily", "--date", "2026-03-02") == 1
    assert capsys.readouterr().err.startswith("schoolgate: no event store at ")


# ---------------------------------------------------------------------------------------------
# report context


def test_report_context_by_reference_marks_the_incident(school, capsys):
    assert run(school, "report", "context", "--reference", "7kq2m-9xdpa") == 0
    out = capsys.readouterr().out
    assert out.startswith("user alice: 2 events from 60 minutes before to 60 minutes after "
                          "2026-03-02 10:00:00 GMT")
    (marked,) = [line for line in out.splitlines() if line.startswith(">")]
    assert "search on google: kill myself" in marked
    assert "https://" not in out or "www.bbc.co.uk" in out


def test_report_context_for_a_device_at_a_school_time(school, capsys):
    assert run(school, "report", "context", "--device", "LAPTOP-7", "--at", "2026-03-02T10:00",
               "--minutes", "45", "--json") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert '"host": "casino.example"' in line and '"person_kind": "device"' in line


def test_report_context_needs_a_moment_for_a_person(school, capsys):
    with pytest.raises(ConfigError, match="--at: give the moment"):
        run(school, "report", "context", "--user", "alice")
    assert run(school, "report", "context", "--reference", "ZZZZZ-ZZZZZ") == 1
    assert "no event with reference ZZZZZ-ZZZZZ" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# export user, purge


def test_export_user_prints_where_it_wrote(school, tmp_path, capsys):
    assert run(school, "export", "user", "alice", "--out", str(tmp_path / "sar"),
               "--since", "2026-01-01") == 0
    out = capsys.readouterr().out
    assert out.startswith("2 records for alice; wrote ")
    (csv_file,) = (tmp_path / "sar").glob("export-alice-*.csv")
    assert "ancient.example" not in csv_file.read_text()


def test_purge_dry_run_then_purge(write_config, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    config = write_config()
    db = tmp_path / "data" / "schoolgate.sqlite3"
    open_for_writing(db)
    now = datetime.now(UTC)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
            [event_row(Event(ts=(now - timedelta(days=days)).timestamp(), client_ip="10.20.1.5",
                             group="secondary", action="allow", reference=None,
                             host=f"{days}.example"))
             for days in (40, 10)],
        )
    conn.close()
    assert run(config, "purge", "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out] == [
        ["allowed", "kept", "30", "days", "would", "delete", "1"],
        ["blocked", "kept", "365", "days", "would", "delete", "0"],
        ["safeguarding", "kept", "730", "days", "would", "delete", "0"],
        ["alerts", "kept", "730", "days", "would", "delete", "0"],
        ["requests", "kept", "365", "days", "would", "delete", "0", "(decided", "problem",
         "reports)"],
    ]
    assert run(config, "purge") == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-2:] == ["deleted", "1"]
    assert run(config, "purge") == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-2:] == ["deleted", "0"]


# ---------------------------------------------------------------------------------------------
# The timetable


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Before 07:00 school time: today; after: tomorrow.
        ("2026-03-02T06:59", "2026-03-02T07:00"),
        ("2026-03-02T07:00", "2026-03-03T07:00"),
        # In summer 07:00 BST is 06:00 UTC.
        ("2026-06-01T06:30", "2026-06-02T06:00"),
        # Across the spring change: Sunday 07:00 GMT... Monday 07:00 BST.
        ("2026-03-28T07:30", "2026-03-29T06:00"),
    ],
)
def test_next_at_is_the_next_school_clock_time(after, expected):
    when = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_at(when, time(7), LONDON) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_a_time_the_clocks_skip_or_repeat_runs_once():
    # 01:30 does not exist on 29 March 2026 (01:00 GMT -> 02:00 BST): it runs at 01:30 GMT.
    gap = next_at(datetime(2026, 3, 28, 12, tzinfo=UTC), time(1, 30), LONDON)
    assert gap == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # 01:30 happens twice on 25 October 2026: the first (BST), then not again that day.
    first = next_at(datetime(2026, 10, 24, 12, tzinfo=UTC), time(1, 30), LONDON)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert next_at(first, time(1, 30), LONDON) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # A weekly time on a given weekday (Monday).
    monday = next_at(datetime(2026, 3, 4, tzinfo=UTC), time(7, 30), LONDON, weekday=0)
    assert monday == datetime(2026, 3, 9, 7, 30, tzinfo=UTC)
    assert previous_at(monday, time(7, 30), LONDON, weekday=0) == monday


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.asyncio
async def test_the_timetable_writes_and_sends_each_report_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="schoolgate.reports")
    db = tmp_path / "schoolgate.sqlite3"
    seed(db)
    sent: list[tuple] = []

    async def send(to, subject, text, html, attachments):
        sent.append((to, subject, [p.name for p in attachments]))

    settings = ReportSettings(email_to=("dsl@school.example",),
                              weekly_email_to=("head@school.example",))
    clock = Clock(datetime(2026, 3, 2, 12, tzinfo=UTC))  # Monday noon
    schedule = ReportSchedule(db, "Test Academy", "Europe/London", settings, tmp_path / "out",
                              send_email=send, clock=clock)
    # At start: today's 07:00 report and Monday's 07:30 summary were missed; the purge runs.
    assert await schedule.tick() == ["daily", "weekly", "purge"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "suspicious-searches-2026-03-01.csv", "suspicious-searches-2026-03-01.html",
        "weekly-summary-2026-02-23.csv", "weekly-summary-2026-02-23.html"]
    assert schedule.last_purge is not None
    assert [s[0] for s in sent] == [("dsl@school.example",), ("head@school.example",)]
    # Then the nightly purge at 02:30, and the next report at 07:00, once each.
    assert await schedule.tick(datetime(2026, 3, 3, 2, 29, tzinfo=UTC)) == []
    assert await schedule.tick(datetime(2026, 3, 3, 6, 59, tzinfo=UTC)) == ["purge"]
    assert await schedule.tick(datetime(2026, 3, 3, 7, 0, tzinfo=UTC)) == ["daily"]
    assert await schedule.tick(datetime(2026, 3, 3, 7, 1, tzinfo=UTC)) == []
    assert sent[-1] == (("dsl@school.example",),
                        "Test Academy: suspicious searches on Monday 2 March 2026: 1 person, "
                        "1 high", ["suspicious-searches-2026-03-02.csv"])
    # The log says what each report holds, each count with its unit.
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("daily report")]
    assert [line.split(", written to ")[0] for line in said] == [
        "daily report for 2026-03-01: no suspicious searches",
        "daily report for 2026-03-02: 1 flagged search by 1 person"]
    assert schedule.due["purge"] == datetime(2026, 3, 4, 2, 30, tzinfo=UTC)

    # Restarted after the reports were written: nothing is redone.
    again = ReportSchedule(db, "Test Academy", "Europe/London", settings, tmp_path / "out",
                           clock=Clock(datetime(2026, 3, 3, 8, tzinfo=UTC)))
    assert again.due["daily"] == datetime(2026, 3, 4, 7, tzinfo=UTC)
    assert again.due["weekly"] == datetime(2026, 3, 9, 7, 30, tzinfo=UTC)


@pytest.mark.asyncio
async def test_a_first_start_writes_no_report_for_days_before_anything_was_recorded(tmp_path):
    # Issue #15: the first start wrote yesterday's report and last week's summary, each saying
    # "no events at all were recorded: check that the gateway was running", and logged them.
    db = tmp_path / "schoolgate.sqlite3"
    open_for_writing(db)  # the new store of a first start
    out = tmp_path / "out"
    schedule = ReportSchedule(db, "Test Academy", "Europe/London", ReportSettings(), out,
                              clock=Clock(datetime(2026, 3, 2, 12, tzinfo=UTC)))
    await schedule.tick()
    assert not out.exists() or list(out.iterdir()) == []
    # Once the gateway has recorded something, that day's report is written as usual.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})", event_row(Event(
                         ts=at("2026-03-02T12:30"), client_ip="10.20.1.5", group="secondary",
                         action="allow", reference=None, host="www.bbc.co.uk")))
    conn.close()
    assert "daily" in await schedule.tick(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    assert sorted(p.name for p in out.iterdir()) == [
        "suspicious-searches-2026-03-02.csv", "suspicious-searches-2026-03-02.html"]


@pytest.mark.asyncio
async def test_a_failing_job_is_logged_and_the_timetable_goes_on(tmp_path, caplog):
    missing = tmp_path / "nowhere.sqlite3"
    schedule = ReportSchedule(missing, "S", "Europe/London", ReportSettings(), tmp_path / "out",
                              clock=Clock(datetime(2026, 3, 2, 12, tzinfo=UTC)))
    with caplog.at_level(logging.ERROR, logger="schoolgate.reports"):
        assert await schedule.tick() == ["daily", "weekly", "purge"]
    assert len([r for r in caplog.records if "job failed" in r.getMessage()]) == 3
    assert all(when > datetime(2026, 3, 2, 12, tzinfo=UTC) for when in schedule.due.values())


@pytest.mark.asyncio
async def test_the_timetable_task_starts_and_stops(tmp_path):
    db = tmp_path / "schoolgate.sqlite3"
    seed(db)
    schedule = ReportSchedule(db, "S", "Europe/London", ReportSettings(), tmp_path / "out")
    task = schedule.start()
    for _ in range(200):  # the first tick runs the missed reports and the purge
        if schedule.last_purge is not None:
            break
        await asyncio.sleep(0.01)
    assert schedule.last_purge is not None
    await schedule.stop()
    assert task.cancelled()
