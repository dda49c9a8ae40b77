"""The daily report and weekly summary as a DSL sees them: rendered by a real browser (headless
Chromium) at a phone's size, in light and dark mode. Screenshots are kept under
test-artifacts/reports/ for a person to look at; the test checks the page's text, that nothing
from the data became markup or ran, and that the page is not blank."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import zlib
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schoolgate.events import Event
from schoolgate.reports import build_daily, build_weekly, render_html, render_weekly_html
from schoolgate.store import EVENT_COLUMNS, event_row, open_for_writing

from .harness import ROOT

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts" / "reports"
PHONE = (412, 915)  # a common Android phone's viewport, in CSS pixels
HOSTILE = "<script>document.title='owned'</script> kill myself"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium): the report's browser "
                    "rendering is not checked")
    return path


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("report") / "schoolgate.sqlite3"
    open_for_writing(db)

    def search(when, user, term, theme, severity, engine="google", **kw):
        return Event(ts=_at(when), client_ip="10.20.1.5", group="year9", action="allow",
                     reference=None, user=user, host=f"www.{engine}.com",
                     url=f"https://www.{engine}.com/search?q=x", search_term=term,
                     search_normalised=term.lower(), matched_phrase="kill myself", theme=theme,
                     severity=severity, engine=engine, **kw)

    events = [
        search("2026-03-02T09:15", "amelia.jones", "how to kill myself", "suicide_selfharm",
               "high"),
        search("2026-03-02T09:17", "amelia.jones", HOSTILE, "suicide_selfharm", "high",
               engine="bing"),
        Event(ts=_at("2026-03-02T09:20"), client_ip="10.20.1.5", group="year9", action="allow",
              reference=None, user="amelia.jones", host="www.bbc.co.uk",
              url="https://www.bbc.co.uk/bitesize"),
        search("2026-03-02T13:05", "oliver.smith", "buy weed near me", "drugs", "medium"),
        Event(ts=_at("2026-03-02T14:00"), client_ip="172.16.0.9", group="guest", action="block",
              reference="7KQ2M-9XDPA", host="bad.example", url="http://bad.example/never-shown",
              severity="high", reason="illegal:IWF"),
    ]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
            [event_row(e) for e in events],
        )
    conn.close()
    return db


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in.append(tag)

    def handle_endtag(self, tag):
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag):]

    def handle_data(self, data):
        if "title" in self._in:
            self.title += data
        elif "style" not in self._in:
            self.text.append(data)


def _dom(chromium: str, profile: Path, page: Path) -> _Dom:
    result = _browser(chromium, profile, "--dump-dom", page.as_uri())
    dom = _Dom()
    dom.feed(result.stdout)
    return dom


def _png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered 8-bit RGB(A) rows of the PNG Chromium wrote."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        offset = y * (stride + 1)
        kind, line = raw[offset], bytearray(raw[offset + 1:offset + 1 + stride])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i] for i in range(len(r)) if i % bpp < 3) for r in rows]


def _brightness(rows: list[bytes]) -> float:
    total = sum(sum(r) for r in rows)
    return total / sum(len(r) for r in rows) / 255


def test_the_daily_report_reads_on_a_phone(chromium, store, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = build_daily(store, date(2026, 3, 2), "Europe/London", "Test Academy")
    page = ARTIFACTS / "daily-report.html"
    page.write_text(render_html(report), encoding="utf-8")

    shots = {}
    for mode, extra in (("light", ()), ("dark", ("--blink-settings=preferredColorScheme=0",))):
        shot = ARTIFACTS / f"daily-report-phone-{mode}.png"
        shot.unlink(missing_ok=True)
        _browser(chromium, tmp_path / mode, f"--screenshot={shot}",
                 f"--window-size={PHONE[0]},{PHONE[1]}", *extra, page.as_uri())
        width, height, rows = _png(shot)
        assert (width, height) == PHONE
        # Not blank: the page has text on it, so many rows hold more than one colour.
        assert sum(len(set(zip(r[::3], r[1::3], r[2::3], strict=False))) > 1 for r in rows) > 100
        shots[mode] = _brightness(rows)
    # The reader's dark setting is honoured: a dark page, not white.
    assert shots["light"] > 0.8 and shots["dark"] < 0.3, shots

    dom = _dom(chromium, tmp_path / "dom", page)
    text = " ".join(" ".join(dom.text).split())
    for expected in ("Suspicious searches", "Monday 2 March 2026", "amelia.jones",
                     "oliver.smith", "“how to kill myself”", "“buy weed near me”",
                     "Suicide and self-harm", "Drugs and substance misuse", "google, bing",
                     "Browsing an hour either side", "https://www.bbc.co.uk/bitesize",
                     "bad.example", "IWF", "IP address (no user or device known)"):
        assert expected in text, expected
    # The hostile term is text on the page; no script ran and none was added to the DOM.
    assert HOSTILE in text
    assert "script" not in dom.tags
    assert dom.title.startswith("Suspicious searches, Monday 2 March 2026")
    assert "never-shown" not in text
    # Most serious first: the illegal-list hit, then the high, then the medium.
    order = [text.index(name) for name in ("172.16.0.9", "amelia.jones", "oliver.smith")]
    assert order == sorted(order)


def test_the_weekly_summary_reads_on_a_phone(chromium, store, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = build_weekly(store, date(2026, 3, 2), "Europe/London", "Test Academy")
    page = ARTIFACTS / "weekly-summary.html"
    page.write_text(render_weekly_html(summary), encoding="utf-8")
    shot = ARTIFACTS / "weekly-summary-phone.png"
    shot.unlink(missing_ok=True)
    _browser(chromium, tmp_path / "p", f"--screenshot={shot}",
             f"--window-size={PHONE[0]},{PHONE[1]}", page.as_uri())
    assert _png(shot)[:2] == PHONE

    dom = _dom(chromium, tmp_path / "dom", page)
    text = " ".join(" ".join(dom.text).split())
    assert "4 safeguarding concerns this week involving 3 different people" in text
    assert "Suicide and self-harm 2 0 +2 (new)" in text
    for name in ("amelia", "oliver", "10.20.1.5", "172.16.0.9", "bad.example"):
        assert name not in text
