"""Alert decisions without a network: the routing file (format, file:line errors), who hears
about what (staff concerns to the headteacher, high severity and illegal-list hits always),
deduplication, the rate-limit pause, what the message says and what it must never say."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from sample_school import REPO
from schoolgate.alerts import AlertEngine, AlertTemplates, TemplateError
from schoolgate.alerts.messages import email_folder
from schoolgate.alerts.senders import fact_lines
from schoolgate.config.model import Routing
from schoolgate.config.routing import RoutingError, load_routing
from schoolgate.events import Event
from schoolgate.store import open_for_writing

ROOT = REPO
SHIPPED = ROOT / "alerts" / "routing.yaml"
TEMPLATES = ROOT / "templates" / "email"
T0 = 1_700_000_000.0  # Tue 14 Nov 2023 22:13:20 UTC (GMT in London)

ROUTING = f"""\
staff_groups: [staff]
templates: {TEMPLATES}
smtp: {{host: 127.0.0.1, port: 2525, from: "Schoolgate <schoolgate@school.example>"}}
webhooks:
  dsl-teams: {{url: "http://127.0.0.1:9/hook", format: teams}}
rules:
  # First on purpose: a catch-all for the DSL must still never see a concern about staff.
  - name: everything to the DSL
    min_severity: medium
    recipients: [dsl@school.example]
  - name: staff to the head
    about: staff
    min_severity: medium
    recipients: [head@school.example]
fallback:
  pupils: {{recipients: [dsl@school.example]}}
  staff: {{recipients: [head@school.example]}}
