"""The `schoolgate` command line as a newcomer meets it: `--config` before or after the command, a
mistyped command answered with the nearest one, `schoolgate` (or a command group) alone listing
what there is, and the tables (`event`, `audit`, `requests list`) keeping their columns whatever
the values' widths. Piping into `head` is tests/e2e/test_cli.py (it needs a real pipe)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from sample_school import BASE_CONFIG, replace_once
from schoolgate import cli
from schoolgate.config.loader import load_config
from schoolgate.events import Event
from schoolgate.store import EVENT_COLUMNS, event_row, open_for_writing
from schoolgate.store.audit import record_change
from schoolgate.store.problem_reports import NewReport, add_report


def run(capsys, *argv: str) -> tuple[int | str | None, str, str]:
    """`schoolgate ARGV`: its status (argparse's exit code for a usage error), stdout, stderr."""
    try:
        status: int | str | None = cli.main(list(argv))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------------------------------------
# --config before the command, and after it


def test_config_before_the_command_is_the_config_used(write_config, capsys):
    path = write_config()
    status, out, err = run(capsys, "--config", str(path), "why", "--json", "--ip", "10.20.50.3",
                           "https://www.bet365.com/")
    assert status == 0, err
    verdict = json.loads(out)
    # sixth_form and its subnet exist only in this config, not in the example one.
    assert (verdict["group"], verdict["action"]) == ("sixth_form", "block")


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_before_or_after_a_nested_command(write_config, capsys, where):
    path = str(write_config())
    head = ["--config", path] if where == "before" else []
    tail = ["--config", path] if where == "after" else []
    status, out, err = run(capsys, *head, "lists", "show", "--json", *tail)
    assert status == 0, err
    assert {c["name"] for c in json.loads(out)["categories"]} == {
        "gambling", "social_networks", "education"}


def test_config_after_the_command_wins_over_one_before(write_config, tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    status, _, err = run(capsys, "--config", str(write_config()), "why", "--config",
                         str(missing), "x.com")
    assert status == 2
    assert err == f"schoolgate: {missing}: configuration file not found\n"


def test_without_config_the_environment_names_it(write_config, monkeypatch, capsys):
    monkeypatch.setenv("SCHOOLGATE_CONFIG", str(write_config()))
    status, out, err = run(capsys, "why", "--json", "--ip", "10.20.50.3", "https://bet365.com/")
    assert status == 0, err
    assert json.loads(out)["group"] == "sixth_form"


# ---------------------------------------------------------------------------------------------
# A mistyped command, a wrong choice


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["whi", "x.com"], "unknown command 'whi'; did you mean `why`?"),
        (["reloda"], "unknown command 'reloda'; did you mean `reload`?"),
        (["lists", "shwo"], "unknown command 'shwo'; did you mean `show`?"),
        (["report", "dialy"], "unknown command 'dialy'; did you mean `daily`?"),
        (["requests", "list", "--status", "opn"], "did you mean 'open'?"),
    ],
)
def test_a_mistyped_command_gets_the_nearest_one(capsys, argv, said):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert said in err
    assert out == ""


def test_a_command_like_no_other_gets_no_guess(capsys):
    status, _, err = run(capsys, "xyzzy")
    assert status == 2
    assert "unknown command 'xyzzy' (`schoolgate --help` lists every command)" in err
    assert "did you mean" not in err


# ---------------------------------------------------------------------------------------------
# `schoolgate` alone, and a command group alone


def _commands() -> list[str]:
    (sub,) = [a for a in cli.parser()._actions if a.dest == "command"]
    return list(sub.choices)


def test_schoolgate_alone_lists_every_command_and_exits_0(capsys):
    status, out, err = run(capsys)
    assert status == 0
    assert err == ""
    listed = re.findall(r"^    (\S+)\s", out, re.M)
    assert listed == _commands()


@pytest.mark.parametrize(
    ("group", "verbs"),
    [
        ("lists", ["import", "show"]),
        ("report", ["daily", "weekly", "context"]),
        ("requests", ["list", "approve", "deny"]),
        ("export", ["user"]),
        ("config", ["check"]),
    ],
)
def test_a_command_group_alone_lists_its_commands(capsys, group, verbs):
    status, out, err = run(capsys, group)
    assert status == 0, err
    assert out.startswith(f"usage: schoolgate {group} ")
    assert re.findall(r"^    (\S+)\s", out, re.M) == verbs


def test_a_verb_still_needs_its_own_arguments(capsys):
    # The groups' verbs are optional now; a verb's own required arguments are not.
    status, _, err = run(capsys, "requests", "approve")
    assert status == 2
    assert "the following arguments are required: N, --by" in err


# ---------------------------------------------------------------------------------------------
# Tables keep their columns


def _value_columns(lines: list[str], label: re.Pattern[str]) -> set[int]:
    """Where the value starts on each line: after `label` and the spaces that follow it."""
    columns = set()
    for line in lines:
        m = label.match(line)
        assert m, line
        columns.add(m.end())
    return columns


def test_event_lines_up_its_values_whatever_the_longest_name(config, capsys):
    db = config.database_path
    open_for_writing(db)
    event = Event(ts=1_780_000_000.0, client_ip="10.20.1.5", group="secondary", action="block",
                  reference="7KQ2M-9XDPA", user="alice", host="www.google.com",
                  url="https://www.google.com/search?q=kill+myself", search_term="kill myself",
                  search_normalised="kill myself", matched_phrase="kill myself",
                  theme="suicide_selfharm", severity="high", engine="google",
                  reason="keywords")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
                     f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})", event_row(event))
    conn.close()
    status, out, err = run(capsys, "event", "7KQ2M-9XDPA", "--config", str(config.path))
    assert status == 0, err
    lines = [line for line in out.splitlines() if line]
    assert [line.split()[0] for line in lines] == ["id", *EVENT_COLUMNS]
    assert len(_value_columns(lines, re.compile(r"\S+ +"))) == 1, out
    assert "search_normalised  kill myself" in out


