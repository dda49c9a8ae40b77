"""The daily suspicious-search report, the context view and the weekly summary, built from a store
seeded through the real schema (`open_for_writing`) and the real `Event.row()`: which rows, in
which order, grouped how, at what school time, and what is never shown."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schoolgate.config.model import EventSettings
from schoolgate.events import Event
from schoolgate.reports import (
    Person,
    build_daily,
    build_weekly,
    context_around,
    context_for_reference,
    email_parts,
    format_context,
    local_day_range,
    render_csv,
    render_html,
    render_weekly_html,
    weekly_email_parts,
    write_daily,
)
from schoolgate.reports.daily import CONTEXT_ROWS, CSV_COLUMNS, render_text
from schoolgate.reports.reading import SAFEGUARDING_SQL
from schoolgate.reports.weekly import render_weekly_csv
from schoolgate.store import EVENT_COLUMNS, EventWriter, StoreError, event_row, open_for_writing
from schoolgate.store.migrations import MIGRATIONS

TZ = "Europe/London"
SCHOOL = "Test Academy"
DAY = date(2026, 3, 2)  # a Monday in GMT


# ---------------------------------------------------------------------------------------------
# A seeded store


def at(text: str) -> float:
    """A UTC time such as '2026-03-02T10:00' as the Unix time `Event` takes."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def event(when: str, **fields) -> Event:
    fields.setdefault("client_ip", "10.20.1.5")
    fields.setdefault("group", "secondary")
    fields.setdefault("action", "allow")
    fields.setdefault("reference", None)
    return Event(ts=at(when), **fields)


def search(when: str, user: str | None, term: str, theme: str, severity: str,
           engine: str = "google", phrase: str | None = None, **fields) -> Event:
    normalised = " ".join(re.sub(r"[^a-z0-9]+", " ", term.lower()).split())
    return event(
        when, user=user, host=f"www.{engine}.com", url=f"https://www.{engine}.com/search?q=x",
        search_term=term, search_normalised=normalised, matched_phrase=phrase or normalised,
        theme=theme, severity=severity, engine=engine, **fields,
    )


def illegal(when: str, **fields) -> Event:
    # What Record stores for an illegal-list hit: host and list, never the URL.
    fields.setdefault("client_ip", "172.16.0.9")
    fields.setdefault("group", "guest")
    return event(when, action="block", host="bad.example", url=None, severity="high",
                 reason="illegal:IWF", matched_rule="illegal-content list IWF", **fields)


def store(tmp_path: Path, events: list[Event]) -> Path:
    db = tmp_path / "data" / "schoolgate.sqlite3"
    open_for_writing(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
            [event_row(e) for e in events],
        )
    conn.close()
    return db


def daily(db: Path, day: date = DAY):
    return build_daily(db, day, TZ, SCHOOL, now=datetime(2026, 3, 3, 7, tzinfo=UTC))


