"""The readable difference between two configs (`configdiff.config_diff`), and the gateway's use of
it: a reload that changes the config appends one audit row with the lines, a reload that changes
nothing (or only command-line allow/block entries, which the CLI audits itself) appends none, and a
refused reload is recorded as refused."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry

from sample_school import BASE_CONFIG, replace_once
from schoolgate.config.diff import config_diff
from schoolgate.config.loader import load_config
from schoolgate.config.model import Config
from schoolgate.gateway.service import Gateway
from schoolgate.sources.localpolicy import LocalEntry, change_local_policy, local_policy_path
from schoolgate.store.audit import read_audit

SCHEDULES = """\
schedules:
  school_day:
    title: School day
    windows: ["Mon-Fri 08:30-15:30"]
"""


def diff(make_config, old_text: str, new_text: str) -> list[str]:
    old = make_config(old_text)
    return config_diff(old, make_config(new_text))


def edited(old: str, new: str, text: str = BASE_CONFIG) -> str:
    return replace_once(text, old, new)


def test_the_same_config_has_no_difference(make_config):
    assert config_diff(make_config(), make_config()) == []


def test_order_of_a_set_and_moved_lines_are_no_change(make_config):
    # The same categories in another order, and an allow entry moved down by a comment line:
    # nothing a pupil would notice, so nothing to record.
    allow = ("    allow:\n      - target: example.org\n        reason: Project work\n")
    base = edited("    blocked_categories: [gambling]\n  staff:",
                  "    blocked_categories: [gambling]\n" + allow + "  staff:")
    moved = edited("    blocked_categories: [gambling, social_networks]\n  secondary:",
                   "    blocked_categories: [social_networks, gambling]\n  secondary:", base)
    moved = edited("    allow:\n", "    # reviewed each term\n    allow:\n", moved)
    assert diff(make_config, base, moved) == []


# -- groups ------------------------------------------------------------------------------------


def test_blocked_categories_added_and_removed_name_group_and_category(make_config):
    new = edited("    blocked_categories: [gambling]\n  staff:",
                 "    blocked_categories: [social_networks, education]\n  staff:")
    assert diff(make_config, BASE_CONFIG, new) == [
        "group sixth_form: blocked_categories added education, social_networks",
        "group sixth_form: blocked_categories removed gambling",
    ]


@pytest.mark.parametrize(
    "setting, line",
    [
        # One-value settings: old -> new, booleans and numbers as the YAML writes them.
        ("    safe_search: moderate\n", "group staff: safe_search strict -> moderate"),
        ('    youtube: "off"\n', "group staff: youtube strict -> off"),
        ("    https: sni-only\n", "group staff: https decrypt -> sni-only"),
        ("    no_sni: log\n", "group staff: no_sni block -> log"),
        ("    circumvention: log\n", "group staff: circumvention block -> log"),
        ("    keyword_threshold: 7.5\n", "group staff: keyword_threshold 10 -> 7.5"),
        ("    page_scan: {max_bytes: 2MiB}\n", "group staff: page_scan 1MiB -> 2MiB"),
        ("    page_scan: off\n", "group staff: page_scan 1MiB -> off"),
        ("    page_scan: {max_bytes: 1000}\n", "group staff: page_scan 1MiB -> 1000B"),
        ("    title: Teachers and support staff\n",
         'group staff: title Staff -> "Teachers and support staff"'),
    ],
)
def test_one_value_group_settings(make_config, setting, line):
    new = edited("    title: Staff\n", setting if "title" in setting else "    title: Staff\n" + setting)
    assert diff(make_config, BASE_CONFIG, new) == [line]


def test_walled_garden_and_its_open_categories(make_config):
    new = edited("    blocked_categories: [gambling]\n  staff:",
                 "    blocked_categories: [gambling]\n    walled_garden: true\n"
                 "    allowed_categories: [education]\n  staff:")
    assert diff(make_config, BASE_CONFIG, new) == [
        "group sixth_form: walled_garden false -> true",
        "group sixth_form: allowed_categories added education",
    ]


def test_subnets_added_and_removed(make_config):
    new = edited('subnets: [10.30.0.0/16, "fd00:30::/32"]', "subnets: [10.30.0.0/16, 10.31.0.0/16]")
    assert diff(make_config, BASE_CONFIG, new) == [
        "group staff: subnets added 10.31.0.0/16",
        "group staff: subnets removed fd00:30::/32",
    ]


def test_allow_and_block_entries_with_their_reasons(make_config):
    old = edited("    blocked_categories: []\n  guest:",
                 "    blocked_categories: []\n"
                 "    allow:\n"
                 "      - target: example.org/maths/\n        reason: Maths homework\n"
                 "      - target: old.example.net\n        reason: Last year's project\n"
                 "  guest:")
    new = edited("    blocked_categories: []\n  guest:",
                 "    blocked_categories: []\n"
                 "    allow:\n"
                 '      - target: example.org/maths/\n        reason: "Maths homework, year 9"\n'
                 "    block:\n"
                 "      - target: games.example.com\n        reason: Not in lessons\n"
                 "  guest:")
    assert diff(make_config, old, new) == [
        'group staff: allow removed old.example.net (reason: "Last year\'s project")',
        'group staff: allow example.org/maths/ reason "Maths homework" -> '
        '"Maths homework, year 9"',
        'group staff: block added games.example.com (reason: "Not in lessons")',
    ]


def test_a_new_group_is_described_setting_by_setting(make_config):
    new = BASE_CONFIG.replace(
        "default_group: guest",
        "  ks3:\n"
        "    title: Key stage 3\n"
        "    subnets: [10.40.0.0/16]\n"
        "    blocked_categories: [gambling, social_networks]\n"
        "    safe_search: moderate\n"
        "default_group: guest",
    )
    assert diff(make_config, BASE_CONFIG, new) == [
        'group added: ks3 "Key stage 3"',
        "group ks3: safe_search strict -> moderate",
        "group ks3: subnets added 10.40.0.0/16",
        "group ks3: blocked_categories added gambling, social_networks",
    ]


def test_a_removed_group_and_the_default_group(make_config):
    old = BASE_CONFIG
    new = replace_once(old, "  guest:\n    title: Guest Wi-Fi\n    subnets: [172.16.0.0/16]\n"
                       "    blocked_categories: [gambling, social_networks]\n", "")
    new = replace_once(new, "default_group: guest", "default_group: primary")
    assert diff(make_config, old, new) == [
        'group removed: guest "Guest Wi-Fi"',
        "default_group guest -> primary",
    ]


def test_blocked_during_a_schedule(make_config):
    old = BASE_CONFIG + SCHEDULES
    new = edited("    blocked_categories: [gambling]\n  staff:",
                 "    blocked_categories: [gambling]\n"
                 "    blocked_during:\n      school_day: [social_networks]\n  staff:", old)
    assert diff(make_config, old, new) == [
        "group sixth_form: blocked_during school_day added social_networks",
    ]
    newer = replace_once(new, "school_day: [social_networks]", "school_day: [education]")
    assert diff(make_config, new, newer) == [
        "group sixth_form: blocked_during school_day added education",
        "group sixth_form: blocked_during school_day removed social_networks",
    ]


# -- categories, schedules and the rest --------------------------------------------------------


def test_categories_added_removed_retitled_and_relisted(make_config, tmp_path):
    (tmp_path / "lists").mkdir(exist_ok=True)
    (tmp_path / "lists" / "games").write_text("roblox.com\n", encoding="utf-8")
    (tmp_path / "lists" / "more_gambling").write_text("paddypower.com\n", encoding="utf-8")
    old = make_config()
    text = replace_once(BASE_CONFIG, "    title: Gambling\n    lists: [lists/gambling]\n",
                        "    title: Gambling and betting\n"
                        "    lists: [lists/gambling, lists/more_gambling]\n")
    text = replace_once(text, "  education:\n    title: Education\n    lists: [lists/education]\n",
                        "  games:\n    title: Online games\n    lists: [lists/games]\n")
    new = make_config(text, lists={})  # the list files written above stay
    assert config_diff(old, new) == [
        'category removed: education "Education"',
        'category gambling: title "Gambling" -> "Gambling and betting"',
        f"category gambling: lists added {tmp_path / 'lists' / 'more_gambling'}",
        f'category added: games "Online games" (lists: {tmp_path / "lists" / "games"})',
    ]


def test_schedules_added_and_windows_changed(make_config):
    old = BASE_CONFIG + SCHEDULES
    assert diff(make_config, BASE_CONFIG, old) == [
        'schedule added: school_day "School day" (Mon-Fri 08:30-15:30)',
    ]
    new = replace_once(old, '["Mon-Fri 08:30-15:30"]', '["Mon-Fri 08:45-15:30", "Sat 09:00-12:00"]')
    assert diff(make_config, old, new) == [
        'schedule school_day: windows added "Mon-Fri 08:45-15:30", "Sat 09:00-12:00"',
        'schedule school_day: windows removed "Mon-Fri 08:30-15:30"',
    ]


def test_illegal_lists_never_show_their_source(make_config, tmp_path):
    (tmp_path / "iwf-a.txt").write_text("a.example\n", encoding="utf-8")
    (tmp_path / "iwf-b.txt").write_text("b.example\n", encoding="utf-8")
    lists = "illegal_lists:\n  iwf:\n    kind: iwf\n    source: {}\n"
    old = BASE_CONFIG + lists.format("iwf-a.txt")
    assert diff(make_config, BASE_CONFIG, old) == [
        "illegal list added: iwf (kind iwf, form plain); takes effect at the next restart",
    ]
    lines = diff(make_config, old, BASE_CONFIG + lists.format("iwf-b.txt") + "    refresh: 6h\n")
    assert lines == [
        "illegal list iwf: refresh 12h -> 6h; takes effect at the next restart",
        "illegal list iwf: stale_after 13h -> 7h; takes effect at the next restart",
        "illegal list iwf: source changed; takes effect at the next restart",
    ]
    assert not any("iwf-" in line for line in lines)


def test_tls_circumvention_search_engines_and_login(make_config):
    new = BASE_CONFIG + (
        "tls:\n  do_not_decrypt_hosts: [bank.example.co.uk]\n"
        "circumvention:\n  allowed_ports: [443, '8443-8444']\n"
        "safe_search:\n  block_engines: [startpage.com]\n"
    )
    assert diff(make_config, BASE_CONFIG, new) == [
        "tls.do_not_decrypt_hosts added bank.example.co.uk",
        "circumvention.allowed_ports 443 -> 443, 8443-8444",
        "safe_search.block_engines the built-in list -> startpage.com",
    ]


# -- the gateway records it ----------------------------------------------------------------------


def _gateway(config: Config) -> Gateway:
    return Gateway(config, registry=CollectorRegistry())


def _rows(config: Config, action: str = "config"):
    return [r for r in read_audit(config.database_path) if r.action == action]


@pytest.mark.asyncio
async def test_reload_records_a_config_change_once_and_nothing_else(write_config):
    path = write_config()
    config = load_config(path)
    gw = _gateway(config)

    assert await gw.reloader.reload("nothing changed")
    assert _rows(config) == []

    path.write_text(edited("    blocked_categories: []\n  guest:",
                           "    blocked_categories: [gambling]\n  guest:"), encoding="utf-8")
    assert await gw.reloader.reload("changed: schoolgate.yaml")
    (row,) = _rows(config)
    assert (row.actor, row.action, row.outcome, row.reason) == (
        "reload", "config", "done", "changed: schoolgate.yaml")
    assert row.detail == {"diff": ["group staff: blocked_categories added gambling"]}

    # Compared with the config now in force: a second reload of the same file adds nothing.
    assert await gw.reloader.reload("SIGHUP")
    assert len(_rows(config)) == 1


@pytest.mark.asyncio
async def test_command_line_entries_are_not_recorded_again_as_config(write_config):
    config = load_config(write_config())
    gw = _gateway(config)
    change_local_policy(local_policy_path(config), lambda entries: [
        LocalEntry(1, "block", "games.example.com", "*", "Emergency", "J Smith", time.time())])
    assert await gw.reloader.reload("changed: local-policy.json")
    assert any(o.target == "games.example.com" for o in gw.rules.config.groups["staff"].block)
    assert _rows(config) == []


@pytest.mark.asyncio
async def test_a_refused_reload_is_recorded_as_refused(write_config):
    path = write_config()
    config = load_config(path)
    gw = _gateway(config)
    path.write_text(edited("blocked_categories: []", "blocked_categories: [gamblin]"),
                    encoding="utf-8")
    assert not await gw.reloader.reload("SIGHUP")
    (row,) = _rows(config)
    assert (row.actor, row.outcome, row.reason) == ("reload", "refused", "SIGHUP")
    assert "unknown category 'gamblin'" in row.detail["refused"]
    assert row.detail["problems"] and all(str(path) in p for p in row.detail["problems"])
    # The running rules stayed: a later good reload is compared with them.
    path.write_text(BASE_CONFIG, encoding="utf-8")
    assert await gw.reloader.reload("fixed")
    assert [r.outcome for r in _rows(config)] == ["refused"]
    status = json.loads((config.data_dir / "reload-status.json").read_text())
    assert status["ok"] is True


def test_audit_prints_the_diff_lines(write_config, capsys):
    from schoolgate import cli
    from schoolgate.store.audit import record_change

    path = write_config()
    config = load_config(path)
    record_change(config.database_path, actor="reload", action="config", reason="SIGHUP",
                  detail={"diff": ["group staff: blocked_categories added gambling"]})
    assert cli.main(["audit", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "reload" in out and "config" in out
    assert "group staff: blocked_categories added gambling" in out


def test_every_group_setting_is_compared():
    # A new Group field must be added to the diff (or knowingly left out here).
    import dataclasses

    from schoolgate.config import diff as configdiff
    from schoolgate.config.model import Group

    compared = set(configdiff._GROUP_VALUES) | {
        "name", "subnets", "blocked_categories", "blocked_during", "allowed_categories", "allow",
        "block", "page_scan_bytes"}
    assert {f.name for f in dataclasses.fields(Group)} == compared


def test_a_reason_over_several_lines_stays_on_one_line(make_config):
    # Lines go into the audit log's JSON and to a terminal: `schoolgate audit` indents each one.
    new = edited("    blocked_categories: []\n  guest:",
                 "    blocked_categories: []\n"
                 "    block:\n      - target: example.com\n        reason: |\n"
                 "          Parents complained.\n          Reviewed by the DSL.\n"
                 "  guest:")
    assert diff(make_config, BASE_CONFIG, new) == [
        'group staff: block added example.com '
        '(reason: "Parents complained.\\nReviewed by the DSL.\\n")',
    ]