def test_event_values_cannot_break_the_columns(config, capsys):
    db = config.database_path
    open_for_writing(db)
    event = Event(ts=1_780_000_000.0, client_ip="10.20.1.5", group="secondary", action="allow",
                  reference="7KQ2M-9XDPB", host="www.google.com",
                  search_term="line one\nsearch_normalised  forged\x1b[2J")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
                     f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})", event_row(event))
    conn.close()
    status, out, _ = run(capsys, "event", "7KQ2M-9XDPB", "--config", str(config.path))
    assert status == 0
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 1 + len(EVENT_COLUMNS)
    assert "\x1b" not in out
    assert r"line one\nsearch_normalised  forged\x1b[2J" in out


def test_audit_lines_up_what_was_done_whatever_the_names(config, capsys):
    db = config.database_path
    record_change(db, actor="Someone With A Very Long Name (IT)", action="block",
                  target="example.org", scope="all groups", reason="a test")
    record_change(db, actor="me", action="allow", target="bbc.co.uk", scope="staff",
                  reason="line\x1b[2Jbreak")
    status, out, err = run(capsys, "audit", "--config", str(config.path))
    assert status == 0, err
    rows = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(rows) == 2
    what = {line.index(verb) for line, verb in zip(rows, ("block", "allow"), strict=True)}
    assert len(what) == 1, out
    reasons = [line for line in out.splitlines() if line.startswith(" ")]
    assert {len(line) - len(line.lstrip()) for line in reasons} == {len(rows[0].split()[0]) + 2}
    assert "\x1b" not in out


def test_requests_list_lines_up_under_a_long_time_zone(write_config, capsys):
    path = write_config(replace_once(BASE_CONFIG, "timezone: Europe/London",
                                     "timezone: America/Argentina/Buenos_Aires"))
    config = load_config(path)
    open_for_writing(config.database_path)
    for url in ("http://bet365.com/", "http://facebook.com/x"):
        add_report(config.database_path, NewReport(
            kind="unblock", url=url, host=url.split("/")[2], reason="homework",
            client_ip="10.20.1.5", group="secondary", reference=None, user="alice"))
    status, out, err = run(capsys, "requests", "list", "--config", str(path))
    assert status == 0, err
    header, *rest = out.splitlines()
    rows = [line for line in rest if not line.startswith("       ")]
    assert len(rows) == 2
    assert {row.index("unblock") for row in rows} == {header.index("KIND")}, out


def test_requests_list_lines_up_under_a_short_time_zone(write_config, capsys):
    path = write_config(replace_once(BASE_CONFIG, "timezone: Europe/London", "timezone: UTC"))
    config = load_config(path)
    open_for_writing(config.database_path)
    add_report(config.database_path, NewReport(
        kind="unblock", url="http://bet365.com/", host="bet365.com", reason="homework",
        client_ip="10.20.1.5", group="secondary", reference=None, user="alice"))
    status, out, err = run(capsys, "requests", "list", "--config", str(path))
    assert status == 0, err
    header, row, *_ = out.splitlines()
    assert row.index("unblock") == header.index("KIND"), out


def test_config_path_default_is_shown_in_every_commands_help(capsys):
    status, out, _ = run(capsys, "why", "--help")
    assert status == 0
    assert "--config PATH" in out and "config/schoolgate.yaml" in out


def test_every_command_group_takes_config(write_config, tmp_path: Path, capsys):
    # The global --config reaches every command's function, however deep it is.
    missing = tmp_path / "nowhere.yaml"
    for argv in (["purge", "--dry-run"], ["report", "weekly"], ["export", "user", "alice"],
                 ["requests", "list"], ["lists", "show"], ["event", "7KQ2M-9XDPA"],
                 ["audit"], ["config", "check"], ["reload"]):
        status, _, err = run(capsys, "--config", str(missing), *argv)
        assert (status, err) == (2, f"schoolgate: {missing}: configuration file not found\n"), argv


# ---------------------------------------------------------------------------------------------
# A mistyped group gets the nearest one too


@pytest.mark.parametrize(
    "argv",
    [
        ["block", "example.org", "--group", "secondry", "--reason", "r", "--by", "me"],
        ["unallow", "example.org", "--group", "secondry", "--by", "me"],
        ["check", "--group", "secondry"],
        ["requests", "approve", "1", "--by", "me", "--group", "secondry"],
        ["why", "--group", "secondry", "https://example.org/"],
    ],
    ids=lambda a: a[0],
)
def test_a_mistyped_group_gets_the_nearest_one(config, capsys, argv):
    if argv[0] == "requests":
        open_for_writing(config.database_path)
        add_report(config.database_path, NewReport(
            kind="unblock", url="http://bet365.com/", host="bet365.com", reason="homework",
            client_ip="10.20.1.5", group="secondary", reference=None, user="alice"))
    status, out, err = run(capsys, *argv, "--config", str(config.path))
    assert status == 2
    assert err == ("schoolgate: --group: no group 'secondry'; defined groups: primary, "
                   "secondary, sixth_form, staff, guest; did you mean 'secondary'?\n")
