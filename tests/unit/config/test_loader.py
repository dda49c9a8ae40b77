"""The configuration file: the example loads, and every mistake is reported as
``file:line: dotted.key: what is wrong`` so a technician can fix it without reading code."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from sample_school import BASE_CONFIG, EXAMPLE_CONFIG, REPO, line_of, replace_once
from schoolgate import cli
from schoolgate.cli.why import WHY_KEYS
from schoolgate.config.loader import load_config, parse_address
from schoolgate.config.model import Address, ConfigError, EventSettings

# ---------------------------------------------------------------------------------------------
# The example configuration shipped in config/


def test_example_config_loads_with_its_groups_and_categories():
    config = load_config(EXAMPLE_CONFIG)

    assert config.path == EXAMPLE_CONFIG
    assert config.school_name == "Example Academy"
    assert config.timezone == "Europe/London"
    assert config.mode == "regular"
    assert config.listen == Address("127.0.0.1", 8080)
    assert config.metrics == Address("127.0.0.1", 9464)
    assert config.events == EventSettings(queue_size=100_000, batch_size=500, flush_interval=1.0)
    # Relative paths are resolved from the config file's folder.
    assert config.data_dir == REPO / "data"
    assert config.ca_dir == REPO / "data" / "ca"
    assert config.upstream_trusted_ca is None
    assert config.upstream_connect_timeout == 30.0
    assert config.templates == REPO / "templates"

    assert list(config.categories) == [
        "gambling", "adult", "social_networks", "games", "malware", "hacking", "violence",
        "education", "vpn", "redirector", "doh", "remote-control",
    ]
    for name, category in config.categories.items():
        assert category.lists == (REPO / "categories" / name / "domains",)
        assert all(p.is_file() for p in category.lists)
    assert config.categories["adult"].title == "Pornography and adult content"

    assert list(config.groups) == [
        "primary", "ks3", "ks4", "sixth_form", "staff", "byod", "guest"]
    assert config.default_group == "guest"
    assert config.groups["sixth_form"].title == "Sixth form"
    assert config.groups["sixth_form"].subnets == (ipaddress.ip_network("10.21.50.0/24"),)
    assert config.groups["staff"].subnets == (
        ipaddress.ip_network("10.30.0.0/16"),
        ipaddress.ip_network("fd00:30::/32"),
    )
    # Staff may use social media after working hours and games always; guests never.
    assert config.groups["staff"].blocked_categories == {"adult", "gambling", "malware"}
    assert [(b.schedule, b.categories) for b in config.groups["staff"].blocked_during] == [
        ("working_hours", {"social_networks"})]
    assert {"social_networks", "games"} <= config.groups["guest"].blocked_categories
    assert "social_networks" not in config.groups["sixth_form"].blocked_categories
    # Each feature of issue 4 is shown on at least one group.
    groups = config.groups
    assert groups["primary"].walled_garden and groups["primary"].allowed_categories == {"education"}
    assert groups["byod"].https == "sni-only"
    assert (groups["staff"].no_sni, groups["staff"].circumvention) == ("log", "log")
    assert (groups["sixth_form"].safe_search, groups["sixth_form"].youtube) == ("moderate", "moderate")
    assert set(config.schedules) == {"school_day", "working_hours"}
    assert config.circumvention.categories == {"vpn", "redirector", "doh", "remote-control"}
    assert config.tls.do_not_decrypt == (REPO / "categories" / "do_not_decrypt" / "domains",)
    assert config.keyword_library == REPO / "keywords"


def test_sample_school_loads(config, tmp_path):
    assert config.path == tmp_path / "schoolgate.yaml"
    assert config.categories["gambling"].lists == (tmp_path / "lists" / "gambling",)
    assert config.categories["gambling"].title == "Gambling"
    assert config.data_dir == tmp_path / "data"
    assert config.database_path == tmp_path / "data" / "schoolgate.sqlite3"
    assert config.events == EventSettings(queue_size=1000, batch_size=10, flush_interval=0.05)
    assert config.groups["staff"].blocked_categories == frozenset()


def test_nested_subnets_in_different_groups_are_accepted(config):
    # Sixth form's /24 sits inside secondary's /16: the most specific one wins (test_identify).
    assert config.groups["secondary"].subnets == (ipaddress.ip_network("10.20.0.0/16"),)
    assert config.groups["sixth_form"].subnets == (ipaddress.ip_network("10.20.50.0/24"),)


def test_defaults_when_optional_keys_are_left_out(make_config, tmp_path):
    minimal = (
        "categories:\n  gambling: [lists/gambling]\n"
        "groups:\n  everyone:\n    blocked_categories: [gambling]\n"
        "default_group: everyone\n"
    )
    config = make_config(minimal)
    assert config.school_name == "School"
    assert config.timezone == "Europe/London"
    assert config.listen == Address("127.0.0.1", 8080)
    assert config.metrics == Address("127.0.0.1", 9464)
    assert config.mode == "regular"
    assert config.events == EventSettings()
    assert config.data_dir == tmp_path / "data"
    assert config.ca_dir == tmp_path / "data" / "ca"
    # Shorthand category (a bare list of files) gets a title from its name; a group without a
    # title is shown by its name.
    assert config.categories["gambling"].title == "Gambling"
    assert config.groups["everyone"].title == "everyone"
    assert config.groups["everyone"].subnets == ()


# ---------------------------------------------------------------------------------------------
# One mistake, one problem: file, line, dotted key, and what is wrong.
#
# Each row edits BASE_CONFIG once: (old text, new text, a fragment that is only on the line the
# message must name, the dotted key, fragments the message must contain, fragments it must not).

MISTAKES = [
    # Unknown keys, with a suggestion when one is close.
    pytest.param(
        "data_dir: data", "data_dirs: data", "data_dirs:", "data_dirs",
        ["unknown key", "allowed: school, listen, mode", "did you mean 'data_dir'?"], [],
        id="unknown-top-level-key-with-suggestion",
    ),
    pytest.param(
        # A block value starts on the next line; the message names the key's own line.
        "categories:\n", "categorys:\n  extra: 1\ncategories:\n", "categorys:", "categorys",
        ["unknown key", "did you mean 'categories'?"], [],
        id="unknown-top-level-key-with-block-value",
    ),
    pytest.param(
        "default_group: guest", "default_group: guest\ncolour: blue", "colour:", "colour",
        ["unknown key"], ["did you mean"],
        id="unknown-top-level-key-no-close-match",
    ),
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    blocked: [gambling]\n",
        "blocked: [gambling]", "groups.sixth_form.blocked",
        ["unknown key (allowed: title, subnets, blocked_categories, blocked_during, walled_garden, "
         "allowed_categories, safe_search, youtube, keyword_threshold, page_scan, https, no_sni, "
         "circumvention, allow, block)"], [],
        id="unknown-key-in-group",
    ),
    # A group's page scanning size.
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    page_scan: {max_bytes: 2 lots}\n",
        "page_scan:", "groups.sixth_form.page_scan.max_bytes",
        ["must be a size such as 512KiB, 1MiB or 2MB (or 0 or off)"], [],
        id="page-scan-size-not-a-size",
    ),
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    page_scan: {max_bytes: 1GB}\n",
        "page_scan:", "groups.sixth_form.page_scan.max_bytes",
        ["must be at most 8MiB, not 1GB"], [],
        id="page-scan-size-too-large",
    ),
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    page_scan: {}\n",
        "page_scan:", "groups.sixth_form.page_scan",
        ["give max_bytes (such as 1MiB), or write page_scan: off"], [],
        id="page-scan-without-size",
    ),
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    blocked_category: [gambling]\n",
        "blocked_category:", "groups.sixth_form.blocked_category",
        ["unknown key", "did you mean 'blocked_categories'?"], [],
        id="unknown-key-in-group-with-suggestion",
    ),
    pytest.param(
        "  timezone: Europe/London", "  time_zone: Europe/London", "time_zone:",
        "school.time_zone", ["unknown key", "did you mean 'timezone'?"], [],
        id="unknown-key-in-school",
    ),
    pytest.param(
        "  batch_size: 10", "  batchsize: 10", "batchsize:", "events.batchsize",
        ["unknown key", "did you mean 'batch_size'?"], [],
        id="unknown-key-in-events",
    ),
    pytest.param(
        "    title: Gambling", "    titel: Gambling", "titel:", "categories.gambling.titel",
        ["unknown key", "did you mean 'title'?"], [],
        id="unknown-key-in-category",
    ),
    # Wrong types: text, true/false or a list where something else belongs.
    pytest.param(
        "  port: 8080", "  port: eighty", "port: eighty", "listen.port",
        ["must be a whole number from 0 to 65535", "not text 'eighty'"], [],
        id="port-as-text",
    ),
    pytest.param(
        "  port: 8080", '  port: "8080"', 'port: "8080"', "listen.port",
        ["must be a whole number", "not text '8080'"], [],
        id="port-as-quoted-number",
    ),
    pytest.param(
        "  port: 8080", "  port: true", "port: true", "listen.port",
        ["must be a whole number", "not true/false"], [],
        id="port-as-true",
    ),
    pytest.param(
        "  port: 8080", "  port: yes", "port: yes", "listen.port",
        ["must be a whole number", "not true/false"], [],
        id="port-as-yaml-yes",
    ),
    pytest.param(
        "  port: 8080", "  port: 80.5", "port: 80.5", "listen.port",
        ["must be a whole number", "not a number"], [],
        id="port-as-fraction",
    ),
    pytest.param(
        'subnets: [10.30.0.0/16, "fd00:30::/32"]', "subnets: 10.30.0.0/16",
        "subnets: 10.30.0.0/16", "groups.staff.subnets",
        ["must be a list", "not text '10.30.0.0/16'"], [],
        id="subnets-not-a-list",
    ),
    pytest.param(
        "subnets: [172.16.0.0/16]", "subnets: [172]", "subnets: [172]", "groups.guest.subnets[0]",
        ["must be a network such as 10.20.0.0/16", "not a number"], [],
        id="subnet-as-number",
    ),
    pytest.param(
        "  name: Test Academy", "  name: 42", "name: 42", "school.name",
        ["must be non-empty text", "not a number"], [],
        id="school-name-as-number",
    ),
    pytest.param(
        "listen:\n  host: 127.0.0.1\n  port: 8080\n", "listen: 8080\n", "listen: 8080", "listen",
        ["must be a mapping"], [],
        id="listen-not-a-mapping",
    ),
    pytest.param(
        "  flush_interval: 0.05", "  flush_interval: soon", "flush_interval: soon",
        "events.flush_interval", ["must be a number from 0.001 to 3600", "not text 'soon'"], [],
        id="flush-interval-as-text",
    ),
    pytest.param(
        "    blocked_categories: [gambling]\n", "    blocked_categories: gambling\n",
        "blocked_categories: gambling", "groups.sixth_form.blocked_categories",
        ["must be a list"], [],
        id="blocked-categories-not-a-list",
    ),
    # Numbers out of range.
    pytest.param(
        "  port: 8080", "  port: 70000", "port: 70000", "listen.port",
        ["must be from 0 to 65535, not 70000"], [],
        id="port-too-high",
    ),
    pytest.param(
        "  port: 8080", "  port: -1", "port: -1", "listen.port",
        ["must be from 0 to 65535, not -1"], [],
        id="port-negative",
    ),
    pytest.param(
        "  port: 0", "  port: 65536", "port: 65536", "metrics.port",
        ["must be from 0 to 65535, not 65536"], [],
        id="metrics-port-too-high",
    ),
    pytest.param(
        "  batch_size: 10", "  batch_size: 0", "batch_size: 0", "events.batch_size",
        ["must be from 1 to 100000, not 0"], [],
        id="batch-size-zero",
    ),
    pytest.param(
        "  flush_interval: 0.05", "  flush_interval: 0", "flush_interval: 0",
        "events.flush_interval",
        ["must be from 0.001 to 3600"], [],
        id="flush-interval-zero",
    ),
    # Values from a fixed set, and addresses.
    pytest.param(
        "data_dir: data", "mode: bridge\ndata_dir: data", "mode: bridge", "mode",
        ["must be one of regular, transparent, not 'bridge'"], [],
        id="bad-mode",
    ),
    pytest.param(
        # The message lists every HTTPS mode, selective decryption included.
        "    title: Staff\n", "    title: Staff\n    https: some\n", "https: some",
        "groups.staff.https", ["must be one of decrypt, selective, sni-only, not 'some'"], [],
        id="bad-https-mode",
    ),
    pytest.param(
        "  host: 127.0.0.1\n  port: 8080", "  host: proxy.school.example\n  port: 8080",
        "host: proxy.school.example", "listen.host",
        ["must be an IP address"], [],
        id="listen-host-not-an-ip",
    ),
    # Time zones come from the IANA database.
    pytest.param(
        "timezone: Europe/London", "timezone: Mars/Olympus", "Mars/Olympus", "school.timezone",
        ["unknown time zone 'Mars/Olympus'"], [],
        id="unknown-timezone",
    ),
    pytest.param(
        # A folder of the time zone database, not a zone (this used to escape as a traceback).
        "timezone: Europe/London", "timezone: Europe", "timezone: Europe", "school.timezone",
        ["unknown time zone 'Europe'"], [],
        id="timezone-that-is-a-folder",
    ),
    pytest.param(
        "timezone: Europe/London", "timezone: ../../etc/passwd", "etc/passwd", "school.timezone",
        ["unknown time zone"], [],
        id="timezone-path-escape",
    ),
    # Subnets: one owner per network, no host bits, real networks only.
    pytest.param(
        'subnets: [10.30.0.0/16, "fd00:30::/32"]', 'subnets: [10.10.0.0/16, "fd00:30::/32"]',
        "10.10.0.0/16, ", "groups.staff.subnets[0]",
        ["10.10.0.0/16 is already in groups.primary.subnets[0]", "belongs to one group"], [],
        id="same-subnet-in-two-groups",
    ),
    pytest.param(
        # The same network written another way is still the same network.
        'subnets: [10.30.0.0/16, "fd00:30::/32"]', 'subnets: [10.10.0.0/255.255.0.0]',
        "10.10.0.0/255.255.0.0", "groups.staff.subnets[0]",
        ["is already in groups.primary.subnets[0]"], [],
        id="same-subnet-as-netmask",
    ),
    pytest.param(
        'subnets: [10.30.0.0/16, "fd00:30::/32"]', "subnets: [10.0.0.1/16]", "10.0.0.1/16",
        "groups.staff.subnets[0]",
        ["'10.0.0.1/16' is not a network", "has host bits set", "did you mean 10.0.0.0/16?"], [],
        id="subnet-with-host-bits",
    ),
    pytest.param(
        'subnets: [10.30.0.0/16, "fd00:30::/32"]', "subnets: [10.300.0.0/16]", "10.300.0.0/16",
        "groups.staff.subnets[0]", ["'10.300.0.0/16' is not a network"], ["did you mean"],
        id="subnet-garbage",
    ),
    # Names that must refer to something defined elsewhere in the file.
    pytest.param(
        "    blocked_categories: [gambling]\n", "    blocked_categories: [gambling, gamblng]\n",
        "[gambling, gamblng]", "groups.sixth_form.blocked_categories[1]",
        ["unknown category 'gamblng'", "defined: education, gambling, social_networks",
         "did you mean 'gambling'?"], [],
        id="group-blocks-unknown-category",
    ),
    pytest.param(
        "default_group: guest", "default_group: visitors", "default_group: visitors",
        "default_group",
        ["names no group", "defined groups: primary, secondary, sixth_form, staff, guest"], [],
        id="default-group-names-no-group",
    ),
    pytest.param(
        "  staff:\n", "  Staff Room:\n", "Staff Room:", "groups.Staff Room",
        ["group names use lowercase letters, digits, '-' and '_'"], [],
        id="group-name-not-a-machine-name",
    ),
    # List files and other paths must exist and be the right kind of thing.
    pytest.param(
        "lists: [lists/education]", "lists: [lists/nope]", "lists/nope",
        "categories.education.lists[0]", ["list file {tmp}/lists/nope does not exist"], [],
        id="missing-list-file",
    ),
    pytest.param(
        "lists: [lists/education]", "lists: [lists]", "lists: [lists]",
        # A folder is read as a UT1 category folder; one without UT1 files is a mistake.
        "categories.education.lists[0]",
        ["list file {tmp}/lists is a folder with no UT1 list files (domains, urls, expressions)"],
        [],
        id="list-path-is-a-folder-without-ut1-files",
    ),
    pytest.param(
        "    lists: [lists/education]\n", "    lists: []\n", "  education:",
        "categories.education", ["needs at least one list file"], [],
        id="category-without-lists",
    ),
    pytest.param(
        "lists: [lists/education]", "lists: lists/education", "lists: lists/education",
        "categories.education.lists", ["must be a list, not text 'lists/education'"], [],
        id="lists-not-a-list",
    ),
    pytest.param(
        "data_dir: data", "data_dir: schoolgate.yaml", "data_dir:", "data_dir",
        ["{tmp}/schoolgate.yaml exists but is not a directory"], [],
        id="data-dir-is-a-file",
    ),
    pytest.param(
        "data_dir: data", "data_dir: data\nupstream_trusted_ca: certs/school-ca.pem",
        "upstream_trusted_ca:", "upstream_trusted_ca",
        ["CA file {tmp}/certs/school-ca.pem does not exist"], ["list file"],
        id="upstream-ca-missing",
    ),
    pytest.param(
        "data_dir: data", "data_dir: data\nupstream_connect_timeout: soon",
        "upstream_connect_timeout:", "upstream_connect_timeout",
        ["must be a duration such as 30m, 12h, 30d or 1y, not text 'soon'"], [],
        id="connect-timeout-not-a-duration",
    ),
    pytest.param(
        "data_dir: data", "data_dir: data\nupstream_connect_timeout: 10m",
        "upstream_connect_timeout:", "upstream_connect_timeout", ["must be at most 5m"], [],
        id="connect-timeout-too-long",
    ),
    # The same key twice: YAML would silently keep the last one.
    pytest.param(
        "default_group: guest", "default_group: guest\ndefault_group: staff",
        "default_group: staff", "default_group",
        ["given twice (first on line {line:default_group: guest}); keep one"], [],
        id="duplicate-top-level-key",
    ),
    pytest.param(
        "    title: Sixth form\n", "    title: Sixth form\n    title: Year 12 and 13\n",
        "Year 12 and 13", "groups.sixth_form.title",
        ["given twice (first on line {line:title: Sixth form})"], [],
        id="duplicate-key-in-group",
    ),
]


@pytest.mark.parametrize(("old", "new", "on_line", "key", "says", "never_says"), MISTAKES)
def test_one_mistake_gives_one_problem_naming_file_line_and_key(
    write_config, tmp_path, old, new, on_line, key, says, never_says
):
    text = replace_once(BASE_CONFIG, old, new)
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)

    assert len(e.value.problems) == 1, e.value.problems
    (problem,) = e.value.problems
    where = f"{path}:{line_of(text, on_line)}: "
    assert problem.startswith(f"{where}{key}: "), problem
    for fragment in says:
        # {tmp} is tmp_path; {line:TEXT} is the number of the line holding TEXT.
        fragment = fragment.replace("{tmp}", str(tmp_path))
        fragment = re.sub(r"\{line:([^}]*)\}", lambda m: str(line_of(text, m[1])), fragment)
        assert fragment in problem
    for fragment in never_says:
        assert fragment not in problem
    # The message is also the exception's text, so a plain `print(e)` is useful too.
    assert str(e.value) == problem


def test_same_subnet_message_names_both_groups_and_the_first_line(write_config):
    text = replace_once(BASE_CONFIG, 'subnets: [10.30.0.0/16, "fd00:30::/32"]',
                        'subnets: [10.10.0.0/16, "fd00:30::/32"]')
    with pytest.raises(ConfigError) as e:
        load_config(write_config(text))
    (problem,) = e.value.problems
    first = line_of(text, "subnets: [10.10.0.0/16]")
    assert "groups.staff.subnets[0]" in problem
    assert f"groups.primary.subnets[0] (line {first})" in problem


def test_every_problem_in_the_file_is_reported_together_in_file_order(write_config):
    text = replace_once(BASE_CONFIG, "  port: 8080", "  port: eighty")
    text = replace_once(text, "default_group: guest", "default_group: visitors")
    text = replace_once(text, "subnets: [172.16.0.0/16]", "subnets: [172.16.0.1/16]")
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = [line_of(text, "port: eighty"), line_of(text, "172.16.0.1/16"),
             line_of(text, "default_group: visitors")]
    assert [p.split(": ", 1)[0] for p in e.value.problems] == [f"{path}:{n}" for n in lines]


# Required keys: reported at the line of the mapping they belong in (line 1 for the top level).
@pytest.mark.parametrize(
    ("remove_from", "remove_to", "key"),
    [
        ("categories:\n", "groups:\n", "categories"),
        ("groups:\n", "default_group:", "groups"),
        ("default_group: guest\n", None, "default_group"),
    ],
)
def test_missing_required_top_level_key(write_config, remove_from, remove_to, key):
    start = BASE_CONFIG.index(remove_from)
    end = BASE_CONFIG.index(remove_to) if remove_to else len(BASE_CONFIG)
    text = BASE_CONFIG[:start] + BASE_CONFIG[end:]
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    # Removing categories also makes every blocked category unknown; the missing key must still
    # be reported, first-class.
    assert f"{path}:1: {key}: is required but missing" in e.value.problems


def test_missing_list_key_in_a_category_names_the_category(write_config):
    text = replace_once(BASE_CONFIG, "    lists: [lists/gambling]\n", "")
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [
        f"{path}:{line_of(text, '  gambling:')}: categories.gambling.lists: "
        "is required but missing"
    ]


def test_empty_file_reports_each_required_key(write_config):
    path = write_config("# nothing here yet\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [
        f"{path}:1: categories: is required but missing",
        f"{path}:1: groups: is required but missing",
        f"{path}:1: default_group: is required but missing",
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("just some words\n", "text 'just some words'"),
        ("- a\n- b\n", "a list"),
    ],
)
def test_top_level_must_be_a_mapping(write_config, text, kind):
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}:1: must be a mapping of keys to values, not {kind}"]


# Invalid YAML: the parser's position, as line:column (both 1-based).
@pytest.mark.parametrize(
    ("old", "new", "fragment", "column"),
    [
        # A tab cannot indent YAML; the error is at the tab itself.
        ("  port: 8080", "\tport: 8080", "\tport", 1),
        # A second colon on one line: the error is at that colon.
        ("  port: 8080", "  port: 8080: 8081", "8080: 8081", len("  port: 8080") + 1),
    ],
)
def test_invalid_yaml_names_line_and_column(write_config, old, new, fragment, column):
    text = replace_once(BASE_CONFIG, old, new)
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    (problem,) = e.value.problems
    assert problem.startswith(f"{path}:{line_of(text, fragment)}:{column}: not valid YAML: ")


def test_missing_config_file(tmp_path):
    path = tmp_path / "nowhere" / "schoolgate.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}: configuration file not found"]


def test_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    (problem,) = e.value.problems
    assert problem.startswith(f"{tmp_path}: cannot read configuration file")


# ---------------------------------------------------------------------------------------------
# The command line: a bad config is one line per problem on stderr, exit status 2, no traceback.


def test_cli_prints_one_line_per_problem_and_exits_2(write_config, capsys):
    text = replace_once(BASE_CONFIG, "  port: 8080", "  port: true")
    text = replace_once(text, "default_group: guest", "default_group: visitors")
    bad = write_config(text)

    status = cli.main(["why", "--config", str(bad), "x.com"])

    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"schoolgate: {bad}:{line_of(text, 'port: true')}: listen.port: ")
    assert lines[1].startswith(
        f"schoolgate: {bad}:{line_of(text, 'visitors')}: default_group: names no group"
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv_tail",
    [
        # A config file that is not there at all.
        ["why", "--config", "{tmp}/missing.yaml", "x.com"],
        ["event", "--config", "{tmp}/missing.yaml", "7KQ2M-9XDPA"],
        ["run", "--config", "{tmp}/missing.yaml"],
    ],
)
def test_cli_missing_config_exits_2_for_every_command(tmp_path, capsys, argv_tail):
    status = cli.main([a.format(tmp=tmp_path) for a in argv_tail])
    out, err = capsys.readouterr()
    assert status == 2
    assert err == f"schoolgate: {tmp_path}/missing.yaml: configuration file not found\n"
    assert out == ""


def test_cli_run_with_bad_listen_flag_exits_2(write_config, capsys):
    status = cli.main(["run", "--config", str(write_config()), "--listen", "8080"])
    out, err = capsys.readouterr()
    assert status == 2
    assert err == "schoolgate: --listen: '8080' is not HOST:PORT (for example 127.0.0.1:8080)\n"


def test_cli_why_explains_a_verdict_as_json(write_config, capsys):
    import json

    status = cli.main(
        ["why", "--json", "--config", str(write_config()), "--ip", "10.20.50.3",
         "https://WWW.Bet365.com./casino", "http://bbc.co.uk/news"]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    first, second = (json.loads(line) for line in out.splitlines())
    assert list(first) == list(WHY_KEYS)
    # As a client sends it (the trailing dot too), and as the lists match it.
    assert first["normalised_url"] == "https://www.bet365.com./casino"
    assert first["canonical_url"] == "https://www.bet365.com/casino"
    assert (first["group"], first["group_source"]) == ("sixth_form", "subnet")
    assert first["ip"] == "10.20.50.3"
    assert (first["action"], first["category"]) == ("block", "gambling")
    assert first["matched_entry"] == "bet365.com"
    assert first["matched_line"] == 1
    assert (second["action"], second["category"]) == ("allow", "education")


def test_cli_why_bad_url_exits_1_and_reports_it(write_config, capsys):
    status = cli.main(["why", "--config", str(write_config()), "ftp://files.example/"])
    out, _ = capsys.readouterr()
    assert status == 1
    assert "the gateway carries http and https only, not ftp" in out
    status = cli.main(["why", "--config", str(write_config()), "mailto:pupil@files.example"])
    out, _ = capsys.readouterr()
    assert status == 1
    assert "only http and https URLs can be classified, not 'mailto'" in out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--group", "teachers", "--group: no group 'teachers'"),
        ("--ip", "10.20.300.1", "--ip: '10.20.300.1' is not an IP address"),
    ],
)
def test_cli_why_bad_flags_exit_2(write_config, capsys, flag, value, message):
    status = cli.main(["why", "--config", str(write_config()), flag, value, "x.com"])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.startswith(f"schoolgate: {message}")
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# HOST:PORT on the command line (`run --listen`, `run --metrics`).


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        # IPv4, IPv6 in brackets, and the "all addresses" forms.
        ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
        ("0.0.0.0:3128", "0.0.0.0", 3128, "0.0.0.0:3128"),
        ("[::1]:9464", "::1", 9464, "[::1]:9464"),
        ("[::]:8080", "::", 8080, "[::]:8080"),
        (":8080", "", 8080, ":8080"),
        # localhost is allowed by name; port 0 asks the OS for a free port.
        ("localhost:0", "localhost", 0, "localhost:0"),
        # Surrounding spaces from a copied value are forgiven.
        (" 127.0.0.1:8080 ", "127.0.0.1", 8080, "127.0.0.1:8080"),
    ],
)
def test_parse_address_accepts(text, host, port, shown):
    address = parse_address(text, "--listen")
    assert address == Address(host, port)
    assert str(address) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Not HOST:PORT at all.
        ("8080", "--listen: '8080' is not HOST:PORT (for example 127.0.0.1:8080)"),
        ("127.0.0.1", "--listen: '127.0.0.1' is not HOST:PORT"),
        ("127.0.0.1:http", "--listen: '127.0.0.1:http' is not HOST:PORT"),
        ("::1:8080", "--listen: '::1:8080' is not HOST:PORT"),
        ("", "--listen: '' is not HOST:PORT"),
        # HOST:PORT, but a bad host or port.
        ("127.0.0.1:65536", "--listen: port must be from 0 to 65535, not 65536"),
        ("proxy.school.example:8080",
         "--listen: host 'proxy.school.example' must be an IP address"),
        ("[not-v6]:8080", "--listen: host 'not-v6' must be an IP address"),
    ],
)
def test_parse_address_rejects(text, message):
    with pytest.raises(ConfigError) as e:
        parse_address(text, "--listen")
    (problem,) = e.value.problems
    assert problem.startswith(message)


def test_parse_address_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--metrics: "):
        parse_address("nonsense", "--metrics")


def test_config_error_keeps_every_problem():
    error = ConfigError(["a.yaml:1: x: bad", "a.yaml:2: y: bad"])
    assert error.problems == ["a.yaml:1: x: bad", "a.yaml:2: y: bad"]
    assert str(error) == "a.yaml:1: x: bad\na.yaml:2: y: bad"


def test_relative_paths_resolve_from_the_config_folder_not_the_cwd(
    write_config, monkeypatch, tmp_path
):
    path = write_config()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / path.name)
    assert config.categories["social_networks"].lists == (tmp_path / "lists" / "social_networks",)
