"""The built-in timetable: yesterday's daily report at a set school time, the weekly summary on a
set day, and the retention purge each night, all in the school's time zone.

Started from the gateway's `running()` and stopped in `done()`. Each job runs in a worker thread
(the event loop never waits for the disk); a job that fails is logged and tried again at its
next time, and never stops the timetable. A report missed while the gateway was down is written
when it starts; not one for a time before the store held any event (a first start writes none).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config.model import ReportSettings
from .daily import build_daily, daily_paths, email_parts, write_daily
from .reading import local_midnight, recorded_before
from .retention import purge
from .weekly import build_weekly, week_start, weekly_email_parts, weekly_paths, write_weekly

__all__ = ["ReportSchedule", "SendEmail", "next_at", "previous_at"]

log = logging.getLogger("schoolgate.reports")

SendEmail = Callable[[tuple[str, ...], str, str, str, tuple[Path, ...]], Awaitable[None]]
"""(to, subject, text, html, attachments): delivers one e-mail (the alert senders' SMTP)."""


def next_at(after: datetime, at: time, tz: ZoneInfo, weekday: int | None = None) -> datetime:
    """The first instant (UTC) strictly after `after` when the school's clock reads `at` (on
    `weekday`, if given). When the clocks go back and `at` happens twice, the first; when they
    go forward over `at`, the same moment of the old time (an hour later by the new clock)."""
    local = after.astimezone(tz).date()
    for offset in range(0, 9):
        day = local + timedelta(days=offset)
        if weekday is not None and day.weekday() != weekday:
            continue
        instant = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
        if instant > after:
            return instant
    raise AssertionError("unreachable: a week always holds the weekday")


def previous_at(before: datetime, at: time, tz: ZoneInfo, weekday: int | None = None) -> datetime:
    """The last instant (UTC) at or before `before` when the school's clock read `at`."""
    local = before.astimezone(tz).date()
    for offset in range(0, 9):
        day = local - timedelta(days=offset)
        if weekday is not None and day.weekday() != weekday:
            continue
        instant = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
        if instant <= before:
            return instant
    raise AssertionError("unreachable: a week always holds the weekday")


class ReportSchedule:
    """Runs the daily report, weekly summary and purge at their times. `tick(now)` runs what is
    due (tests call it with their own clock); `start()` runs it from a background task."""

    def __init__(
        self,
        db_path: Path,
        school_name: str,
        tz: str,
        settings: ReportSettings,
        out_dir: Path,
        *,
        send_email: SendEmail | None = None,
        theme_titles: Mapping[str, str] | None = None,
        templates: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.db_path = db_path
        self.school_name = school_name
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.settings = settings
        self.out_dir = out_dir
        self.send_email = send_email
        self.theme_titles = theme_titles
        self.templates = templates
        """The school's templates folder (`daily.html`, `weekly.html`); None: the package's."""
        self.clock = clock
        self._task: asyncio.Task | None = None
        self._catching_up: set[str] = set()
        """Reports whose first run makes up for one missed before this start."""
        self.due: dict[str, datetime] = self._first_due(clock())
        self.last_purge: dict[str, int] | None = None

    # -- when ------------------------------------------------------------------------------

    def _when(self, job: str) -> tuple[time, int | None]:
        s = self.settings
        return {"daily": (s.daily_at, None), "weekly": (s.weekly_at, s.weekly_on),
                "purge": (s.purge_at, None)}[job]

    def _first_due(self, now: datetime) -> dict[str, datetime]:
        """Each job's first run: now for a report whose last run was missed (its file is not
        there) and for the purge; otherwise its next time."""
        due = {}
        for job in ("daily", "weekly"):
            at, weekday = self._when(job)
            last = previous_at(now, at, self.zone, weekday)
            missed = not self._paths(job, last)[0].exists()
            due[job] = last if missed else next_at(now, at, self.zone, weekday)
            if missed:
                self._catching_up.add(job)
        due["purge"] = now
        return due

    def _paths(self, job: str, scheduled: datetime) -> tuple[Path, Path]:
        if job == "daily":
            return daily_paths(self.out_dir, self._report_day(job, scheduled))
        return weekly_paths(self.out_dir, self._report_day(job, scheduled))

    def _report_day(self, job: str, scheduled: datetime) -> date:
        """What a run covers: for the daily report, the day before the run; for the weekly
        summary, the last whole Monday-to-Sunday week before it (given by its Monday)."""
        local = scheduled.astimezone(self.zone).date()
        if job == "daily":
            return local - timedelta(days=1)
        return week_start(local) - timedelta(days=7)

    # -- what ------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Run every job due at `now`; return their names. Each is rescheduled first, so a
        failing job is retried at its next time, not in a tight loop."""
        now = now or self.clock()
        ran = []
        for job, when in sorted(self.due.items(), key=lambda kv: kv[1]):
            if when > now:
                continue
            at, weekday = self._when(job)
            self.due[job] = next_at(now, at, self.zone, weekday)
            try:
                await self._run(job, when, now)
            except Exception:  # noqa: BLE001 - the timetable outlives any one job
                log.exception("the scheduled %s job failed; it runs again at %s", job,
                              self.due[job].astimezone(self.zone).isoformat(timespec="minutes"))
            ran.append(job)
        return ran

    async def _run(self, job: str, scheduled: datetime, now: datetime) -> None:
        if job == "purge":
            counts = await asyncio.to_thread(purge, self.db_path, self.settings.retention, now)
            self.last_purge = counts
            return
        day = self._report_day(job, scheduled)
        if job in self._catching_up:
            self._catching_up.discard(job)
            # A report "missed" before the gateway ever recorded anything (its first start)
            # would only tell the DSL that nothing was recorded: not written.
            end = local_midnight(day + timedelta(days=1 if job == "daily" else 7), self.zone)
            if not await asyncio.to_thread(recorded_before, self.db_path, end):
                log.debug("no %s report for %s: nothing was recorded before it ended", job, day)
                return
        if job == "daily":
            report = await asyncio.to_thread(
                build_daily, self.db_path, day, self.tz, self.school_name,
                theme_titles=self.theme_titles, now=now)
            paths = await asyncio.to_thread(write_daily, report, self.out_dir, self.templates)
            # In the thread too: the template files are read and compiled for each report.
            parts = await asyncio.to_thread(email_parts, report, self.templates)
            to = self.settings.email_to
            log.info("daily report for %s: %s, written to %s", day, report.counts_text, paths[0])
        else:
            summary = await asyncio.to_thread(
                build_weekly, self.db_path, day, self.tz, self.school_name,
                theme_titles=self.theme_titles, now=now)
            paths = await asyncio.to_thread(write_weekly, summary, self.out_dir, self.templates)
            parts = await asyncio.to_thread(weekly_email_parts, summary, self.templates)
            to = self.settings.weekly_email_to
            log.info("weekly summary for the week of %s written to %s", summary.week_start,
                     paths[0])
        if to and self.send_email is not None:
            subject, text, html = parts
            await self.send_email(to, subject, text, html, (paths[1],))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        self._task = asyncio.create_task(self._loop(), name="schoolgate report schedule")
        return self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001
                log.exception("report schedule: unexpected error")
            # Wake at least once a minute: a laptop's suspend or a clock correction must not
            # leave a long sleep overshooting the report time.
            wait = min(self.due.values()) - self.clock()
            await asyncio.sleep(min(max(wait.total_seconds(), 0.0), 60.0))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