class _Text(HTMLParser):
    """The page as a reader sees it, and every element it has."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def page_text(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


# ---------------------------------------------------------------------------------------------
# The school's day


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        # An ordinary winter day is midnight to midnight UTC (GMT).
        (date(2026, 3, 2), "2026-03-02T00:00", "2026-03-03T00:00"),
        # A summer day starts at 23:00 UTC the day before (BST).
        (date(2026, 6, 1), "2026-05-31T23:00", "2026-06-01T23:00"),
        # The clocks go forward: a 23-hour day.
        (date(2026, 3, 29), "2026-03-29T00:00", "2026-03-29T23:00"),
        # The clocks go back: a 25-hour day.
        (date(2026, 10, 25), "2026-10-24T23:00", "2026-10-26T00:00"),
    ],
)
def test_the_day_is_the_schools_local_day_as_a_utc_range(day, start, end):
    begin, finish = local_day_range(day, TZ)
    assert begin == datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert finish == datetime.fromisoformat(end).replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Which rows, in which order


def test_people_are_sorted_by_severity_then_frequency(tmp_path):
    db = store(tmp_path, [
        # erin: the most searches, all low
        *[search(f"2026-03-02T09:0{i}", "erin", f"vpn free {i}", "circumvention", "low")
          for i in range(5)],
        # carol: three medium
        *[search(f"2026-03-02T10:0{i}", "carol", "buy weed", "drugs", "medium")
          for i in range(3)],
        # dave: one high; frank: two high (one of them medium)
        search("2026-03-02T11:00", "dave", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-02T12:00", "frank", "pro ana tips", "eating_disorders", "high"),
        search("2026-03-02T12:05", "frank", "how to lose weight fast", "eating_disorders",
               "medium"),
        # an illegal-list hit outranks every severity
        illegal("2026-03-02T13:00"),
        # not flagged: ordinary browsing, and a bypass attempt with no severity
        event("2026-03-02T09:30", user="gina", host="www.bbc.co.uk"),
        event("2026-03-02T09:31", user="gina", action="block", theme="circumvention",
              reason="circumvention:doh", host="dns.google"),
        # flagged, but on other school days
        search("2026-03-01T23:59", "henry", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-03T00:00", "henry", "kill myself", "suicide_selfharm", "high"),
    ])
    report = daily(db)
    assert [(p.person.name, p.severity, p.count) for p in report.people] == [
        ("172.16.0.9", "high", 1),
        ("frank", "high", 2),
        ("dave", "high", 1),
        ("carol", "medium", 3),
        ("erin", "low", 5),
    ]
    assert report.incidents == 12
    assert report.by_severity == {"high": 3, "medium": 4, "low": 5}
    assert report.events_total == 14
    html = page_text(render_html(report)).text
    # The page lists people in the same order.
    positions = [html.index(name) for name in ("172.16.0.9", "frank", "dave", "carol", "erin")]
    assert positions == sorted(positions)
    assert "gina" not in html and "henry" not in html


def test_a_person_is_the_user_else_the_device_else_the_address(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high",
               device="LAPTOP-7", client_ip="10.20.1.5"),
        # the same device with nobody signed in is a different person from alice
        search("2026-03-02T10:10", None, "kill myself", "suicide_selfharm", "high",
               device="LAPTOP-7", client_ip="10.20.1.5"),
        search("2026-03-02T10:20", None, "kill myself", "suicide_selfharm", "high",
               client_ip="172.16.4.4", group="guest"),
    ])
    report = daily(db)
    assert [p.person for p in report.people] == [
        Person("user", "alice"), Person("device", "LAPTOP-7"), Person("ip", "172.16.4.4")]
    text = page_text(render_html(report)).text
    assert "device (no user signed in)" in text
    assert "IP address (no user or device known)" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [(r["person"], r["person_kind"]) for r in rows] == [
        ("alice", "user"), ("LAPTOP-7", "device"), ("172.16.4.4", "ip")]


def test_a_persons_searches_are_grouped_with_counts_engines_and_terms(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T09:15", "alice", "how to kill myself", "suicide_selfharm", "high",
               phrase="kill myself"),
        search("2026-03-02T09:16", "alice", "How to KILL myself", "suicide_selfharm", "high",
               engine="bing", phrase="kill myself"),
        search("2026-03-02T13:40", "alice", "how to kill myself", "suicide_selfharm", "high",
               phrase="kill myself"),
        search("2026-03-02T14:00", "alice", "self harm pictures", "suicide_selfharm", "medium",
               engine="duckduckgo", phrase="self harm"),
    ])
    (alice,) = daily(db).people
    assert alice.count == 4
    assert alice.severity == "high"
    assert alice.engines == ("google", "bing", "duckduckgo")
    assert alice.themes == (("suicide_selfharm", 4),)
    assert (alice.first.isoformat(), alice.last.isoformat()) == (
        "2026-03-02T09:15:00+00:00", "2026-03-02T14:00:00+00:00")
    first, second = alice.terms
    # The same normalised term, however typed, is one line with its spellings.
    assert first.typed == ("how to kill myself", "How to KILL myself")
    assert (first.count, first.engines, first.matched_phrase) == (3, ("google", "bing"),
                                                                  "kill myself")
    assert (first.first.strftime("%H:%M"), first.last.strftime("%H:%M")) == ("09:15", "13:40")
    assert (second.typed, second.count, second.severity) == (("self harm pictures",), 1, "medium")
    # Each incident carries how often its concern repeated that day.
    assert [i.repeat for i in alice.incidents] == [3, 3, 3, 1]

    text = page_text(render_html(daily(db))).text
    for expected in ("“how to kill myself”", "“How to KILL myself”",
                     "Suicide and self-harm",
                     "google, bing, duckduckgo", "4 times", "matched “kill myself”"):
        assert expected in text


@pytest.mark.parametrize(
    ("day", "inside", "outside", "first", "last"),
    [
        # Clocks go forward at 01:00 GMT: the day ends at 23:00 UTC, and times change zone.
        (date(2026, 3, 29), ["2026-03-29T00:30", "2026-03-29T22:30"],
         ["2026-03-28T23:59", "2026-03-29T23:30"], "00:30:00 GMT", "23:30:00 BST"),
        # Clocks go back at 02:00 BST: the day starts at 23:00 UTC the day before, 25 hours.
        (date(2026, 10, 25), ["2026-10-24T23:30", "2026-10-25T23:30"],
         ["2026-10-24T22:59", "2026-10-26T00:00"], "00:30:00 BST", "23:30:00 GMT"),
    ],
)
def test_first_and_last_are_school_time_on_the_day_the_clocks_change(
    tmp_path, day, inside, outside, first, last
):
    db = store(tmp_path, [
        search(t, "alice", "kill myself", "suicide_selfharm", "high") for t in inside + outside
    ])
    report = daily(db, day)
    (alice,) = report.people
    assert alice.count == 2
    assert report.clocks_change
    text = page_text(render_html(report)).text
    assert f"First {first}" in text and f"Last {last}" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    offsets = [r["time"][-6:] for r in rows]
    assert offsets == (["+00:00", "+01:00"] if day.month == 3 else ["+01:00", "+00:00"])


# ---------------------------------------------------------------------------------------------
# An hour either side


def test_the_context_is_every_event_of_that_person_an_hour_either_side(tmp_path):
    db = store(tmp_path, [
        event("2026-03-02T08:59", user="alice", host="too-early.example"),
        event("2026-03-02T09:01", user="alice", host="before.example"),
        event("2026-03-02T09:59:59", user="alice", action="block", host="casino.example",
              categories=("gambling",)),
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high",
               reference="7KQ2M-9XDPA"),
        event("2026-03-02T10:30", user="alice", host="after.example"),
        event("2026-03-02T11:00", user="alice", host="edge.example"),
        event("2026-03-02T11:01", user="alice", host="too-late.example"),
        # someone else at the same time, and alice's device with nobody signed in
        event("2026-03-02T10:10", user="bob", host="bob.example"),
        event("2026-03-02T10:11", device="LAPTOP-7", host="device.example"),
    ])
    (alice,) = daily(db).people
    (window,) = alice.context
    hosts = [e.host for e in window.events]
    assert hosts == ["before.example", "casino.example", "www.google.com", "after.example",
                     "edge.example"]
    assert window.total == 5
    assert (window.start.strftime("%H:%M"), window.end.strftime("%H:%M")) == ("09:00", "11:00")
    (incident,) = [e for e in window.events if e.id in window.incident_ids]
    assert incident.search_term == "kill myself"
    assert window.command == ("schoolgate report context --user alice "
                              "--at 2026-03-02T10:00:00+00:00")
    # On the page the incident is marked among its neighbours, at school time.
    items = re.findall(r"<li class=\"act-(\w+)( incident)?\"><time>([^<]*)</time>",
                       render_html(daily(db)))
    assert items == [("allow", "", "09:01:00"), ("block", "", "09:59:59"),
                     ("allow", " incident", "10:00:00"), ("allow", "", "10:30:00"),
                     ("allow", "", "11:00:00")]

    # The command the page prints shows the same events (and the CLI view marks the incident).
    around = context_for_reference(db, "7kq2m9xdpa")
    assert around is not None and around.person == Person("user", "alice")
    assert [e.host for e in around.events] == hosts
    table = format_context(around, TZ)
    assert "user alice: 5 events" in table
    (marked,) = [line for line in table.splitlines() if line.startswith(">")]
    assert "search on google: kill myself" in marked and "suicide_selfharm (high)" in marked


def test_close_incidents_share_one_window_and_a_busy_hour_shows_the_nearest(tmp_path):
    busy = [event(f"2026-03-02T{9 + m // 60:02d}:{m % 60:02d}:30", user="alice",
                  host=f"page{m}.example") for m in range(0, 170)]
    db = store(tmp_path, busy + [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-02T10:50", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-02T15:00", "alice", "kill myself", "suicide_selfharm", "high"),
    ])
    (alice,) = daily(db).people
    first, second = alice.context
    # 10:00 and 10:50 overlap (09:00-11:50); 15:00 is a window of its own.
    assert [t.strftime("%H:%M") for t in first.incidents] == ["10:00", "10:50"]
    assert (first.start.strftime("%H:%M"), first.end.strftime("%H:%M")) == ("09:00", "11:50")
    assert first.command.endswith("--at 2026-03-02T10:25:00+00:00 --minutes 85")
    assert first.total == 170 + 2
    # The page shows CONTEXT_ROWS either side of each incident, not the whole busy hour.
    assert len(first.events) == 2 * (2 * CONTEXT_ROWS + 1)
    hosts = [e.host for e in first.events]
    assert hosts[:CONTEXT_ROWS] == [f"page{m}.example" for m in range(54, 60)]
    assert len(second.events) == 1 and second.total == 1
    text = page_text(render_html(daily(db))).text
    assert "09:00 to 11:50 · 172 events (26 shown)" in text


# ---------------------------------------------------------------------------------------------
# CSV, empty days, e-mail


def test_the_csv_has_the_pages_rows_in_the_pages_order(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T09:00", "carol", "buy weed", "drugs", "medium", engine="bing"),
        search("2026-03-02T10:00", "dave", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-02T11:00", "carol", "buy weed", "drugs", "medium"),
        illegal("2026-03-02T12:00", user="erin", client_ip="10.20.9.9", group="secondary"),
    ])
    report = daily(db)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["person_rank"], r["person"], r["time"][11:16], r["search_term"]) for r in rows] == [
        ("1", "erin", "12:00", ""),
        ("2", "dave", "10:00", "kill myself"),
        ("3", "carol", "09:00", "buy weed"),
        ("3", "carol", "11:00", "buy weed"),
    ]
    carol = rows[2]
    assert (carol["engine"], carol["theme"], carol["severity"], carol["action"],
            carol["repeat_count"], carol["person_count"], carol["group"],
            carol["client_ip"]) == ("bing", "drugs", "medium", "allow", "2", "2", "secondary",
                                    "10.20.1.5")
    assert sum(p.count for p in report.people) == len(rows)


def test_an_empty_day_says_so_plainly(tmp_path):
    db = store(tmp_path, [event("2026-03-02T10:00", user="alice", host="www.bbc.co.uk")])
    report = daily(db)
    assert report.is_empty
    text = page_text(render_html(report)).text
    assert "No suspicious searches on Monday 2 March 2026." in text
    assert "Schoolgate recorded 1 event that day; none matched" in text
    assert "by Schoolgate from 1 event recorded on Monday 2 March 2026" in text
    assert render_csv(report) == ",".join(CSV_COLUMNS) + "\r\n"
    subject, plain, _ = email_parts(report)
    assert subject == "Test Academy: no suspicious searches on Monday 2 March 2026"
    assert "No suspicious searches on Monday 2 March 2026." in plain

    # A day with no events at all may mean the gateway was down: the page says that too.
    nothing = daily(db, date(2026, 3, 4))
    assert "No events at all were recorded that day" in page_text(render_html(nothing)).text


def test_the_email_subject_names_nobody_and_the_text_names_everyone(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-02T11:00", "bob", "buy weed", "drugs", "medium"),
    ])
    report = daily(db)
    subject, plain, html = email_parts(report)
    assert subject == ("Test Academy: suspicious searches on Monday 2 March 2026: 2 people, "
                       "1 high")
    assert "alice" not in subject and "bob" not in subject
    assert "1. [HIGH] alice (user; secondary)" in plain
    assert '"kill myself" (matched "kill myself"): Suicide and self-harm, high' in plain
    assert "schoolgate report context --user alice --at 2026-03-02T10:00:00+00:00" in plain
    assert html == render_html(report)


def test_a_schools_copy_of_the_report_template_is_used_with_the_shared_style(tmp_path):
    # The school's daily.html includes _style.html, which it has not copied: the package's.
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "daily.html").write_text(
        '{% include "_style.html" %}\n<h1>Hillside: {{ r.school_name }}</h1>\n'
        "{% for p in r.people %}<p>{{ p.person.name }}</p>{% endfor %}\n", encoding="utf-8")
    db = store(tmp_path, [search("2026-03-02T10:00", "<b>alice</b>", "kill myself",
                                 "suicide_selfharm", "high")])
    report = daily(db)
    html_path, _ = write_daily(report, tmp_path / "reports", folder)
    html = html_path.read_text(encoding="utf-8")
    assert "<h1>Hillside: Test Academy</h1>" in html and "<p>&lt;b&gt;alice&lt;/b&gt;</p>" in html
    assert "<style>" in html
    assert email_parts(report, folder)[2] == html
    assert "<h1>Hillside" not in render_html(report)  # no folder: the package's copy


def test_report_files_are_named_by_day_and_readable_by_their_owner_only(tmp_path):
    db = store(tmp_path, [search("2026-03-02T10:00", "alice", "kill myself",
                                 "suicide_selfharm", "high")])
    html_path, csv_path = write_daily(daily(db), tmp_path / "reports")
    assert html_path.name == "suspicious-searches-2026-03-02.html"
    assert csv_path.name == "suspicious-searches-2026-03-02.csv"
    for path in (html_path, csv_path):
        assert path.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "reports").glob(".*"))  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# What is never shown


HOSTILE = [
    '<script>alert("x")</script> kill myself',
    '"><img src=x onerror=alert(1)> kill myself',
    "</style><style>body{display:none}</style> kill myself",
]


def test_a_hostile_search_term_is_text_on_the_page(tmp_path):
    db = store(tmp_path, [
        search(f"2026-03-02T10:0{i}", "alice", term, "suicide_selfharm", "high")
        for i, term in enumerate(HOSTILE)
    ] + [event("2026-03-02T10:30", user="<b>mallory</b>", host="x.example",
               search_term="<script>", theme="drugs", severity="low")])
    html = render_html(daily(db))
    page = page_text(html)
    # No element came from the data: only the template's own tags are on the page.
    assert "script" not in page.tags and "img" not in page.tags and "b" not in page.tags
    assert page.tags.count("style") == 1
    for term in HOSTILE:
        assert term in page.text  # shown, as typed, as text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # Defence in depth: the page forbids scripts and every outside fetch.
    assert "default-src 'none'" in html and "<script" not in html


def test_a_term_a_spreadsheet_would_run_is_quoted_in_the_csv(tmp_path):
    db = store(tmp_path, [search("2026-03-02T10:00", "alice", '=HYPERLINK("http://x.example")',
                                 "circumvention", "low")])
    (row,) = csv.DictReader(io.StringIO(render_csv(daily(db))))
    assert row["search_term"] == "'=HYPERLINK(\"http://x.example\")"


def test_an_illegal_list_hit_shows_the_host_and_list_only(tmp_path):
    secret = "/secret-entry-path-93af"
    # Even if a URL, a term or the rule's text reached the row, none may be shown.
    hit = Event(ts=at("2026-03-02T12:00"), client_ip="10.20.1.5", group="secondary",
                action="block", reference="ABCDE-FGHJK", user="erin", host="bad.example",
                url=f"http://bad.example{secret}", search_term=f"term{secret}",
                search_normalised=f"norm{secret}", matched_phrase=f"phrase{secret}",
                matched_rule=f"rule{secret}", severity="high", reason="illegal:IWF")
    db = store(tmp_path, [hit, search("2026-03-02T12:01", "erin", "kill myself",
                                      "suicide_selfharm", "high")])
    report = daily(db)
    (erin,) = report.people
    assert erin.illegal and erin.terms[0].illegal_list == "IWF"
    outputs = [render_html(report), render_csv(report), render_text(report),
               *email_parts(report),
               format_context(context_around(db, Person("user", "erin"),
                                             datetime(2026, 3, 2, 12, tzinfo=UTC)), TZ)]
    for text in outputs:
        assert "secret-entry" not in text
    html_text = page_text(outputs[0]).text
    assert "bad.example" in html_text and "IWF" in html_text
    (row, _) = csv.DictReader(io.StringIO(outputs[1]))
    assert (row["host"], row["illegal_list"], row["theme"], row["severity"]) == (
        "bad.example", "IWF", "illegal", "high")


# ---------------------------------------------------------------------------------------------
# Counts with their unit (issue #15): "1 person", and only a search counted as a search


def flagged_page(when: str, user: str, **fields) -> Event:
    # A keyword in an address (or a page's text) outside any search: a theme, no search term.
    return event(when, user=user, host="forum.example", url="http://forum.example/kill-myself",
                 matched_phrase="kill myself", theme="suicide_selfharm", severity="medium",
                 **fields)


def test_a_page_blocked_by_its_text_shows_the_words_that_weighed_most(tmp_path):
    db = store(tmp_path, [event(
        "2026-03-02T10:05", user="alice", action="block", reason="page-content",
        host="forum.example", url="https://forum.example/t/1", matched_phrase="kill myself",
        theme="suicide_selfharm", severity="high", page_score=23.0,
        page_phrases=("kill myself", "how to overdose"))])
    report = daily(db)
    assert report.pages == 1
    expected = "page https://forum.example/t/1 (words: kill myself, how to overdose)"
    assert expected in page_text(render_html(report)).text


def test_a_search_a_page_and_an_illegal_hit_are_counted_apart_with_their_units(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        flagged_page("2026-03-02T10:05", "alice"),
        illegal("2026-03-02T10:10", user="alice"),
    ])
    report = daily(db)
    assert (report.searches, report.pages, report.illegal_hits) == (1, 1, 1)
    summary = ("1 flagged search, 1 flagged page and 1 illegal-list hit by 1 person "
               "(2 high, 1 medium).")
    page = page_text(render_html(report)).text
    subject, plain, _ = email_parts(report)
    assert summary in page and summary in plain
    assert subject == ("Test Academy: suspicious searches on Monday 2 March 2026: 1 person, "
                       "2 high, 1 illegal-list")
    assert "alice (user; secondary, guest): 3 times," in plain
    # The person's list names what it holds: not every entry in it was a search.
    assert "Searches and sites" in page
    assert "from 3 events recorded on Monday 2 March 2026" in page


@pytest.mark.parametrize(
    ("events", "summary"),
    [
        # One of each is singular.
        ([search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high")],
         "1 flagged search by 1 person (1 high)."),
        # An illegal-list hit alone is no search at all.
        ([illegal("2026-03-02T10:00")], "1 illegal-list hit by 1 person (1 high)."),
        # Several are plural, people included.
        ([search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
          search("2026-03-02T11:00", "bob", "buy weed", "drugs", "medium"),
          illegal("2026-03-02T12:00"), illegal("2026-03-02T12:05")],
         "2 flagged searches and 2 illegal-list hits by 3 people (3 high, 1 medium)."),
    ],
)
def test_the_summary_counts_each_kind_with_its_unit(tmp_path, events, summary):
    report = daily(store(tmp_path, events))
    assert summary in page_text(render_html(report)).text
    assert summary in render_text(report)
    assert report.counts_text[0].upper() + report.counts_text[1:] + " (" in summary


def test_a_window_of_one_event_and_one_minute_reads_as_singulars(tmp_path):
    db = store(tmp_path, [search("2026-03-02T10:00", "alice", "kill myself",
                                 "suicide_selfharm", "high")])
    around = context_around(db, Person("user", "alice"), datetime(2026, 3, 2, 10, tzinfo=UTC),
                            minutes=1)
    assert format_context(around, TZ).startswith(
        "user alice: 1 event from 1 minute before to 1 minute after 2026-03-02 10:00:00 GMT")


def test_the_weekly_lead_counts_one_concern_and_one_person_in_the_singular(tmp_path):
    db = store(tmp_path, [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-02-23T10:00", "bob", "buy weed", "drugs", "medium"),
    ])
    s = build_weekly(db, date(2026, 3, 2), TZ, SCHOOL)
    lead = ("1 safeguarding concern this week involving 1 different person; 1 the week before "
            "involving 1 person (no change).")
    assert lead in page_text(render_weekly_html(s)).text
    assert lead in weekly_email_parts(s)[1]


# ---------------------------------------------------------------------------------------------
# How the store is read


def test_the_report_reads_while_the_gateway_holds_the_write_lock(tmp_path):
    db = store(tmp_path, [search("2026-03-02T10:00", "alice", "kill myself",
                                 "suicide_selfharm", "high")])
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO events (ts, client_ip, group_name, action) "
                   "VALUES ('2026-03-02T10:30:00.000Z', '10.0.0.1', 'staff', 'allow')")
    try:
        report = daily(db)  # a writer would wait for the lock; a WAL reader does not
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [p.person.name for p in report.people] == ["alice"]
    assert report.events_total == 1  # the uncommitted row is not seen


def test_a_missing_store_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="no event store at"):
        daily(tmp_path / "nowhere.sqlite3")
    assert not (tmp_path / "nowhere.sqlite3").exists()  # reading never creates it


def test_the_queries_use_the_indexes_of_migration_5(tmp_path):
    db = store(tmp_path, [])
    (m5,) = [m for m in MIGRATIONS if m.number == 5]
    # The partial index repeats the report's condition word for word, or SQLite ignores it.
    assert any(SAFEGUARDING_SQL in sql for sql in m5.statements)
    conn = sqlite3.connect(db)
    plans = {
        "day": f"SELECT * FROM events WHERE {SAFEGUARDING_SQL} AND ts >= ? AND ts < ?",
        "device": "SELECT * FROM events WHERE user IS NULL AND device = ? AND ts >= ? AND ts <= ?",
        "user": "SELECT * FROM events WHERE user = ? AND ts >= ? AND ts <= ?",
    }
    used = {name: " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}",
                                                           ("x",) * sql.count("?")))
            for name, sql in plans.items()}
    conn.close()
    assert "events_safeguarding_ts" in used["day"]
    assert "events_device_ts" in used["device"]
    assert "events_user_ts" in used["user"]


@pytest.mark.asyncio
async def test_events_written_by_the_gateways_writer_are_reported(tmp_path):
    db = tmp_path / "schoolgate.sqlite3"
    open_for_writing(db)
    writer = EventWriter(db, EventSettings(queue_size=100, batch_size=10, flush_interval=0.01))
    await writer.start()
    writer.put(search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"))
    writer.put(event("2026-03-02T10:05", user="alice", host="www.bbc.co.uk"))
    await writer.close()
    (alice,) = daily(db).people
    assert alice.person == Person("user", "alice") and alice.context[0].total == 2


# ---------------------------------------------------------------------------------------------
# The weekly summary


def test_the_weekly_summary_counts_and_trends_by_theme_and_group_without_names(tmp_path):
    this_week = [
        search("2026-03-02T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-03T10:00", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-04T10:00", "bob", "buy weed", "drugs", "medium", group="sixth_form",
               client_ip="10.20.50.7"),
        illegal("2026-03-08T23:30"),  # Sunday night, still this week
        event("2026-03-05T10:00", user="carol", action="block", theme="circumvention",
              reason="circumvention:doh", host="dns.google"),
    ]
    last_week = [
        search("2026-02-23T10:00", "dave", "buy weed", "drugs", "medium"),
        search("2026-02-24T10:00", "dave", "buy weed", "drugs", "medium"),
        search("2026-02-25T10:00", "erin", "buy weed", "drugs", "medium"),
        search("2026-02-26T10:00", "erin", "kill myself", "suicide_selfharm", "high"),
    ]
    outside = [search("2026-03-09T00:00", "zed", "kill myself", "suicide_selfharm", "high"),
               event("2026-03-03T10:00", user="alice", host="www.bbc.co.uk")]
    db = store(tmp_path, this_week + last_week + outside)
    s = build_weekly(db, date(2026, 3, 5), TZ, SCHOOL, now=datetime(2026, 3, 9, 7, tzinfo=UTC))
    assert s.week_start == date(2026, 3, 2)
    assert (s.total.this_week, s.total.last_week) == (5, 4)
    assert (s.people.this_week, s.people.last_week) == (4, 2)
    assert (s.illegal.this_week, s.illegal.last_week) == (1, 0)
    assert {t.key: (t.this_week, t.last_week) for t in s.themes} == {
        "suicide_selfharm": (2, 1), "drugs": (1, 3), "illegal": (1, 0), "circumvention": (1, 0)}
    assert {t.key: (t.this_week, t.last_week) for t in s.groups} == {
        "secondary": (3, 4), "sixth_form": (1, 0), "guest": (1, 0)}
    drugs = next(t for t in s.themes if t.key == "drugs")
    assert drugs.change_text == "-2 (-67%)"
    assert [c for _, c in s.days] == [1, 1, 1, 1, 0, 0, 1]

    outputs = [render_weekly_html(s), render_weekly_csv(s), *weekly_email_parts(s)]
    for text in outputs:
        for name in ("alice", "bob", "carol", "dave", "erin", "10.20.", "172.16.", "bad.example"):
            assert not re.search(rf"\b{re.escape(name)}\b", text), name
    page = page_text(outputs[0]).text
    assert "Suicide and self-harm 2 1 +1 (+100%)" in page
    assert "sixth_form 1 0 +1 (new)" in page
    assert "Monday 2 March to Sunday 8 March 2026" in page


def test_the_weekly_summary_follows_the_school_clock(tmp_path):
    # The week of the spring clock change: Monday 00:30 BST is Sunday 23:30 UTC.
    db = store(tmp_path, [
        search("2026-03-29T23:30", "alice", "kill myself", "suicide_selfharm", "high"),
        search("2026-03-29T22:59", "alice", "kill myself", "suicide_selfharm", "high"),
    ])
    s = build_weekly(db, date(2026, 3, 30), TZ, SCHOOL)
    assert (s.total.this_week, s.total.last_week) == (1, 1)
    assert s.days[0] == (date(2026, 3, 30), 1)