limits: {{dedup_window: 30m, max_alerts: 3, per: 10m}}
"""


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def event(**fields) -> Event:
    base = dict(
        ts=T0, client_ip="10.20.1.7", group="ks3", action="block", reference="ABCDE-12345",
        user="jsmith", device="LAPTOP-0042", method="GET", scheme="https", host="www.google.com",
        url="https://www.google.com/search?q=how+to+kil+myself", search_term="how to kil myself",
        search_normalised="how to kil myself", matched_phrase="kil myself",
        theme="suicide_selfharm", severity="high", engine="google", reason="keyword",
    )
    base.update(fields)
    return Event(**base)


def illegal_event(**fields) -> Event:
    base = dict(
        ts=T0, client_ip="10.20.1.8", group="ks4", action="block", reference="KQ7RT-M2XZP",
        user="abrown", device="IPAD-07", method="GET", scheme="https",
        host="bad.example", url=None, reason="illegal:iwf", categories=("illegal",),
        matched_rule="iwf:5f0c1e", theme=None, severity=None,
    )
    base.update(fields)
    return Event(**base)


@pytest.fixture
def routing(tmp_path: Path) -> Routing:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING, encoding="utf-8")
    return load_routing(path)


class Engine:
    """An engine with a fake clock that collects what it queues and the metric outcomes."""

    def __init__(self, routing: Routing, **kw):
        self.queued: list = []
        self.outcomes: list[tuple[str, str]] = []
        self.clock = Clock()
        self.engine = AlertEngine(
            routing, self.queued.append, clock=self.clock, school="Hillside Academy",
            list_titles={"iwf": "IWF URL list"},
            on_outcome=lambda c, o: self.outcomes.append((c, o)), **kw,
        )

    def consider(self, e: Event) -> list:
        return self.engine.consider(e)


# ---------------------------------------------------------------------------------------------
# The shipped routing file


def test_shipped_routing_file_loads_and_routes_staff_concerns_to_the_headteacher():
    routing = load_routing(SHIPPED)
    AlertTemplates(routing.templates)  # every template compiles
    (staff,) = routing.route("drugs", "medium", "staff", must_alert=False)
    assert staff.recipients == ("headteacher@example.sch.uk",)
    (pupil,) = routing.route("suicide_selfharm", "high", "ks3", must_alert=True)
    assert "dsl@example.sch.uk" in pupil.recipients
    assert "headteacher@example.sch.uk" not in pupil.recipients
    # A medium concern in an ordinary theme is for the daily report, not an alert.
    assert routing.route("drugs", "medium", "ks3", must_alert=False) == []


# ---------------------------------------------------------------------------------------------
# Who hears


def test_a_concern_about_staff_goes_to_the_headteacher_not_the_dsl(routing):
    eng = Engine(routing)
    alerts = eng.consider(event(group="staff", user="mr.jones", severity="medium"))
    assert [a.destination.recipients for a in alerts] == [("head@school.example",)]
    assert all("dsl@school.example" not in a.destination.recipients for a in eng.queued)
    assert "a member of staff" in alerts[0].text


def test_a_concern_about_a_pupil_goes_to_the_dsl(routing):
    eng = Engine(routing)
    (alert,) = eng.consider(event(severity="medium"))
    assert alert.destination.recipients == ("dsl@school.example",)
    assert alert.destination.rule == "everything to the DSL"


def test_high_severity_always_alerts_even_when_no_rule_matches(tmp_path):
    # Only a rule for drugs: a high suicide concern still reaches the fallback.
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(
        "  - name: everything to the DSL\n    min_severity: medium\n",
        "  - name: drugs only\n    themes: [drugs]\n"), encoding="utf-8")
    routing = load_routing(path)
    eng = Engine(routing)
    (pupil,) = eng.consider(event(severity="high"))
    assert pupil.destination.rule == "fallback.pupils"
    assert pupil.destination.recipients == ("dsl@school.example",)
    # ...while a low one with no rule does not alert at all.
    assert eng.consider(event(severity="low", user="other")) == []


@pytest.mark.parametrize(
    "fields",
    [
        # No theme: an ordinary category block is for reports, not alerts.
        dict(theme=None, severity=None, reason="category"),
        # Below every rule's minimum and not high.
        dict(severity="low"),
    ],
)
def test_events_no_rule_wants_do_not_alert(routing, fields):
    eng = Engine(routing)
    assert eng.consider(event(**fields)) == []
    assert eng.queued == [] and eng.outcomes == []


def test_continue_adds_a_second_channel(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(
        "  - name: everything to the DSL\n",
        "  - name: teams too\n    channel: dsl-teams\n    continue: true\n"
        "  - name: everything to the DSL\n"), encoding="utf-8")
    eng = Engine(load_routing(path))
    alerts = eng.consider(event())
    assert [a.channel for a in alerts] == ["dsl-teams", "email"]


# ---------------------------------------------------------------------------------------------
# What the alert says


def test_the_alert_says_who_when_what_and_how_to_see_the_hour_either_side(routing):
    eng = Engine(routing)
    (alert,) = eng.consider(event())
    text = alert.text
    for expected in (
        "jsmith", "LAPTOP-0042", "10.20.1.7", "ks3",          # who
        "Tue 14 Nov 2023 22:13:20 GMT", "2023-11-14 22:13:20 UTC",  # when: school time and UTC
        '"how to kil myself" on google', '"kil myself"',       # engine, term as typed, phrase
        "Suicide and self-harm", "suicide_selfharm", "high",   # theme, severity
        "blocked",                                             # action
        "schoolgate report context --reference ABCDE-12345",   # the hour either side
        "21:13 to 23:13",
    ):
        assert expected in text, expected
    assert "jsmith" not in alert.subject  # subjects show on lock screens
    assert "ABCDE-12345" in alert.subject
    assert alert.html is not None and "&ldquo;how to kil myself&rdquo;" in alert.html


def test_a_page_blocked_by_its_words_alerts_with_the_phrases_and_score(routing):
    eng = Engine(routing)
    (alert,) = eng.consider(event(
        host="forum.example", url="https://forum.example/t/1", search_term=None, engine=None,
        search_normalised=None, matched_phrase="kill myself", reason="page-content",
        page_score=23.0, page_phrases=("kill myself", "how to overdose")))
    assert "Words on page:  kill myself, how to overdose (score 23)" in alert.text
    assert "https://forum.example/t/1" in alert.text
    assert "Searched for" not in alert.text and "Matched phrase" not in alert.text
    assert alert.html is not None and "kill myself, how to overdose (score 23)" in alert.html
    assert ("Words on the page", "kill myself, how to overdose (score 23)") in fact_lines(
        alert.facts)


def test_html_escapes_what_the_user_typed(routing):
    eng = Engine(routing)
    (alert,) = eng.consider(event(search_term="<script>alert(1)</script> kil myself"))
    assert "<script>" not in alert.html and "&lt;script&gt;" in alert.html


def test_an_illegal_list_hit_always_alerts_with_host_and_list_name_only(tmp_path):
    # No rule mentions illegal content, and the hit carries things that must never show.
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace("    min_severity: medium\n    recipients: [dsl",
                                    "    themes: [drugs]\n    recipients: [dsl"),
                    encoding="utf-8")
    eng = Engine(load_routing(path))
    secret_path = "/gallery/9f8e7d/img0001.jpg"
    hit = illegal_event(url=f"https://bad.example{secret_path}",  # the gateway sends None;
                        search_term="secret keyword",             # belt and braces here
                        search_normalised="secret keyword", matched_phrase="secret keyword")
    (alert,) = eng.consider(hit)
    assert alert.destination.recipients == ("dsl@school.example",)
    assert alert.facts["theme"] == "illegal" and alert.facts["severity"] == "high"
    everything = "\n".join([alert.subject, alert.text, alert.html or "",
                            json.dumps(dict(alert.facts))])
    assert "bad.example" in everything and "IWF URL list" in everything
    for secret in (secret_path, "9f8e7d", "https://bad.example", "secret keyword", "5f0c1e"):
        assert secret not in everything, secret
    assert "Do NOT visit the site" in alert.text


def test_an_illegal_hit_by_staff_goes_to_the_headteacher(routing):
    eng = Engine(routing)
    (alert,) = eng.consider(illegal_event(group="staff", user="mr.jones"))
    assert alert.destination.recipients == ("head@school.example",)


# ---------------------------------------------------------------------------------------------
# Deduplication and the rate limit


def test_same_person_and_theme_alert_once_per_window_and_repeats_are_counted(routing):
    eng = Engine(routing)
    assert len(eng.consider(event(search_term="kil myself"))) == 1
    for i, term in enumerate(["kms", "want to die", "kms"]):
        eng.clock.advance(60)
        assert eng.consider(event(search_term=term)) == [], i
    assert eng.outcomes.count(("email", "deduplicated")) == 3
    # Another theme, or another person, is a new concern.
    assert len(eng.consider(event(theme="cse_grooming", severity="medium"))) == 1
    assert len(eng.consider(event(user="kpatel"))) == 1
    # After the window, the next alert reports the repeats it held back.
    eng.clock.advance(30 * 60)
    (alert,) = eng.consider(event(search_term="end my life"))
    assert alert.facts["repeats"] == {"count": 3, "since": "22:14", "until": "22:16",
                                      "terms": ["kms", "want to die"]}
    assert "3 more like this" in alert.text and '"want to die"' in alert.text


@pytest.mark.parametrize(
    "first, second, same",
    [
        # Without a user, the device is the person; without either, the IP address.
        (dict(user=None), dict(user=None, client_ip="10.20.9.9"), True),
        (dict(user=None, device=None), dict(user=None, device=None), True),
        (dict(user=None, device=None), dict(user=None, device=None, client_ip="10.20.9.9"),
         False),
    ],
)
def test_dedup_person_is_user_else_device_else_ip(routing, first, second, same):
    eng = Engine(routing)
    assert len(eng.consider(event(**first))) == 1
    assert (eng.consider(event(**second)) == []) is same


def test_rate_limit_sends_one_pause_message_then_holds(routing):
    eng = Engine(routing)  # at most 3 alerts per 10 minutes per destination
    for i in range(3):
        assert [a.kind for a in eng.consider(event(user=f"pupil{i}"))] == ["alert"]
    fourth = eng.consider(event(user="pupil3"))
    assert [(a.kind, a.status) for a in fourth] == [("paused", "pending"), ("alert", "held")]
    pause = fourth[0]
    assert pause.subject == "[Schoolgate] Alerts paused until 22:23"
    assert "paused until 22:23" in pause.text and "daily" in pause.text
    for i in range(4, 8):
        eng.clock.advance(30)
        assert [(a.kind, a.status) for a in eng.consider(event(user=f"pupil{i}"))] == [
            ("alert", "held")]
    assert sum(a.kind == "paused" for a in eng.queued) == 1
    assert eng.outcomes.count(("email", "rate_limited")) == 5
    # An illegal-list hit is never paused.
    (hit,) = eng.consider(illegal_event())
    assert hit.status == "pending"
    # After the pause the next alert goes out and says how many were held.
    eng.clock.advance(10 * 60)
    (after,) = eng.consider(event(user="pupil99"))
    assert after.status == "pending"
    assert after.facts["held"] == {"count": 5, "since": "22:13", "until": "22:23"}
    assert "5 alerts to you were held" in after.text


def test_rate_limits_count_each_destination_separately(routing):
    eng = Engine(routing)
    for i in range(3):
        eng.consider(event(user=f"pupil{i}"))
    (head,) = eng.consider(event(user="mr.jones", group="staff"))
    assert head.status == "pending" and head.destination.recipients == ("head@school.example",)


def test_restored_windows_stop_a_repeat_after_a_restart(routing):
    eng = Engine(routing)
    eng.engine.restore([("user:jsmith|suicide_selfharm", T0 - 60)])
    assert eng.consider(event()) == []
    assert len(eng.consider(event(theme="drugs", severity="high"))) == 1


# ---------------------------------------------------------------------------------------------
# consider() decides only: no file or database, and never raises


def test_consider_does_no_io(routing, monkeypatch):
    eng = Engine(routing)

    def refuse(*args, **kwargs):
        raise AssertionError("I/O on the event loop")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    monkeypatch.setattr(Path, "stat", refuse)
    assert len(eng.consider(event())) == 1
    assert len(eng.consider(illegal_event())) == 1


def test_a_template_that_fails_while_rendering_still_alerts(routing, tmp_path, caplog):
    folder = tmp_path / "templates"
    folder.mkdir()
    for f in TEMPLATES.iterdir():
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "alert.txt").write_text("{{ a.no_such.thing }}\n", encoding="utf-8")
    eng = Engine(routing, templates=AlertTemplates(folder))
    (alert,) = eng.consider(event())
    assert "plain listing" in alert.text and "jsmith" in alert.text
    assert "alert.txt failed" in caplog.text


def test_a_template_with_a_syntax_error_is_refused_with_its_file_and_line(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    for f in TEMPLATES.iterdir():
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "paused.html").write_text("<p>\n{% if a.x %}\n</p>\n", encoding="utf-8")
    with pytest.raises(TemplateError) as e:
        AlertTemplates(folder)
    assert f"{folder / 'paused.html'}:" in str(e.value)


def test_email_templates_come_from_the_config_folder_then_the_package(tmp_path):
    # No `templates` in the routing file: the config's templates folder has email/alert.txt
    # only, so alert.html (and every other template) is the package's.
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(f"templates: {TEMPLATES}\n", ""), encoding="utf-8")
    routing = load_routing(path)
    assert routing.templates is None
    (tmp_path / "ours" / "email").mkdir(parents=True)
    (tmp_path / "ours" / "email" / "alert.txt").write_text(
        "Hillside alert about {{ a.person }} <{{ a.theme }}>\n", encoding="utf-8")
    eng = Engine(routing, template_folder=tmp_path / "ours")
    (alert,) = eng.consider(event())
    assert alert.text == "Hillside alert about jsmith <suicide_selfharm>\n"  # text: not escaped
    assert "Schoolgate safeguarding alert - Hillside Academy" in alert.html
    # The routing file's own folder wins over the config's.
    assert email_folder(routing, tmp_path / "ours") == tmp_path / "ours" / "email"
    assert email_folder(routing, None) is None
    with_own = dataclasses.replace(routing, templates=TEMPLATES)
    assert email_folder(with_own, tmp_path / "ours") == TEMPLATES


def test_the_outbox_migration(tmp_path):
    path = tmp_path / "s.sqlite3"
    open_for_writing(path)
    conn = sqlite3.connect(path)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(alert_outbox)")]
        recorded = conn.execute("SELECT name FROM schema_migrations WHERE number = 4").fetchone()
    finally:
        conn.close()
    assert recorded == ("alert outbox",)
    assert columns == ["id", "created", "kind", "channel", "recipients", "subject", "body",
                       "html", "payload", "dedup_key", "attempts", "next_attempt_at", "status",
                       "last_error", "sent_at"]


# ---------------------------------------------------------------------------------------------
# A bad routing file names the file, the line and the key

BAD = [
    # (what to change in ROUTING, line, key, part of the message)
    ("staff_groups: [staff]\n", "staff_groups: [staff]\nescalate: true\n", 2, "escalate",
     "unknown key (allowed: staff_groups, templates"),
    ("    min_severity: medium\n    recipients: [dsl",
     "    min_severity: urgent\n    recipients: [dsl", 9, "rules[0].min_severity",
     "must be one of high, medium, low, not 'urgent'"),
    ("  - name: staff to the head\n", "  - name: staff to the head\n    themes: [sucide]\n", 12,
     "rules[1].themes[0]", "did you mean 'suicide_selfharm'?"),
    ("    recipients: [dsl@school.example]\n  - name",
     "    channel: dsl-slack\n    recipients: [dsl@school.example]\n  - name", 10,
     "rules[0].channel", "unknown channel 'dsl-slack' (allowed: email, dsl-teams"),
    ("    recipients: [head@school.example]\nfallback",
     "    recipients: [head at school]\nfallback", 14, "rules[1].recipients[0]",
     "'head at school' is not an e-mail address"),
    ("  - name: everything to the DSL\n",
     "  - name: everything to the DSL\n    groups: [ks3, staff]\n", 9, "rules[0].groups",
     "names staff groups (staff)"),
    ('from: "Schoolgate <schoolgate@school.example>"}',
     'from: "Schoolgate <schoolgate@school.example>", starttls: true, implicit_tls: true}', 3,
     "smtp.implicit_tls", "cannot be combined with starttls"),
    ('from: "Schoolgate <schoolgate@school.example>"}',
     'from: "Schoolgate <schoolgate@school.example>", username: gw, password_file: nope.txt}',
     3, "smtp.password_file", "password file"),
    ("format: teams", "format: discord", 5, "webhooks.dsl-teams.format",
     "must be one of json, teams, slack, not 'discord'"),
    ("dedup_window: 30m", "dedup_window: half an hour", 18, "limits.dedup_window",
     "must be a duration such as 30s, 10m, 24h or 1d"),
    ("  staff: {recipients: [head@school.example]}\n", "", 15, "fallback.staff",
     "is required but missing"),
    ("    recipients: [dsl@school.example]\n  - name",
     "    channel: dsl-teams\n    recipients: [dsl@school.example]\n  - name", 11,
     "rules[0].recipients", "only means something for e-mail"),
]


@pytest.mark.parametrize("old, new, line, key, message", BAD, ids=[b[3] for b in BAD])
def test_a_bad_routing_file_names_file_line_and_key(tmp_path, old, new, line, key, message):
    assert old in ROUTING
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RoutingError) as e:
        load_routing(path)
    expected = f"{path}:{line}: {key}: "
    assert any(p.startswith(expected) and message in p for p in e.value.problems), (
        e.value.problems)


def test_routing_errors_collect_every_problem_and_never_echo_a_webhook_url(tmp_path):
    path = tmp_path / "routing.yaml"
    text = ROUTING.replace('"http://127.0.0.1:9/hook"', "ftp://secret-key-123@teams").replace(
        "max_alerts: 3", "max_alerts: 0")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RoutingError) as e:
        load_routing(path)
    assert len(e.value.problems) >= 2
    assert "secret-key-123" not in str(e.value)


def test_unknown_groups_are_reported_when_the_groups_are_known(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING, encoding="utf-8")
    with pytest.raises(RoutingError) as e:
        load_routing(path, known_groups={"ks3", "ks4", "staf"})
    assert e.value.problems == [
        f"{path}:1: staff_groups[0]: unknown group 'staff' (defined: ks3, ks4, staf); "
        "did you mean 'staf'?"]


def test_not_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(RoutingError) as e:
        load_routing(path)
    assert e.value.problems[0].startswith(f"{path}:2:1: not valid YAML")


def test_email_without_smtp_is_refused(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(
        'smtp: {host: 127.0.0.1, port: 2525, from: "Schoolgate <schoolgate@school.example>"}\n',
        ""), encoding="utf-8")
    with pytest.raises(RoutingError) as e:
        load_routing(path)
    assert f"{path}:7: rules[0]: e-mail needs an smtp: section" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Counts with their unit (issue #15): one is singular, in the text and the HTML part


def test_one_held_alert_one_repeat_block_and_a_pause_of_one_alert_read_as_singulars(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace("limits: {dedup_window: 30m, max_alerts: 3, per: 10m}",
                                    "limits: {dedup_window: 30m, max_alerts: 1, per: 1m}"),
                    encoding="utf-8")
    eng = Engine(load_routing(path))
    assert [a.kind for a in eng.consider(event(user="pupil1"))] == ["alert"]
    pause, held = eng.consider(event(user="pupil2"))
    assert (pause.kind, held.status) == ("paused", "held")
    for part in (pause.text, pause.html):
        assert "You have been sent 1 alert in the last 1 minute," in " ".join(part.split())
    assert ("Why", "1 alert in 1 minute") in fact_lines(pause.facts)  # a webhook's card
    eng.clock.advance(60)
    (after,) = eng.consider(event(user="pupil3"))
    for part in (after.text, after.html):
        assert ("1 alert to you was held while alerts were paused from 22:13 to 22:14; it is "
                "in the daily report.") in " ".join(part.split())
    assert ("Held", "1 alert held while paused from 22:13 to 22:14; see the daily report") in (
        fact_lines(after.facts))

    # Two of the same illegal-list hit in the window: the next alert says "1 more block".
    eng.consider(illegal_event())
    eng.clock.advance(60)
    assert eng.consider(illegal_event()) == []
    eng.clock.advance(30 * 60)
    (hit,) = eng.consider(illegal_event())
    for part in (hit.text, hit.html):
        assert "Also 1 more block like this from the same person" in " ".join(part.split())


def test_smtp_off_keeps_the_email_rules_and_records_their_alerts(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace(
        'smtp: {host: 127.0.0.1, port: 2525, from: "Schoolgate <schoolgate@school.example>"}\n',
        "smtp: off\n"), encoding="utf-8")
    routing = load_routing(path)
    assert routing.smtp is None and routing.email_recorded_only
    eng = Engine(routing)
    (alert,) = eng.consider(event())
    assert (alert.channel, alert.status) == ("email", "recorded")
    assert eng.outcomes == [("email", "recorded")]
    # The refusal of e-mail without any smtp: section says how to go without a mail server.
    path.write_text(ROUTING.replace(
        'smtp: {host: 127.0.0.1, port: 2525, from: "Schoolgate <schoolgate@school.example>"}\n',
        ""), encoding="utf-8")
    with pytest.raises(RoutingError, match=r"or `smtp: off` to record e-mail alerts in the "
                                           r"store and the log only"):
        load_routing(path)


def test_the_shipped_routing_file_sends_no_mail_until_a_server_is_set():
    # What a school expects of `make run` on the example: no mail to a server that is not there.
    assert load_routing(SHIPPED).email_recorded_only
